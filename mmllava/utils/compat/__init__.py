"""Shims that let our pinned dependencies work together, each with its reason and a test.

- :func:`patch_mmpretrain_multimodal`: mmpretrain 1.2.0's multimodal models do not import
  beside transformers 5 (applied by ``import mmllava``).
- :func:`vqa_text_rules`: mmpretrain's private copies of the official VQA answer rules.
- :func:`trusted_torch_load`: torch >= 2.6 loads ``weights_only`` by default, which mmengine's
  own resume checkpoints do not pass.
- :func:`cache_pretty_text`: mmengine formats a whole config with yapf each time it is logged
  or saved (seconds per checkpoint).
- :func:`use_gloo_without_cuda`: mmengine's distributed set-up assumes CUDA and NCCL.
- :func:`fsdp_on_cpu_without_cuda`: mmengine's FSDP wrapper is given a CUDA device index;
  :func:`deepspeed_without_onebit`: mmengine's DeepSpeedStrategy imports optimizers DeepSpeed
  0.19 deleted (both tested in ``tests/test_engine/test_strategies.py``).
- :func:`make_linear4bit`, :func:`fix_cpu_dequantize_4bit`: bitsandbytes (optional, QLoRA)
  across versions, and its 0.50.2 CPU kernel that dequantizes rows of a partial block wrongly
  (tested in ``tests/test_models/test_qlora.py``).
- :func:`this_thread_omp_threads`: torch's thread count is process-wide; the decode loop sets
  only its own thread's OpenMP count.

Tested in ``tests/test_utils/test_compat.py`` (mmpretrain's import) and
``tests/test_utils/test_compat_shims.py`` (the others).
"""
import importlib

from .mmpretrain import install_mmpretrain_hook, patch_mmpretrain_multimodal, vqa_text_rules

# The shims that need torch or mmengine load on first use: `import mmllava` stays cheap.
_LAZY = {'use_gloo_without_cuda': 'distributed', 'fsdp_on_cpu_without_cuda': 'distributed',
         'deepspeed_without_onebit': 'deepspeed', 'CachedTextConfig': 'mmengine_config',
         'cache_pretty_text': 'mmengine_config', 'trusted_torch_load': 'torch_load',
         'bitsandbytes_available': 'bitsandbytes', 'make_linear4bit': 'bitsandbytes',
         'fix_cpu_dequantize_4bit': 'bitsandbytes', 'this_thread_omp_threads': 'openmp',
         'omp_available': 'openmp'}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f'{__name__}.{_LAZY[name]}'), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def apply_all() -> None:
    """Apply the import-time shims; called once by ``import mmllava`` (mmpretrain's when its
    models are first imported, so that importing mmllava stays cheap)."""
    install_mmpretrain_hook()


__all__ = [
    'CachedTextConfig', 'apply_all', 'bitsandbytes_available', 'cache_pretty_text',
    'deepspeed_without_onebit', 'fix_cpu_dequantize_4bit', 'make_linear4bit',
    'fsdp_on_cpu_without_cuda',
    'omp_available', 'patch_mmpretrain_multimodal', 'this_thread_omp_threads',
    'trusted_torch_load', 'use_gloo_without_cuda', 'vqa_text_rules'
]
