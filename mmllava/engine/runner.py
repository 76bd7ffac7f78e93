"""mmengine's Runner with LLaVA's weight semantics: base weights, partial checkpoints, safe resume.

Three ways weights enter a training run, in this order:

1. ``load_base`` (config key; a path or a list of paths): the frozen base, e.g. a converted
   LLaVA or Vicuna + CLIP in mmllava's layout, then an earlier stage's trainable weights (the
   pretrained projector). Read with the safe loader (safetensors / weights-only torch); later
   files override earlier ones. Keys the model lacks, or of the wrong shape, are errors;
   parameters no file gives keep their initialization and are reported.
2. ``load_from`` (mmengine's key): weights to start from, read with the same safe loader and
   the same rules: e.g. the ``.safetensors`` twin of a trainable-only checkpoint.
3. ``resume``: the run's own state (model, optimizer, schedulers, message hub). Only this
   unpickles, and only from a file inside the run's ``work_dir``: a pickle runs code, and the
   run wrote its work_dir itself. Anything else is refused with the reason (torch >= 2.6 loads
   with ``weights_only=True``, which mmengine's checkpoints do not pass).
"""
import os
import os.path as osp
import re
import warnings
from typing import Callable, Optional, Sequence, Union

import torch
from mmengine.model import is_model_wrapper
from mmengine.runner import FlexibleRunner, Runner
from torch import nn

from mmllava.utils.compat import cache_pretty_text, trusted_torch_load

from .checkpoint import (
    UnsafeCheckpointError,
    align_vocab_rows,
    load_partial_files,
    load_partial_weights,
    load_weights,
    summarize_missing,
)
from .strategies import prepare_strategy_cfg


class ResumeOutsideWorkDirError(UnsafeCheckpointError):
    """A resume checkpoint that does not lie inside the run's own work_dir."""


def is_inside(path: str, folder: str) -> bool:
    """Whether ``path`` (resolved, symlinks followed) lies inside ``folder``."""
    path, folder = osp.realpath(path), osp.realpath(folder)
    try:
        return osp.commonpath([path, folder]) == folder
    except ValueError:  # different drives
        return False


def check_resume_path(filename: str, work_dir: str) -> str:
    """Return ``filename`` if it may be unpickled for resuming, else raise.

    Raises:
        ResumeOutsideWorkDirError: ``filename`` is outside ``work_dir``.
    """
    if not is_inside(filename, work_dir):
        raise ResumeOutsideWorkDirError(
            f'Refusing to resume from {filename}: it is not inside this run\'s work_dir '
            f'{work_dir}. Resuming unpickles the whole training state (optimizer, schedulers, '
            'message hub), and unpickling runs code, so mmllava does it only for checkpoints the '
            'run wrote itself. Resume with --work-dir set to the folder of that checkpoint, or, '
            'to start from its weights instead, give its .safetensors twin (or other plain '
            'weights) as load_from / load_base.')
    return filename


def find_resume_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` (auto) continues from, or None when the run saved none.

    mmengine's ``last_checkpoint`` file names it. That file is written just after each
    checkpoint: a run killed between opening and writing it leaves it empty (or naming a file
    since removed), and mmengine would then resume from ``''``. Then the newest
    ``iter_*.pth`` / ``epoch_*.pth`` in ``work_dir`` is taken, with a warning: it was saved
    completely before ``last_checkpoint`` was opened.
    """
    marker = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        return None
    with open(marker) as f:
        named = f.read().strip()
    if named and osp.isfile(named):
        return named
    found = []
    for name in os.listdir(work_dir):
        m = re.fullmatch(r'(iter|epoch)_(\d+)\.pth', name)
        if m:
            found.append((int(m.group(2)), osp.join(work_dir, name)))
    if not found:
        return None
    newest = max(found)[1]
    warnings.warn(f'{marker} ' + (f'names {named}, which does not exist' if named else
                                   'is empty (the run was killed while writing it)') +
                  f': resuming from the newest checkpoint in the work_dir, {newest}')
    return newest


class _LlavaRunnerMixin:
    """Weight loading shared by our Runner and FlexibleRunner."""

    def _find_auto_resume(self) -> None:
        """Auto resume (``resume=True``, no file): pick the checkpoint with
        :func:`find_resume_checkpoint`, so an empty ``last_checkpoint`` is no error."""
        if self._resume and self._load_from is None:
            self._load_from = find_resume_checkpoint(self.work_dir)
            if self._load_from is None:  # nothing saved (or an empty marker, no file)
                self._resume = False
                self.logger.warning(f'resume: no checkpoint in {self.work_dir}; training '
                                    'starts from the beginning')

    @classmethod
    def from_cfg(cls, cfg):
        """mmengine's ``from_cfg``, with the config's text formatted once."""
        return super().from_cfg(cache_pretty_text(cfg))

    def _unwrapped(self) -> nn.Module:
        return self.model.module if is_model_wrapper(self.model) else self.model

    def load_base_weights(self, paths: Union[str, Sequence[str], None] = None,
                          model: Optional[nn.Module] = None) -> None:
        """Load ``load_base`` (config key) into ``model`` (default: the runner's), in order."""
        if paths is None:
            paths = self.cfg.get('load_base')
        if not paths:
            return
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        model = self._unwrapped() if model is None else model
        missing = load_partial_files(model, paths, progress=True, log=self.logger.info)
        summary = summarize_missing(model, missing)
        if summary:
            self.logger.warning(f'load_base: {summary}')

    def _safe_load_from(self, filename: str) -> dict:
        try:
            state = load_weights(filename, progress=True)
        except UnsafeCheckpointError as e:
            twin = osp.splitext(filename)[0] + '.safetensors'
            hint = (f' Its trainable weights are in {twin}: give that file.'
                    if osp.isfile(twin) else '')
            raise UnsafeCheckpointError(
                f'load_from={filename} is read as plain weights (only resuming this run\'s own '
                f'checkpoints unpickles).{hint} To continue that run instead, resume it with '
                f'its own --work-dir.\n{e}') from e
        model = self._unwrapped()
        missing = load_partial_weights(model, state, source=filename)
        summary = summarize_missing(model, missing)
        self.logger.info(f'Load weights from {filename}' + (f' ({summary})' if summary else ''))
        return dict(state_dict=state, meta={})


class LlavaRunner(_LlavaRunnerMixin, Runner):
    """mmengine ``Runner`` with ``load_base``, safe ``load_from`` and work_dir-only resume.

    Also trains with DDP on CPUs (gloo): mmengine passes ``device_ids=[LOCAL_RANK]`` to DDP,
    which only accelerator modules accept.
    """

    def wrap_model(self, model_wrapper_cfg, model):
        """mmengine's wrapping; on a CPU-only distributed run, DDP without device ids."""
        if not self.distributed or torch.cuda.is_available() or model_wrapper_cfg is not None:
            return super().wrap_model(model_wrapper_cfg, model)
        from mmengine.model import MMDistributedDataParallel, convert_sync_batchnorm
        if self.cfg.get('sync_bn') is not None:
            model = convert_sync_batchnorm(model, self.cfg.sync_bn)
        find_unused = self.cfg.get('find_unused_parameters', False)
        return MMDistributedDataParallel(module=model, device_ids=None,
                                         broadcast_buffers=False,
                                         find_unused_parameters=find_unused)

    def load_or_resume(self) -> None:
        """Load the base weights, then mmengine's load_from / resume; then QLoRA's 4-bit
        quantization of the loaded LLM, if the config asks for it."""
        if self._has_loaded:
            return
        self.load_base_weights()
        self._find_auto_resume()
        super().load_or_resume()
        from mmllava.models.qlora import apply_pending_quantization
        apply_pending_quantization(self._unwrapped(), log=self.logger.info)

    def resume(self, filename: str, resume_optimizer: bool = True,
               resume_param_scheduler: bool = True,
               map_location: Union[str, Callable] = 'default') -> None:
        """Resume the run's state from a checkpoint inside its work_dir."""
        self._resume_file = check_resume_path(filename, self.work_dir)
        try:
            super().resume(filename, resume_optimizer, resume_param_scheduler, map_location)
        finally:
            self._resume_file = None

    def load_checkpoint(self, filename: str, map_location: Union[str, Callable] = 'cpu',
                        strict: bool = False, revise_keys: list = [(r'^module.', '')]):
        """Resume: trusted load of our own checkpoint; otherwise plain weights only."""
        if getattr(self, '_resume_file', None) != filename:
            self._has_loaded = True
            return self._safe_load_from(filename)
        from mmengine.runner.checkpoint import _load_checkpoint
        with trusted_torch_load(filename):
            checkpoint = _load_checkpoint(filename, map_location=map_location)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        state = {k[len('module.'):] if k.startswith('module.') else k: v
                 for k, v in checkpoint['state_dict'].items()}
        load_partial_weights(self._unwrapped(), state, source=filename,
                             require_trainable=True)
        self._has_loaded = True
        self.logger.info(f'Resume from {filename}')
        return checkpoint


class LlavaFlexibleRunner(_LlavaRunnerMixin, FlexibleRunner):
    """mmengine ``FlexibleRunner`` (FSDP, DeepSpeed strategies) with ``load_base`` and
    work_dir-only resume.

    ``load_base`` is loaded into the whole model after the strategy has built and initialized
    it, before it wraps (shards) it: every strategy's ``prepare`` runs ``build_model``,
    ``_init_model_weights``, then ``_wrap_model`` (FSDP, ZeRO partitioning in
    ``deepspeed.initialize``), and the second is extended here. The rules are LlavaRunner's:
    unknown keys and wrong shapes are errors, what no file gave is reported.
    """

    def build_strategy(self, strategy=None, *args, **kwargs):
        """mmengine's strategy, loading ``load_base`` between initialization and wrapping."""
        strategy = super().build_strategy(strategy, *args, **kwargs)
        init_weights = strategy._init_model_weights

        def init_then_load_base(model: nn.Module) -> nn.Module:
            model = init_weights(model)
            self.load_base_weights(model=model)  # full weights: the wrapper shards them next
            return model

        strategy._init_model_weights = init_then_load_base
        return strategy

    def load_or_resume(self) -> None:
        """mmengine's load_or_resume, auto resume robust to an empty ``last_checkpoint``."""
        if not self._has_loaded:
            self._find_auto_resume()
        super().load_or_resume()

    def resume(self, filename: str, resume_optimizer: bool = True,
               resume_param_scheduler: bool = True,
               map_location: Union[str, Callable] = 'default') -> None:
        """Resume from a checkpoint inside the work_dir (the only unpickling allowed)."""
        check_resume_path(filename, self.work_dir)
        with trusted_torch_load(filename):
            super().resume(filename, resume_optimizer, resume_param_scheduler, map_location)


_RUNNERS_BUILT = [0]


def _unique_experiment_name(cfg) -> None:
    """A second runner built in one process within the same second would get the first's
    experiment name (config name + timestamp to the second), and with it mmengine's logger
    and visualizer instances: its log would go to the first run's work_dir. Later runners
    get a numbered name."""
    _RUNNERS_BUILT[0] += 1
    if _RUNNERS_BUILT[0] > 1 and cfg.get('experiment_name') is None:
        stem = osp.splitext(osp.basename(cfg.filename))[0] if cfg.filename else 'run'
        cfg.experiment_name = f'{stem}-{_RUNNERS_BUILT[0]}'


def build_runner(cfg) -> Runner:
    """``LlavaFlexibleRunner`` when the config names a ``strategy``, else ``LlavaRunner``.

    A strategy's config is completed first (:func:`~mmllava.engine.strategies.
    prepare_strategy_cfg`).

    The LLM is given the vocabulary rows of the ``load_base`` weights first (a llava-hf or an
    original conversion: :func:`~mmllava.engine.checkpoint.align_vocab_rows`).
    """
    if cfg.get('model') is not None and cfg.get('load_base'):
        align_vocab_rows(cfg.model, cfg.load_base)
    from mmllava.models.qlora import check_qlora_runner_cfg
    check_qlora_runner_cfg(cfg)  # before anything is built: bitsandbytes, no strategy
    _unique_experiment_name(cfg)
    if cfg.get('strategy') is not None:
        prepare_strategy_cfg(cfg)  # DeepSpeed's dict from the optim wrapper; FSDP on CPUs
        return LlavaFlexibleRunner.from_cfg(cfg)
    return LlavaRunner.from_cfg(cfg)


__all__ = [
    'LlavaFlexibleRunner', 'LlavaRunner', 'ResumeOutsideWorkDirError', 'build_runner',
    'check_resume_path', 'find_resume_checkpoint'
]
