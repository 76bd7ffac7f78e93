"""Constants every layer shares: placeholders, special ids, pixel statistics, visual-token counts.

The base layer (with :mod:`mmllava.registry` and :mod:`mmllava.utils`): it imports nothing of
mmllava, so conversation, datasets and models agree on these values without importing each
other.
"""
from .pixels import CLIP_MEAN, CLIP_MEAN_RGB, CLIP_STD
from .tokens import (
    IGNORE_INDEX,
    IMAGE_PLACEHOLDER,
    IMAGE_TOKEN_INDEX,
    VIDEO_PLACEHOLDER,
    VISUAL_PLACEHOLDERS,
)
from .visual_tokens import POOLING_ALIASES, num_visual_tokens, pooling_type

__all__ = [
    'CLIP_MEAN', 'CLIP_MEAN_RGB', 'CLIP_STD', 'IGNORE_INDEX', 'IMAGE_PLACEHOLDER',
    'IMAGE_TOKEN_INDEX', 'POOLING_ALIASES', 'VIDEO_PLACEHOLDER', 'VISUAL_PLACEHOLDERS',
    'num_visual_tokens', 'pooling_type'
]
