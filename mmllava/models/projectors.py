"""LLaVA projectors, with the original's parameter names (``.0``/``.2`` for mlp2x_gelu)."""
import re

from torch import nn

from mmllava.registry import MODELS


@MODELS.register_module()
def LlavaProjector(projector_type: str, in_channels: int, out_channels: int) -> nn.Module:
    """Build a projector as the original LLaVA does (``llava/model/multimodal_projector``).

    Args:
        projector_type (str): ``'linear'`` (LLaVA-1: one ``nn.Linear``, keys ``weight``/
            ``bias``), ``'mlp{N}x_gelu'`` (LLaVA-1.5 uses N=2: Linear, GELU, Linear, keys
            ``0.*``/``2.*``), or ``'identity'``.
        in_channels (int): Vision feature width.
        out_channels (int): LLM hidden size.

    Returns:
        nn.Module: The projector.
    """
    if projector_type == 'linear':
        return nn.Linear(in_channels, out_channels)
    match = re.fullmatch(r'mlp(\d+)x_gelu', projector_type)
    if match:
        layers = [nn.Linear(in_channels, out_channels)]
        for _ in range(1, int(match.group(1))):
            layers += [nn.GELU(), nn.Linear(out_channels, out_channels)]
        return nn.Sequential(*layers)
    if projector_type == 'identity':
        if in_channels != out_channels:
            raise ValueError(f'identity projector needs in_channels == out_channels, got '
                             f'{in_channels} and {out_channels}')
        return nn.Identity()
    raise ValueError(f"Unknown projector_type {projector_type!r}: expected 'linear', "
                     "'mlp{N}x_gelu' or 'identity'")
