"""torch >= 2.6 beside mmengine 0.10: let mmengine unpickle a run's own checkpoint, and only it."""
import os
import os.path as osp
from contextlib import contextmanager

import torch


@contextmanager
def trusted_torch_load(filename: str):
    """Let ``torch.load`` unpickle ``filename`` (and only it) within the context.

    mmengine calls ``torch.load(path, map_location=...)``, which defaults to
    ``weights_only=True`` since torch 2.6 and then rejects its own checkpoints (they hold
    message-hub objects). Calls for any other file are passed through untouched.
    """
    original = torch.load
    target = osp.realpath(filename)

    def load(f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)) and osp.realpath(f) == target:
            kwargs['weights_only'] = False
        return original(f, *args, **kwargs)

    torch.load = load
    try:
        yield
    finally:
        torch.load = original
