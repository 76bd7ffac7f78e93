"""Checkpoints of a frozen-backbone stage hold only what trained."""
import os
import os.path as osp
from typing import Dict, Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmllava.registry import HOOKS

from .checkpoint import save_weights

# Module names that torch's FSDP units and activation-checkpoint wrappers insert; their state
# dicts (FSDP's full state dict included) leave them out.
_WRAPPER_PREFIXES = ('_fsdp_wrapped_module.', '_checkpoint_wrapped_module.')


def trainable_state_dict_keys(model: torch.nn.Module) -> set:
    """State-dict keys of the parameters that train (``requires_grad``)."""
    if is_model_wrapper(model):
        model = model.module
    names = set()
    for name, p in model.named_parameters():
        if p.requires_grad:
            for prefix in _WRAPPER_PREFIXES:
                name = name.replace(prefix, '')
            names.add(name)
    return names


@HOOKS.register_module()
class TrainableOnlyCheckpointHook(Hook):
    """Keep only trainable parameters in saved checkpoints, and write them as safetensors.

    Works beside mmengine's ``CheckpointHook`` (which decides when to save): before each
    save, ``checkpoint['state_dict']`` is filtered to the parameters with ``requires_grad``
    (the projector in pretraining; projector + adapters with LoRA). Buffers are left out:
    the frozen base provides them. A 7B pretraining checkpoint thus weighs ~80 MB, not 14 GB.

    After each save, ``<checkpoint>.safetensors`` (the same tensors, plain data) is written
    next to it: that file is what a later stage gives as ``load_base``, and what inference
    and ``merge_lora.py`` read, since only resume may unpickle the ``.pth`` (from its own
    work_dir). The best checkpoint of ``CheckpointHook(save_best=...)`` gets its twin too.
    Safetensors files whose ``.pth`` ``CheckpointHook`` removed (``max_keep_ckpts``, a
    replaced best) are removed too.

    Args:
        save_safetensors (bool): Write the ``.safetensors`` twin. Defaults to True.
    """

    priority = 'LOWEST'  # after CheckpointHook (VERY_LOW) has saved and set last_ckpt

    def __init__(self, save_safetensors: bool = True):
        self.save_safetensors = save_safetensors
        self._pending: Optional[Dict[str, torch.Tensor]] = None
        self._written = []

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Filter ``checkpoint['state_dict']`` to the trainable parameters."""
        keep = trainable_state_dict_keys(runner.model)
        state = checkpoint['state_dict']
        checkpoint['state_dict'] = type(state)((k, v) for k, v in state.items() if k in keep)
        checkpoint.setdefault('meta', {})['trainable_only'] = True
        self._pending = dict(checkpoint['state_dict'])

    def _flush(self, runner, info: str = 'last_ckpt') -> None:
        if self._pending is None or not self.save_safetensors:
            self._pending = None
            return
        pending, self._pending = self._pending, None
        if runner.rank != 0:
            return
        last = runner.message_hub.get_info(info)
        if not last or not osp.isfile(last):
            return
        path = osp.splitext(last)[0] + '.safetensors'
        save_weights(pending, path, metadata=dict(source=osp.basename(last),
                                                  trainable_only='true'))
        self._written.append((last, path))
        runner.logger.info(f'Trainable weights ({len(pending)} tensors) written to {path}')
        # Follow CheckpointHook's max_keep_ckpts: drop twins of removed checkpoints.
        kept = []
        for pth, st in self._written:
            if osp.isfile(pth):
                kept.append((pth, st))
            elif osp.isfile(st):
                os.remove(st)
        self._written = kept

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._flush(runner)

    def after_train_epoch(self, runner) -> None:
        self._flush(runner)

    def after_train(self, runner) -> None:
        self._flush(runner)

    def after_val_epoch(self, runner, metrics=None) -> None:
        # CheckpointHook's save_best writes best_<metric>_<ckpt>.pth here (and removes the
        # previous best, whose twin goes with it).
        self._flush(runner, info='best_ckpt')
