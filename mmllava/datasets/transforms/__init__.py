from .anyres import AnyresTiles, anyres_tiles
from .conversation import TokenizeConversation
from .formatting import PackLlavaInputs
from .loading import load_image
from .processing import (
    CLIPResizeCrop,
    PadToSquare,
    ResizeSquare,
    SubtractBackground,
    TemporalChannels,
)
from .video import LoadImages, LoadVideo, LoadVisuals, load_video_frames, sample_frame_indices

__all__ = [
    'AnyresTiles', 'anyres_tiles', 'CLIPResizeCrop', 'LoadImages', 'LoadVideo', 'LoadVisuals',
    'PackLlavaInputs', 'PadToSquare', 'ResizeSquare',
    'SubtractBackground', 'TemporalChannels', 'TokenizeConversation', 'load_image',
    'load_video_frames', 'sample_frame_indices'
]
