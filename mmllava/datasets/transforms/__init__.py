from .conversation import TokenizeConversation
from .formatting import PackLlavaInputs
from .loading import LoadImages, load_image
from .processing import CLIPResizeCrop, PadToSquare

__all__ = [
    'CLIPResizeCrop', 'LoadImages', 'PackLlavaInputs', 'PadToSquare',
    'TokenizeConversation', 'load_image'
]
