"""SigLIP vision encoder with LLaVA-OneVision's feature selection."""
import torch
from torch import nn
from transformers import SiglipVisionConfig, SiglipVisionModel

from mmllava.registry import MODELS

from .clip import _check_select


@MODELS.register_module()
class HFSiglipVisionEncoder(nn.Module):
    """transformers' ``SiglipVisionModel`` with LLaVA-OneVision's feature selection.

    SigLIP has no CLS token, so every patch token is a feature (transformers'
    ``vision_feature_select_strategy='full'``). LLaVA-OneVision takes the last hidden state
    of a tower whose last layer was removed (llava-hf's configs say 26 layers for
    SigLIP-so400m's 27), before the post layer norm: ``select_layer=-1``. As for CLIP, only the
    layers up to ``select_layer`` run, and the post layer norm and the attention-pooling head
    are kept for exact checkpoint round trips but never computed. Parameters live under
    ``vision_model.*``.

    Args:
        config (dict): ``SiglipVisionConfig`` keyword arguments (hidden_size,
            num_hidden_layers, image_size, patch_size, ...): the architecture, explicitly.
        select_layer (int): Index into the hidden states (0 = embeddings). Defaults to -1.
        select_feature (str): ``'full'``: every token (the only choice without a CLS token).
    """

    def __init__(self, config: dict, select_layer: int = -1, select_feature: str = 'full'):
        super().__init__()
        if select_feature != 'full':
            raise ValueError(f"select_feature of a SigLIP tower must be 'full' (it has no CLS "
                             f'token to drop), got {select_feature!r}')
        config = dict(config)
        config.setdefault('attn_implementation', 'sdpa')
        self.config = SiglipVisionConfig(**config)
        self.vision_model = SiglipVisionModel(self.config)
        self.select_layer = select_layer
        self.select_feature = select_feature
        self.num_run_layers = _check_select(select_layer, self.config.num_hidden_layers, 'patch')

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def num_image_tokens(self) -> int:
        """Tokens per image: every patch."""
        return (self.config.image_size // self.config.patch_size)**2

    @property
    def dtype(self) -> torch.dtype:
        return self.vision_model.embeddings.patch_embedding.weight.dtype

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Encode images.

        Args:
            pixel_values (Tensor): Normalized images, (N, 3, H, W) at ``image_size``.

        Returns:
            Tensor: Features, (N, num_image_tokens, hidden_size).
        """
        vm = self.vision_model
        hidden = vm.embeddings(pixel_values.to(self.dtype))
        for layer in vm.encoder.layers[:self.num_run_layers]:
            hidden = layer(hidden, None)
        return hidden
