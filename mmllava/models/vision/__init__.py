from .clip import HFCLIPVisionEncoder, OpenCLIPVisionEncoder
from .siglip import HFSiglipVisionEncoder

__all__ = ['HFCLIPVisionEncoder', 'HFSiglipVisionEncoder', 'OpenCLIPVisionEncoder']
