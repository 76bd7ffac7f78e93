"""CLIP vision encoders with LLaVA's feature selection."""
from typing import Optional

import torch
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel

from mmllava.registry import MODELS

_STRATEGIES = ('patch', 'cls_patch')


def _check_select(select_layer: int, num_layers: int, select_feature: str) -> int:
    """Return how many encoder layers must run to reach ``select_layer``."""
    if select_feature not in _STRATEGIES:
        raise ValueError(f'select_feature must be one of {_STRATEGIES}, got {select_feature!r}')
    # hidden_states[0] is the embedding output; hidden_states[i] the i-th layer's.
    index = select_layer if select_layer >= 0 else num_layers + 1 + select_layer
    if not 0 <= index <= num_layers:
        raise ValueError(f'select_layer {select_layer} is out of range for a {num_layers}-layer '
                         'vision encoder')
    return index


@MODELS.register_module()
class HFCLIPVisionEncoder(nn.Module):
    """transformers' ``CLIPVisionModel`` with LLaVA's feature selection.

    Parameters live under ``vision_model.*`` so that our keys equal llava-hf's classic
    ``vision_tower.vision_model.*`` layout. Only the layers up to ``select_layer`` run: LLaVA
    takes ``hidden_states[-2]``, so the last encoder layer and the post layer norm are kept for
    exact checkpoint round trips but never computed.

    Args:
        config (dict): ``CLIPVisionConfig`` keyword arguments (hidden_size, num_hidden_layers,
            image_size, patch_size, ...): the architecture, explicitly, no hub.
        select_layer (int): Index into the hidden states (0 = embeddings). Defaults to -2.
        select_feature (str): ``'patch'`` drops the CLS token (LLaVA's default), ``'cls_patch'``
            keeps it.
    """

    def __init__(self, config: dict, select_layer: int = -2, select_feature: str = 'patch'):
        super().__init__()
        config = dict(config)
        config.setdefault('attn_implementation', 'sdpa')
        self.config = CLIPVisionConfig(**config)
        self.vision_model = CLIPVisionModel(self.config)
        self.select_layer = select_layer
        self.select_feature = select_feature
        self.num_run_layers = _check_select(select_layer, self.config.num_hidden_layers,
                                            select_feature)

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def num_image_tokens(self) -> int:
        """Tokens per image after feature selection."""
        patches = (self.config.image_size // self.config.patch_size)**2
        return patches + (1 if self.select_feature == 'cls_patch' else 0)

    @property
    def dtype(self) -> torch.dtype:
        return self.vision_model.embeddings.patch_embedding.weight.dtype

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Encode images.

        Args:
            pixel_values (Tensor): Normalized images, (N, 3, H, W).

        Returns:
            Tensor: Selected features, (N, num_image_tokens, hidden_size).
        """
        vm = self.vision_model
        hidden = vm.embeddings(pixel_values.to(self.dtype))
        hidden = vm.pre_layrnorm(hidden)
        for layer in vm.encoder.layers[:self.num_run_layers]:
            hidden = layer(hidden, None)
        # select_layer -1 is the last layer's output before post_layernorm, as in transformers.
        if self.select_feature == 'patch':
            hidden = hidden[:, 1:]
        return hidden


@MODELS.register_module()
class OpenCLIPVisionEncoder(nn.Module):
    """An open_clip ViT as LLaVA's vision encoder (architecture from open_clip's own configs).

    Args:
        model_name (str): An open_clip architecture name, e.g. ``'ViT-B-16'``.
        select_layer (int): Index into the hidden states (0 = after ``ln_pre``). Defaults to -2.
        select_feature (str): ``'patch'`` or ``'cls_patch'``.
        model_cfg (dict, optional): Overrides of the architecture's ``vision_cfg``.
    """

    def __init__(self, model_name: str = 'ViT-B-16', select_layer: int = -2,
                 select_feature: str = 'patch', model_cfg: Optional[dict] = None):
        super().__init__()
        import open_clip

        cfg = open_clip.get_model_config(model_name)
        if cfg is None:
            raise ValueError(f'Unknown open_clip architecture {model_name!r}; known: '
                             f'{open_clip.list_models()}')
        vision_cfg = open_clip.model.CLIPVisionCfg(**{**cfg['vision_cfg'], **(model_cfg or {})})
        self.visual = open_clip.model._build_vision_tower(cfg['embed_dim'], vision_cfg)
        self.select_layer = select_layer
        self.select_feature = select_feature
        self.num_layers = len(self.visual.transformer.resblocks)
        self.num_run_layers = _check_select(select_layer, self.num_layers, select_feature)
        self._width = vision_cfg.width
        grid = vision_cfg.image_size // vision_cfg.patch_size
        self._num_patches = grid * grid

    @property
    def hidden_size(self) -> int:
        return self._width

    @property
    def num_image_tokens(self) -> int:
        return self._num_patches + (1 if self.select_feature == 'cls_patch' else 0)

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Encode images into (N, num_image_tokens, hidden_size) features."""
        visual = self.visual
        x = visual._embeds(pixel_values.to(self.dtype))  # conv, CLS, positions, ln_pre
        batch_first = getattr(visual.transformer, 'batch_first', True)
        if not batch_first:
            x = x.transpose(0, 1)
        for block in visual.transformer.resblocks[:self.num_run_layers]:
            x = block(x)
        if not batch_first:
            x = x.transpose(0, 1)
        if self.select_feature == 'patch':
            x = x[:, 1:]
        return x
