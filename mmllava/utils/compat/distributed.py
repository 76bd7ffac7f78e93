"""Distributed runs on CPUs: gloo, since NCCL needs GPUs and mmengine assumes them."""
import torch


def use_gloo_without_cuda(cfg, launcher: str = 'none') -> None:
    """Point a CPU run's distributed backend at gloo, and start it for ``--launcher pytorch``.

    Why: mmengine's default ``dist_cfg`` is NCCL, and its ``init_dist`` calls
    ``torch.cuda.set_device``; on a machine without CUDA the run would fail before its first
    step. With ``launcher='pytorch'`` (torchrun) the process group is started here with gloo,
    and mmengine then finds it ready. A no-op where CUDA is available.

    Args:
        cfg (Config): The run's config (its ``env_cfg.dist_cfg.backend`` is set).
        launcher (str): The run's launcher.
    """
    if torch.cuda.is_available():
        return
    # Step by step: a Config stores a copy of what setdefault is given, not the dict itself.
    cfg.setdefault('env_cfg', {})
    cfg['env_cfg'].setdefault('dist_cfg', {})
    cfg['env_cfg']['dist_cfg']['backend'] = 'gloo'
    if launcher == 'pytorch':
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group(backend='gloo')


def fsdp_on_cpu_without_cuda(strategy: dict) -> None:
    """Tell an ``FSDPStrategy``'s wrapper the CPU device where CUDA is absent.

    Why: mmengine's ``FSDPStrategy`` builds the wrapper with ``device_id=int(LOCAL_RANK)``,
    which torch's FSDP reads as a CUDA index ("Found no NVIDIA driver"), and without a
    ``device_id`` FSDP refuses to run ("FSDP needs a non-CPU accelerator device"); given
    ``'cpu'`` it shards and trains on CPUs over gloo (torch 2.14). A string, so that the
    config stays plain text. A no-op where CUDA is available or the config names a device.

    Args:
        strategy (dict): The config's ``strategy`` (its ``model_wrapper`` is completed).
    """
    if torch.cuda.is_available():
        return
    strategy.setdefault('model_wrapper', {})
    if strategy['model_wrapper'] is None:
        strategy['model_wrapper'] = {}
    strategy['model_wrapper'].setdefault('device_id', 'cpu')
