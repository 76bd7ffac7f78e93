"""How many placeholder tokens a visual takes: one function for the pipeline and the model.

The pipeline expands each ``<image>``/``<video>`` into that many placeholder ids before the
model has run, and the model scatters exactly that many features into them; both ask
:func:`num_visual_tokens`, so they cannot disagree. The poolings themselves (tensor code) are
in :mod:`mmllava.models.video`.
"""
import math
from typing import Union

# Short names of the frame poolings -> their registered class names.
POOLING_ALIASES = {
    'none': 'NoFramePooling',
    'avgpool2x2': 'AvgPool2x2FramePooling',
    'spatial_temporal': 'SpatialTemporalFramePooling',
}


def pooling_type(cfg: Union[None, str, dict, object]) -> str:
    """The registered class name of a pooling given as ``None``, a short name, a config or an
    instance (its class name)."""
    if cfg is None:
        return 'NoFramePooling'
    if isinstance(cfg, str):
        name = cfg
    elif isinstance(cfg, dict):
        name = cfg['type']
    else:
        name = type(cfg).__name__
    return POOLING_ALIASES.get(name, name)


def grid_side(num_image_tokens: int) -> int:
    """Side of a frame's square token grid; a clear error when it is not square."""
    side = math.isqrt(num_image_tokens)
    if side * side != num_image_tokens:
        raise ValueError(f'avgpool2x2 needs a square token grid per frame, got {num_image_tokens} '
                         'tokens (is the CLS token dropped?)')
    return side


def num_visual_tokens(pooling: Union[None, str, dict, object], num_frames: int,
                      num_image_tokens: int) -> int:
    """Placeholder tokens of one visual of ``num_frames`` frames of ``num_image_tokens`` each.

    A visual of one frame (an image) is never pooled. Clips: ``NoFramePooling`` keeps
    ``T * N``, ``AvgPool2x2FramePooling`` ``T * (sqrt(N) // 2) ** 2`` (an odd side drops its
    last row and column, as ``F.avg_pool2d``), ``SpatialTemporalFramePooling`` ``T + N``.

    Args:
        pooling: The pooling (``None``, a short name, a config or an instance).
        num_frames (int): Frames of the visual.
        num_image_tokens (int): Tokens of one encoded frame (576 for CLIP ViT-L/14-336).

    Returns:
        int: The count.
    """
    if num_frames == 1:
        return num_image_tokens
    kind = pooling_type(pooling)
    if kind == 'NoFramePooling':
        return num_frames * num_image_tokens
    if kind == 'AvgPool2x2FramePooling':
        return num_frames * (grid_side(num_image_tokens) // 2)**2
    if kind == 'SpatialTemporalFramePooling':
        return num_frames + num_image_tokens
    raise ValueError(f'Unknown frame pooling {kind!r}; one of {sorted(POOLING_ALIASES)} '
                     f'({sorted(POOLING_ALIASES.values())})')
