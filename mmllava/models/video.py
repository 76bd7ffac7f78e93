"""Video clips in LLaVA: frame pooling and a fixed temporal position signal.

A clip reaches the model as its frames, each encoded like an image (vision encoder + projector,
``(T, N, C)`` for ``T`` frames of ``N`` tokens). A pooling then turns the frames of one clip into
the tokens scattered into its ``<video>`` placeholders. Pooling runs after the projector unless
a pooling's ``stage`` is ``'vision'``; no pooling adds weights, so converted LLaVA checkpoints
load strictly.

Poolings (registered in ``MODELS``; :func:`build_frame_pooling` also takes the short names):

- ``'none'`` (:class:`NoFramePooling`, Video-LLaVA): every token of every frame, ``T * N``.
- ``'avgpool2x2'`` (:class:`AvgPool2x2FramePooling`, LLaVA-NeXT-Video): each frame's square
  token grid average-pooled with kernel and stride 2 (24x24 -> 12x12 = 144), ``T * N / 4``;
  ``'maxpool2x2'`` (:class:`MaxPool2x2FramePooling`) the same with the maximum. Both pool after
  the projector by default (the LLaVA-NeXT repository's ``get_2dPool``), or before it with
  ``stage='vision'`` (transformers' ``LlavaNextVideoPooler``).
- ``'bilinear'`` (:class:`BilinearFramePooling`, LLaVA-OneVision / LLaVA-Video): each frame's
  grid resized bilinearly to ``ceil(side / 2)`` a side (27x27 -> 14x14 = 196).
- ``'spatial_temporal'`` (:class:`SpatialTemporalFramePooling`, Video-ChatGPT): the spatial
  mean of each frame (``T`` tokens, in frame order) then the temporal mean of each token
  position (``N`` tokens), ``T + N``, concatenated in Video-ChatGPT's order. Video-ChatGPT
  pools CLIP features before its linear projector; we pool after ours, which is the same for a
  linear projector and an approximation for ``mlp2x_gelu``.

Visuals of one frame (images) are never pooled and never get a position signal, so image-only
inputs stay bit-identical to plain LLaVA.
"""
import math
from typing import Union

import torch

from mmllava.registry import MODELS
from mmllava.structures import POOLING_ALIASES
from mmllava.structures.visual_tokens import (
    builtin_num_visual_tokens,
    check_newline,
    grid_side,
    newline_tokens,
)


@MODELS.register_module()
class NoFramePooling:
    """Keep every token of every frame (Video-LLaVA)."""

    def num_visual_tokens(self, num_frames: int, num_image_tokens: int) -> int:
        """Tokens given to a clip of ``num_frames`` frames
        (:func:`mmllava.structures.num_visual_tokens`)."""
        if num_frames == 1:
            return num_image_tokens
        count = builtin_num_visual_tokens(type(self), num_frames, num_image_tokens)
        return count + newline_tokens(getattr(self, 'newline', False), num_frames, count)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, N, C) -> (T * N, C)."""
        return frames.reshape(-1, frames.shape[-1])

    def __repr__(self) -> str:
        return f'{type(self).__name__}()'


@MODELS.register_module()
class AvgPool2x2FramePooling(NoFramePooling):
    """Average-pool each frame's square token grid with kernel and stride 2 (LLaVA-NeXT-Video).

    An odd grid side drops its last row and column, as ``F.avg_pool2d`` does.

    Args:
        stage (str): ``'projector'`` (default): pool the projected tokens, as the LLaVA-NeXT
            repository's ``get_2dPool``; ``'vision'``: pool the vision tower's features and
            project the pooled tokens, as transformers' ``LlavaNextVideoPooler`` (its
            ``vision_resampler``). The two differ for an MLP projector.
        newline (bool | str): As :class:`BilinearFramePooling` (``stage='projector'`` only).
    """

    STAGES = ('projector', 'vision')
    _pool = staticmethod(torch.nn.functional.avg_pool2d)

    def __init__(self, stage: str = 'projector', newline=False):
        if stage not in self.STAGES:
            raise ValueError(f'stage must be one of {self.STAGES}, got {stage!r}')
        self.stage = stage
        self.newline = check_newline(newline)
        if self.newline and stage == 'vision':
            raise ValueError("a clip newline is an LLM-space token: use it with "
                             "stage='projector'")

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, N, C) -> (T * (sqrt(N) // 2) ** 2, C), row-major within each frame."""
        t, n, c = frames.shape
        side = grid_side(n)
        grid = frames.reshape(t, side, side, c).permute(0, 3, 1, 2)
        pooled = self._pool(grid, kernel_size=2, stride=2)
        return pooled.flatten(2).transpose(1, 2).reshape(-1, c)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(stage={self.stage!r}, newline={self.newline!r})'


@MODELS.register_module()
class MaxPool2x2FramePooling(AvgPool2x2FramePooling):
    """Max-pool each frame's token grid with kernel and stride 2 (LLaVA-NeXT-Video's
    ``mm_spatial_pool_mode='max'``); ``stage`` as :class:`AvgPool2x2FramePooling`."""

    _pool = staticmethod(torch.nn.functional.max_pool2d)


@MODELS.register_module()
class BilinearFramePooling(NoFramePooling):
    """Resize each frame's token grid bilinearly to half its side, rounded up (LLaVA-OneVision
    and LLaVA-Video: 27x27 -> 14x14 = 196 tokens a frame), after the projector.

    Args:
        newline (bool | str): Where the model's ``image_newline`` goes (the LLaVA-NeXT
            repository's ``mm_newline_position``): ``False`` (``'no_token'``) nowhere;
            ``True`` or ``'one_token'`` once at the end of the clip (OneVision, as
            transformers); ``'grid'`` at the end of each row of each pooled frame.
    """

    def __init__(self, newline=False):
        self.newline = check_newline(newline)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(newline={self.newline})'

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, N, C) -> (T * ceil(sqrt(N) / 2) ** 2, C), row-major within each frame."""
        t, n, c = frames.shape
        side = grid_side(n)
        grid = frames.reshape(t, side, side, c).permute(0, 3, 1, 2)
        half = math.ceil(side / 2)
        pooled = torch.nn.functional.interpolate(grid, size=[half, half], mode='bilinear')
        return pooled.permute(0, 2, 3, 1).reshape(-1, c)


@MODELS.register_module()
class SpatialTemporalFramePooling(NoFramePooling):
    """Video-ChatGPT's pooling: per-frame spatial means (T), then per-token temporal means (N)."""

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, N, C) -> (T + N, C)."""
        return torch.cat([frames.mean(dim=1), frames.mean(dim=0)])


def build_frame_pooling(cfg: Union[None, str, dict, NoFramePooling]) -> NoFramePooling:
    """Build a frame pooling from ``None`` (no pooling), a short name, a config or an instance."""
    if cfg is None:
        return NoFramePooling()
    if isinstance(cfg, NoFramePooling):
        return cfg
    if isinstance(cfg, str):
        cfg = dict(type=cfg)
    cfg = dict(cfg)
    cfg['type'] = POOLING_ALIASES.get(cfg['type'], cfg['type'])
    return MODELS.build(cfg)


def frame_position_embedding(num_frames: int, dim: int, device=None,
                             dtype=torch.float32) -> torch.Tensor:
    """Fixed sinusoidal embeddings of frame indices (Transformer style), (T, dim).

    Row ``t`` is ``sin(t / 10000^(2i/dim))`` at even channels ``2i`` and the cosine at odd ones.
    Fixed rather than learned so the model gains no weights (checkpoints still load strictly).
    """
    position = torch.arange(num_frames, dtype=torch.float32, device=device)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device)
                     * (-math.log(10000.0) / dim))
    pe = torch.zeros(num_frames, dim, dtype=torch.float32, device=device)
    pe[:, 0::2] = torch.sin(position * freq)
    pe[:, 1::2] = torch.cos(position * freq)[:, :dim // 2]
    return pe.to(dtype)
