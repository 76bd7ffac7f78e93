"""mmengine 0.10's DeepSpeedStrategy beside DeepSpeed releases without the 1-bit optimizers."""
import importlib


def deepspeed_without_onebit() -> None:
    """Let ``mmengine._strategy.DeepSpeedStrategy`` build where DeepSpeed lacks 1-bit Adam.

    Why: the strategy's ``__init__`` calls ``register_deepspeed_optimizers``, which imports
    ``deepspeed.runtime.fp16.onebit`` (OnebitAdam, OnebitLamb, ZeroOneAdam); DeepSpeed deleted
    those optimizers (deepspeedai/DeepSpeed#8490, in 0.19), so building the strategy raised
    ``ModuleNotFoundError``. The replacement registers, in mmengine's ``OPTIMIZERS``, those of
    the six that this DeepSpeed has, once each (the original raised on a second strategy in
    one process). A no-op without DeepSpeed, and idempotent.
    """
    from mmengine._strategy import deepspeed as ds_strategy
    if getattr(ds_strategy.register_deepspeed_optimizers, '_mmllava', False):
        return
    from mmengine.registry import OPTIMIZERS
    where = {'DeepSpeedCPUAdam': 'deepspeed.ops.adam', 'FusedAdam': 'deepspeed.ops.adam',
             'FusedLamb': 'deepspeed.ops.lamb', 'OnebitAdam': 'deepspeed.runtime.fp16.onebit',
             'OnebitLamb': 'deepspeed.runtime.fp16.onebit',
             'ZeroOneAdam': 'deepspeed.runtime.fp16.onebit'}

    def register_deepspeed_optimizers() -> list:
        names = []
        for name, module in where.items():
            try:
                cls = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError):
                continue
            if OPTIMIZERS.get(name) is None:
                OPTIMIZERS.register_module(module=cls)
            names.append(name)
        return names

    register_deepspeed_optimizers._mmllava = True
    ds_strategy.register_deepspeed_optimizers = register_deepspeed_optimizers
