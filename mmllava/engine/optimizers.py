"""Optimizer parts for LLaVA training: the projector learning-rate group and bf16 autocast."""
import re
from contextlib import contextmanager
from typing import List, Optional

import torch
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from torch import nn

from mmllava.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS

# As transformers' Trainer (get_decay_parameter_names): no weight decay on biases and norms.
_NO_DECAY = re.compile(r'(bias|layernorm|layer_norm|rmsnorm|(^|\.)norm($|\.)|_norm($|\.)|'
                       r'(^|\.)ln_|norm\d*\.)', re.IGNORECASE)


def _no_decay(name: str, param: nn.Parameter, module: Optional[nn.Module]) -> bool:
    if module is not None and 'norm' in type(module).__name__.lower():
        return True
    return bool(_NO_DECAY.search(name))


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LlavaOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Parameter groups as the original LLaVA trainer builds them.

    Four groups at most: {projector, rest} x {decay, no decay}. Biases and norm weights get
    no weight decay (as transformers' ``Trainer``); the projector may have its own learning
    rate (``projector_lr``, LLaVA's ``mm_projector_lr``, used by the LoRA recipe). Frozen
    parameters are left out of the optimizer altogether.

    Config::

        optim_wrapper = dict(
            type='OptimWrapper',
            optimizer=dict(type='AdamW', lr=2e-4, weight_decay=0.),
            constructor='LlavaOptimWrapperConstructor',
            paramwise_cfg=dict(projector_lr=2e-5))

    ``paramwise_cfg`` keys: ``projector_lr`` (float, optional), ``projector_prefix``
    (``'projector.'``), ``no_decay_on_bias_and_norm`` (True).
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        self.projector_lr = paramwise_cfg.pop('projector_lr', None)
        self.projector_prefix = paramwise_cfg.pop('projector_prefix', 'projector.')
        self.no_decay_on_bias_and_norm = paramwise_cfg.pop('no_decay_on_bias_and_norm', True)
        if paramwise_cfg:
            raise ValueError(f'Unknown paramwise_cfg keys for LlavaOptimWrapperConstructor: '
                             f'{sorted(paramwise_cfg)}')
        super().__init__(optim_wrapper_cfg, None)

    def param_groups(self, model: nn.Module) -> List[dict]:
        """The optimizer's parameter groups (only trainable parameters)."""
        if hasattr(model, 'module'):  # DDP and other wrappers
            model = model.module
        owners = {}
        for mod_name, module in model.named_modules():
            for p_name, _ in module.named_parameters(recurse=False):
                owners[f'{mod_name}.{p_name}' if mod_name else p_name] = module
        base_lr = self.optimizer_cfg.get('lr')
        base_wd = self.optimizer_cfg.get('weight_decay', 0.)
        groups = {}
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            projector = name.startswith(self.projector_prefix)
            no_decay = self.no_decay_on_bias_and_norm and _no_decay(name, param,
                                                                     owners.get(name))
            key = (projector and self.projector_lr is not None, no_decay)
            if key not in groups:
                group = dict(params=[], names=[])
                if key[0]:
                    group['lr'] = self.projector_lr
                elif base_lr is not None:
                    group['lr'] = base_lr
                group['weight_decay'] = 0. if no_decay else base_wd
                groups[key] = group
            groups[key]['params'].append(param)
            groups[key]['names'].append(name)
        if not groups:
            raise ValueError('The model has no trainable parameter: check the freeze_* options')
        return [groups[k] for k in sorted(groups)]

    def __call__(self, model: nn.Module) -> OptimWrapper:
        from mmengine.registry import build_from_cfg
        optim_wrapper_cfg = self.optim_wrapper_cfg.copy()
        optim_wrapper_cfg.setdefault('type', 'OptimWrapper')
        optimizer_cfg = self.optimizer_cfg.copy()
        optimizer_cfg['params'] = [
            {k: v for k, v in g.items() if k != 'names'} for g in self.param_groups(model)]
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        return build_from_cfg(optim_wrapper_cfg, OPTIM_WRAPPERS,
                              default_args=dict(optimizer=optimizer))


@OPTIM_WRAPPERS.register_module()
class BF16OptimWrapper(OptimWrapper):
    """bfloat16 autocast on any device (CPU included), without loss scaling.

    mmengine's ``AmpOptimWrapper`` refuses to build without an accelerator, and bf16 needs no
    loss scaler (its exponent range is fp32's). Parameters and optimizer states stay fp32;
    only the forward runs in bf16 where autocast allows. For fp16 on a GPU use mmengine's
    ``AmpOptimWrapper`` with ``dtype='float16'`` (dynamic loss scaling).
    """

    @contextmanager
    def optim_context(self, model: nn.Module):
        """Gradient accumulation context of ``OptimWrapper``, plus bf16 autocast."""
        device_type = 'cuda' if next(model.parameters()).is_cuda else 'cpu'
        with super().optim_context(model), torch.autocast(device_type=device_type,
                                                          dtype=torch.bfloat16):
            yield
