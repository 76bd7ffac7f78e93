"""Configs of mmengine's training strategies (FSDP, DeepSpeed) made whole before they build.

mmengine's ``DeepSpeedStrategy`` passes its keyword arguments to DeepSpeed as they are, while
``DeepSpeedOptimWrapper`` takes an optimizer and nothing else: a config that says
``optim_wrapper.accumulative_counts`` or ``clip_grad``, as every other recipe here does, would
fail to build, and DeepSpeed would never hear of them. :func:`prepare_strategy_cfg` moves them
into DeepSpeed's dict (``gradient_accumulation_steps``, ``gradient_clipping``), sets the micro
batch to ``train_dataloader.batch_size``, and resolves the ``"auto"`` values of the JSON files
the LLaVA authors trained with (``scripts/zero2.json``, ``zero3.json``, ``zero3_offload.json``
in haotian-liu/LLaVA) as HF Trainer resolves them. Nothing here imports DeepSpeed:
:func:`deepspeed_config` is the dict DeepSpeed would receive, testable on any machine.
"""
import copy
import json
from typing import Optional

from mmllava.registry import OPTIMIZERS

# HF Trainer's resolution of the authors' "auto" ZeRO values, in units of the LLM hidden size h
# (transformers.integrations.deepspeed.HfTrainerDeepSpeedConfig.trainer_config_finalize).
_AUTO_BUCKETS = {'reduce_bucket_size': lambda h: h * h,
                 'stage3_prefetch_bucket_size': lambda h: int(0.9 * h * h),
                 'stage3_param_persistence_threshold': lambda h: 10 * h}
# Keys of DeepSpeedStrategy's own that are DeepSpeed settings (the rest configure mmengine).
_DS_KEYS = ('zero_optimization', 'gradient_clipping', 'fp16', 'bf16', 'amp',
            'activation_checkpointing', 'aio', 'train_micro_batch_size_per_gpu',
            'gradient_accumulation_steps')


def _strategy_type(strategy) -> str:
    kind = strategy.get('type', '')
    return kind if isinstance(kind, str) else kind.__name__


def _hidden_size(cfg) -> Optional[int]:
    try:
        return int(cfg['model']['llm']['config']['hidden_size'])
    except (KeyError, TypeError):
        return None


def _merge(strategy: dict) -> dict:
    """DeepSpeedStrategy's merge: ``config`` (a dict or a JSON path), then its own keys."""
    base = strategy.get('config')
    if isinstance(base, str):
        with open(base) as f:
            base = json.load(f)
    merged = copy.deepcopy(dict(base or {}))
    for key in _DS_KEYS:
        if strategy.get(key) is not None:
            merged[key] = copy.deepcopy(strategy[key])
    return merged


def _settle(merged: dict, key: str, value, source: str) -> None:
    """Set ``merged[key]`` to ``value``; a different explicit value is an error."""
    given = merged.get(key, 'auto')
    if given not in ('auto', None) and value is not None and given != value:
        raise ValueError(f'strategy says {key}={given!r} but {source} is {value!r}: set one of '
                         'them (mmllava fills DeepSpeed from the latter)')
    if value is not None:
        merged[key] = value
    elif given == 'auto':
        merged.pop(key, None)


def _resolve_auto(merged: dict, hidden: Optional[int]) -> None:
    for name in ('fp16', 'bf16'):  # the authors ran bf16 (--bf16 True)
        section = merged.get(name)
        if isinstance(section, dict) and section.get('enabled') == 'auto':
            section['enabled'] = name == 'bf16'
        if isinstance(section, dict) and section.get('enabled') is False:
            merged.pop(name)  # off is DeepSpeed's default
    zero = merged.get('zero_optimization') or {}
    for key, rule in _AUTO_BUCKETS.items():
        if zero.get(key) == 'auto':
            if hidden is None:
                raise ValueError(f'zero_optimization.{key}="auto" needs '
                                 'model.llm.config.hidden_size; give a number')
            zero[key] = rule(hidden)
    if 'gather_16bit_weights_on_model_save' in zero:  # an old spelling in zero3_offload.json
        zero.setdefault('stage3_gather_16bit_weights_on_model_save',
                        zero.pop('gather_16bit_weights_on_model_save'))
    for key in ('train_batch_size', 'optimizer', 'scheduler'):
        # mmengine builds the optimizer and schedulers; DeepSpeed derives the global batch.
        merged.pop(key, None)
    left = [k for k, v in merged.items() if v == 'auto'] + [
        f'zero_optimization.{k}' for k, v in zero.items() if v == 'auto']
    if left:
        raise ValueError(f'DeepSpeed settings left "auto" that mmllava cannot fill: {left}')


def deepspeed_config(cfg) -> dict:
    """The dict DeepSpeed would receive for ``cfg`` (a run config with a DeepSpeed strategy).

    Micro batch = ``train_dataloader.batch_size``; ``gradient_accumulation_steps`` =
    ``optim_wrapper.accumulative_counts``; ``gradient_clipping`` =
    ``optim_wrapper.clip_grad.max_norm``, 0 (off) without ``clip_grad`` (DeepSpeed's own
    default is 1.0); ``"auto"`` values resolved (see the module).

    Raises:
        ValueError: Two sources disagree, a norm other than L2 is asked for clipping, or an
            ``"auto"`` is left that cannot be filled.
    """
    strategy, optim = cfg['strategy'], cfg.get('optim_wrapper') or {}
    merged = _merge(strategy)
    loader = cfg.get('train_dataloader') or {}
    _settle(merged, 'train_micro_batch_size_per_gpu', loader.get('batch_size'),
            'train_dataloader.batch_size')
    _settle(merged, 'gradient_accumulation_steps', optim.get('accumulative_counts'),
            'optim_wrapper.accumulative_counts')
    merged.setdefault('gradient_accumulation_steps', 1)
    clip = optim.get('clip_grad')
    if clip:
        if clip.get('type', 'norm') != 'norm' or clip.get('norm_type', 2) != 2:
            raise ValueError(f'DeepSpeed clips by the global L2 norm only; got clip_grad={clip}')
    _settle(merged, 'gradient_clipping', clip.get('max_norm') if clip else None,
            'optim_wrapper.clip_grad.max_norm')
    # DeepSpeed clips at 1.0 unless told (GRADIENT_CLIPPING_DEFAULT): without clip_grad the
    # recipe does not clip, as with any other optim wrapper.
    merged.setdefault('gradient_clipping', 0.0)
    _resolve_auto(merged, _hidden_size(cfg))
    merged['steps_per_print'] = strategy.get('steps_per_print', 10000000000000)
    return merged


def DeepSpeedCPUAdamW(params, **kwargs):  # noqa: N802 (a registered optimizer name)
    """DeepSpeed's CPU AdamW (ZeRO-Offload keeps the optimizer step on the CPU with it).

    Registered under its own name, as every mmllava module: ``DeepSpeedCPUAdam`` names its first
    argument ``model_params``, while mmengine's optimizer constructors pass ``params``, and
    DeepSpeed refuses a torch optimizer with ``offload_optimizer`` (too slow).
    """
    try:
        from deepspeed.ops.adam import DeepSpeedCPUAdam
    except ImportError as e:
        raise ImportError('optimizer DeepSpeedCPUAdamW needs DeepSpeed: pip install '
                          'deepspeed (a GPU machine)') from e
    return DeepSpeedCPUAdam(params, adamw_mode=True, **kwargs)


def layer_name_wrap_policy(module, recurse: bool, nonwrapped_numel: int,
                           layer_names=()) -> bool:
    """FSDP auto-wrap policy: one FSDP unit per module whose class is named in ``layer_names``.

    torch's ``transformer_auto_wrap_policy`` wants the classes themselves, which a plain-text
    config cannot hold; this takes their names (``'LlamaDecoderLayer'``, ``'CLIPEncoderLayer'``)
    and matches them as FSDP walks the model. In a config::

        auto_wrap_policy=dict(type='mmllava.engine.strategies.layer_name_wrap_policy',
                              layer_names=['LlamaDecoderLayer', 'CLIPEncoderLayer'])
    """
    from torch.distributed.fsdp.wrap import lambda_auto_wrap_policy
    names = set(layer_names)
    return lambda_auto_wrap_policy(module, recurse, nonwrapped_numel,
                                   lambda_fn=lambda m: type(m).__name__ in names)


def prepare_strategy_cfg(cfg) -> None:
    """Complete ``cfg.strategy`` (and ``cfg.optim_wrapper``) in place before the runner builds.

    DeepSpeed: the strategy gets the whole dict of :func:`deepspeed_config` as its ``config``
    (its other DeepSpeed keys are folded in), and ``optim_wrapper`` keeps only what
    ``DeepSpeedOptimWrapper`` takes (and :func:`~mmllava.utils.compat.
    deepspeed_without_onebit` lets the strategy build). FSDP without CUDA: the wrapper is
    told the CPU device (:func:`~mmllava.utils.compat.fsdp_on_cpu_without_cuda`).

    Raises:
        ValueError: A DeepSpeed strategy with another optim wrapper than DeepSpeedOptimWrapper.
    """
    strategy = cfg.get('strategy')
    if not strategy:
        return
    kind = _strategy_type(strategy)
    if kind == 'FSDPStrategy':
        from mmllava.utils.compat import fsdp_on_cpu_without_cuda
        fsdp_on_cpu_without_cuda(strategy)
        return
    if kind != 'DeepSpeedStrategy':
        return
    from mmllava.utils.compat import deepspeed_without_onebit
    deepspeed_without_onebit()
    optim = cfg.get('optim_wrapper') or {}
    if optim.get('type') != 'DeepSpeedOptimWrapper':
        raise ValueError("DeepSpeedStrategy trains through optim_wrapper.type="
                         f"'DeepSpeedOptimWrapper' (DeepSpeed does bf16, accumulation and "
                         f"clipping; train.py's --amp does not apply, bf16 is the strategy's "
                         f"bf16.enabled), got {optim.get('type')!r}")
    ds = deepspeed_config(cfg)
    ds.pop('steps_per_print')
    keep = {k: v for k, v in strategy.items() if k not in _DS_KEYS and k != 'config'}
    strategy.clear()
    strategy.update(keep, config=ds)
    for key in ('accumulative_counts', 'clip_grad', 'dtype', 'loss_scale'):
        optim.pop(key, None)


OPTIMIZERS.register_module(module=DeepSpeedCPUAdamW)

__all__ = ['DeepSpeedCPUAdamW', 'deepspeed_config', 'layer_name_wrap_policy',
           'prepare_strategy_cfg']
