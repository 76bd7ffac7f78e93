"""The decode step's matrix products, with the single-token product split across threads.

PyTorch's single-row ``F.linear`` runs on one thread (MKL does not split a matrix-vector
product), so a decode step, which is almost only such products, reads the weights at one
core's memory bandwidth. Here each thread of a small pool computes a slice of the output
rows (measured on this 2-core CPU: 1.8-2.4x for fp32 matrices of 4-46 MB, 1.4-1.5x for bf16).
Our own pool, not a library's: torch has none for this (``torch.jit.fork`` runs inline in
eager mode), and the slices are plain ``torch.matmul`` calls, which release the GIL.
"""
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional

import torch
import torch.nn.functional as F

# Matrices smaller than this (1 MB in fp32) are multiplied whole: a hand-over costs ~10 us.
SPLIT_MIN_ELEMENTS = 1 << 18
# Products of at most this many rows (the decode batch) are split.
SPLIT_MAX_ROWS = 16
_STEP_THREADS: List[Optional[int]] = [None]


@contextmanager
def decode_threads() -> Iterator[None]:
    """Around the single-token steps: torch's own ops on one thread, the products split by
    :func:`split_linear` over all of them. With torch's threads left on, its OpenMP workers
    spin after each small op on the core the pool needs (measured at the small shape: 24
    tokens/s that way, 34 this way)."""
    threads = torch.get_num_threads()
    if threads <= 1 or _STEP_THREADS[0] is not None:
        yield
        return
    _STEP_THREADS[0] = threads
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        _STEP_THREADS[0] = None


class _Pool:
    """Worker threads that each run one slice of a product; the caller runs the first."""

    def __init__(self, workers: int):
        self.workers = workers
        self.lock = threading.Lock()
        self._inference = False
        self._jobs: List[Optional[Callable[[], None]]] = [None] * workers
        self._errors: List[Optional[BaseException]] = [None] * workers
        self._go = [threading.Event() for _ in range(workers)]
        self._done = [threading.Event() for _ in range(workers)]
        for i in range(workers):
            threading.Thread(target=self._work, args=(i, ), name=f'mmllava-gemv-{i}',
                             daemon=True).start()

    @torch.no_grad()  # grad and inference modes are per thread: the caller's do not reach here
    def _work(self, i: int) -> None:
        while True:
            self._go[i].wait()
            self._go[i].clear()
            try:
                with torch.inference_mode(self._inference):  # the caller's mode
                    self._jobs[i]()
            except BaseException as e:  # raised in the caller
                self._errors[i] = e
            self._done[i].set()

    def run(self, first: Callable[[], None], rest: List[Callable[[], None]]) -> None:
        self._inference = torch.is_inference_mode_enabled()
        for i, job in enumerate(rest):
            self._jobs[i], self._errors[i] = job, None
            self._go[i].set()
        try:
            first()
        finally:
            for i in range(len(rest)):
                self._done[i].wait()
                self._done[i].clear()
        for i in range(len(rest)):
            if self._errors[i] is not None:
                raise self._errors[i]


_POOL: List[Optional[_Pool]] = [None]


def _pool(threads: int) -> Optional[_Pool]:
    pool = _POOL[0]
    if pool is None or pool.workers != threads - 1:
        pool = _POOL[0] = _Pool(threads - 1) if threads > 1 else None
    return pool


def split_linear(x: torch.Tensor, weight: torch.Tensor,
                 threads: Optional[int] = None) -> Optional[torch.Tensor]:
    """``F.linear(x, weight)`` for a few rows (the decode batch) with the output columns
    split across ``threads`` (default: the count :func:`decode_threads` saved, else torch's
    intra-op count); None where splitting does not pay (many rows, a small matrix, one
    thread, not a CPU, the pool busy in another thread)."""
    rows_in = x.numel() // x.shape[-1]
    if (rows_in > SPLIT_MAX_ROWS or weight.numel() < SPLIT_MIN_ELEMENTS
            or weight.device.type != 'cpu' or not weight.is_contiguous()):
        return None
    threads = threads or _STEP_THREADS[0] or torch.get_num_threads()
    pool = _pool(threads)
    if pool is None or not pool.lock.acquire(blocking=False):
        return None
    try:
        cols = weight.shape[0]
        flat_x = x.reshape(rows_in, -1)
        bounds = [cols * i // threads for i in range(threads + 1)]
        if rows_in == 1:  # each slice writes its part of the one output row
            out = x.new_empty(x.shape[:-1] + (cols, ))
            flat_out = out.view(1, cols)

            def job(i: int) -> Callable[[], None]:
                a, b = bounds[i], bounds[i + 1]
                return lambda: torch.matmul(flat_x, weight[a:b].t(), out=flat_out[:, a:b])
        else:
            parts: List[Optional[torch.Tensor]] = [None] * threads

            def job(i: int) -> Callable[[], None]:
                def run() -> None:
                    parts[i] = F.linear(flat_x, weight[bounds[i]:bounds[i + 1]])
                return run

        jobs = [job(i) for i in range(threads)]
        pool.run(jobs[0], jobs[1:])
        if rows_in == 1:
            return out
        return torch.cat(parts, dim=-1).view(x.shape[:-1] + (cols, ))
    finally:
        pool.lock.release()


def linear(x: torch.Tensor, weight: torch.Tensor,
           bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``x @ weight.T + bias`` in ``x``'s dtype; a ``weight`` of another dtype (the bf16
    decode copies) multiplies ``x`` cast to it. One row: :func:`split_linear`."""
    if weight.dtype != x.dtype:
        x_cast = x.to(weight.dtype)
        out = split_linear(x_cast, weight)
        out = (F.linear(x_cast, weight) if out is None else out).to(x.dtype)
        return out if bias is None else out + bias
    out = split_linear(x, weight)
    if out is None:
        return F.linear(x, weight, bias)
    return out if bias is None else out + bias
