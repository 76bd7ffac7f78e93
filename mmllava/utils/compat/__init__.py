"""Shims that let our pinned dependencies work together, each with its reason and a test.

- :func:`patch_mmpretrain_multimodal`: mmpretrain 1.2.0's multimodal models do not import
  beside transformers 5 (applied by ``import mmllava``).
- :func:`vqa_text_rules`: mmpretrain's private copies of the official VQA answer rules.
- :func:`trusted_torch_load`: torch >= 2.6 loads ``weights_only`` by default, which mmengine's
  own resume checkpoints do not pass.
- :func:`cache_pretty_text`: mmengine formats a whole config with yapf each time it is logged
  or saved (seconds per checkpoint).
- :func:`use_gloo_without_cuda`: mmengine's distributed set-up assumes CUDA and NCCL.

Tested in ``tests/test_utils/test_compat.py`` (mmpretrain's import) and
``tests/test_utils/test_compat_shims.py`` (the others).
"""
from .distributed import use_gloo_without_cuda
from .mmengine_config import CachedTextConfig, cache_pretty_text
from .mmpretrain import patch_mmpretrain_multimodal, vqa_text_rules
from .torch_load import trusted_torch_load


def apply_all() -> None:
    """Apply the import-time shims; called once by ``import mmllava``."""
    patch_mmpretrain_multimodal()


__all__ = [
    'CachedTextConfig', 'apply_all', 'cache_pretty_text', 'patch_mmpretrain_multimodal',
    'trusted_torch_load', 'use_gloo_without_cuda', 'vqa_text_rules'
]
