from .data_preprocessor import LlavaDataPreprocessor
from .llava import IMAGE_TOKEN_INDEX, LLaVA
from .llm import build_causal_lm
from .projectors import build_projector
from .vision import HFCLIPVisionEncoder, OpenCLIPVisionEncoder

__all__ = [
    'HFCLIPVisionEncoder', 'IMAGE_TOKEN_INDEX', 'LLaVA', 'LlavaDataPreprocessor',
    'OpenCLIPVisionEncoder', 'build_causal_lm', 'build_projector'
]
