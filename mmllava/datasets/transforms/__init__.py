from .conversation import TokenizeConversation
from .formatting import PackLlavaInputs
from .loading import LoadImages, load_image
from .processing import CLIPResizeCrop, PadToSquare, SubtractBackground
from .video import LoadVideo, LoadVisuals, load_video_frames, sample_frame_indices

__all__ = [
    'CLIPResizeCrop', 'LoadImages', 'LoadVideo', 'LoadVisuals', 'SubtractBackground',
    'PackLlavaInputs', 'PadToSquare', 'TokenizeConversation', 'load_image', 'load_video_frames',
    'sample_frame_indices'
]
