from .conversation import TokenizeConversation
from .formatting import PackLlavaInputs
from .loading import LoadImages, load_image
from .processing import CLIPResizeCrop, PadToSquare, SubtractBackground, TemporalChannels
from .video import LoadVideo, LoadVisuals, load_video_frames, sample_frame_indices

__all__ = [
    'CLIPResizeCrop', 'LoadImages', 'LoadVideo', 'LoadVisuals', 'PackLlavaInputs', 'PadToSquare',
    'SubtractBackground', 'TemporalChannels', 'TokenizeConversation', 'load_image',
    'load_video_frames', 'sample_frame_indices'
]
