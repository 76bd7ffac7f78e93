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
    'maxpool2x2': 'MaxPool2x2FramePooling',
    'bilinear': 'BilinearFramePooling',
}


def _avgpool2x2(num_frames: int, num_image_tokens: int) -> int:
    return num_frames * (grid_side(num_image_tokens) // 2)**2


# Registered class name -> the placeholder count of a clip of (frames, tokens per frame).
_COUNTS = {
    'NoFramePooling': lambda t, n: t * n,
    'AvgPool2x2FramePooling': _avgpool2x2,
    'SpatialTemporalFramePooling': lambda t, n: t + n,
    'MaxPool2x2FramePooling': _avgpool2x2,
    'BilinearFramePooling': lambda t, n: t * math.ceil(grid_side(n) / 2)**2,
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
        raise ValueError(f'pooling needs a square token grid per frame, got {num_image_tokens} '
                         'tokens (is the CLS token dropped?)')
    return side


def num_visual_tokens(pooling: Union[None, str, dict, object], num_frames: int,
                      num_image_tokens: int) -> int:
    """Placeholder tokens of one visual of ``num_frames`` frames of ``num_image_tokens`` each.

    A visual of one frame (an image) is never pooled. Clips: ``NoFramePooling`` keeps
    ``T * N``, ``AvgPool2x2FramePooling`` and ``MaxPool2x2FramePooling``
    ``T * (sqrt(N) // 2) ** 2`` (an odd side drops its last row and column, as
    ``F.avg_pool2d``), ``BilinearFramePooling`` ``T * ceil(sqrt(N) / 2) ** 2``,
    ``SpatialTemporalFramePooling`` ``T + N``; a pooling with a ``newline`` adds its newline
    tokens (:func:`newline_tokens`).
    Any other pooling registered in ``MODELS`` counts its own tokens: its
    ``num_visual_tokens(num_frames, num_image_tokens)`` method (a subclass of a built-in one
    that does not define it counts as its parent).

    Args:
        pooling: The pooling (``None``, a short name, a config or an instance).
        num_frames (int): Frames of the visual.
        num_image_tokens (int): Tokens of one encoded frame (576 for CLIP ViT-L/14-336).

    Returns:
        int: The count.
    """
    if num_frames == 1:
        return num_image_tokens
    count = _pooled_count(pooling, num_frames, num_image_tokens)
    return count + newline_tokens(video_newline(pooling), num_frames, count)


NEWLINES = (False, 'one_token', 'grid')


def check_newline(newline) -> Union[bool, str]:
    """A pooling's ``newline`` normalized: ``False`` (or ``'no_token'``), ``'one_token'`` (or
    ``True``), ``'grid'``."""
    value = {True: 'one_token', 'no_token': False, None: False}.get(newline, newline)
    if value not in NEWLINES:
        raise ValueError(f"newline must be False, True, 'no_token', 'one_token' or 'grid', "
                         f'got {newline!r}')
    return value


def newline_tokens(newline, num_frames: int, pooled: int) -> int:
    """Newline tokens a clip of ``num_frames`` frames pooled to ``pooled`` tokens gets: one
    (``'one_token'``), one per row of each frame's square grid (``'grid'``), or none."""
    newline = check_newline(newline)
    if newline == 'one_token':
        return 1
    if newline == 'grid':
        return num_frames * grid_side(pooled // num_frames)
    return 0


def video_newline(pooling: Union[None, str, dict, object]) -> Union[bool, str]:
    """Where the pooling puts the model's ``image_newline`` in a clip (:data:`NEWLINES`)."""
    if isinstance(pooling, dict):
        return check_newline(pooling.get('newline', False))
    if pooling is None or isinstance(pooling, str):
        return False
    return check_newline(getattr(pooling, 'newline', False))


def _pooled_count(pooling, num_frames: int, num_image_tokens: int) -> int:
    kind = pooling_type(pooling)
    if kind in _COUNTS:
        return _COUNTS[kind](num_frames, num_image_tokens)
    if isinstance(pooling, (str, dict)):
        from mmllava.registry import MODELS  # a custom pooling: its own count
        if MODELS.get(kind) is None:
            raise ValueError(f'Unknown frame pooling {kind!r}; one of {sorted(POOLING_ALIASES)} '
                             f'({sorted(_COUNTS)}) or a pooling registered in MODELS')
        pooling = MODELS.build(dict(pooling) if isinstance(pooling, dict) else dict(type=kind))
    for cls in type(pooling).__mro__:
        if cls.__name__ in _COUNTS:
            return _COUNTS[cls.__name__](num_frames, num_image_tokens)
        if 'num_visual_tokens' in cls.__dict__:
            return pooling.num_visual_tokens(num_frames, num_image_tokens)
    raise ValueError(f'Frame pooling {kind!r} has no num_visual_tokens(num_frames, '
                     'num_image_tokens) method')


def builtin_num_visual_tokens(cls: type, num_frames: int, num_image_tokens: int) -> int:
    """The count of the first built-in pooling among ``cls`` and its bases (what a pooling
    class that does not count its own tokens gives)."""
    if num_frames == 1:
        return num_image_tokens
    for base in cls.__mro__:
        if base.__name__ in _COUNTS:
            return _COUNTS[base.__name__](num_frames, num_image_tokens)
    raise ValueError(f'{cls.__name__} is not a built-in frame pooling: give it a '
                     'num_visual_tokens(num_frames, num_image_tokens) method')
