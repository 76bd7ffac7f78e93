from .clip import HFCLIPVisionEncoder, OpenCLIPVisionEncoder

__all__ = ['HFCLIPVisionEncoder', 'OpenCLIPVisionEncoder']
