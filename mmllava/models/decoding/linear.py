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
_STEP = threading.local()  # .threads: the pool's width while this thread is in decode_threads


@contextmanager
def decode_threads() -> Iterator[None]:
    """Around the single-token steps, in the decoding thread: its torch ops on one OpenMP
    thread, the products split by :func:`split_linear` over torch's count. With torch's
    threads left on, its OpenMP workers spin after each small op on the core the pool needs
    (measured at the small shape: 24 tokens/s that way, 34 this way). Only this thread's
    count changes (:func:`mmllava.utils.compat.this_thread_omp_threads`): other threads, and
    threads started meanwhile, keep theirs."""
    from mmllava.utils.compat import this_thread_omp_threads
    threads = torch.get_num_threads()
    if threads <= 1 or getattr(_STEP, 'threads', None) is not None:
        yield
        return
    with this_thread_omp_threads(1) as limited:
        _STEP.threads = threads if limited else None
        try:
            yield
        finally:
            _STEP.threads = None


def _step_threads() -> int:
    return getattr(_STEP, 'threads', None) or torch.get_num_threads()


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
        from mmllava.utils.compat import this_thread_omp_threads
        with this_thread_omp_threads(1):  # a slice is one thread's work
            self._serve(i)

    def _serve(self, i: int) -> None:
        while True:
            self._go[i].wait()
            self._go[i].clear()
            try:
                if self._inference:  # the caller's mode (inference_mode(False) would
                    with torch.inference_mode():  # turn grad mode back on)
                        self._jobs[i]()
                else:
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


_POOLS: dict = {}  # width -> pool; one per width ever asked for (in practice one)
_POOLS_LOCK = threading.Lock()


def _pool(threads: int) -> Optional[_Pool]:
    if threads <= 1:
        return None
    with _POOLS_LOCK:
        pool = _POOLS.get(threads)
        if pool is None:
            pool = _POOLS[threads] = _Pool(threads - 1)
        return pool


@torch.no_grad()  # decode products; matmul(out=) refuses inputs that require grad
def split_linear(x: torch.Tensor, weight: torch.Tensor,
                 threads: Optional[int] = None) -> Optional[torch.Tensor]:
    """``F.linear(x, weight)`` for a few rows (the decode batch) with the output columns
    split across ``threads`` (default: torch's intra-op count, as :func:`decode_threads`
    saw it); None where splitting does not pay (many rows, a small matrix, one thread, not a
    CPU, the pool busy in another thread)."""
    rows_in = x.numel() // x.shape[-1]
    if (rows_in > SPLIT_MAX_ROWS or weight.numel() < SPLIT_MIN_ELEMENTS
            or weight.device.type != 'cpu' or not weight.is_contiguous()):
        return None
    threads = threads or _step_threads()
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


class Int8Matrix:
    """A matrix as int8 rows and their scales (per output channel, absmax / 127): the int8
    decode copies. Products quantize ``x`` per row on the fly and run ``torch._int_mm``
    (int32 accumulation), as :class:`mmllava.models.quantize.Int8DynamicLinear` does; fast
    where the CPU has VNNI (AVX-512 VNNI, AVX-VNNI or AMX), slower than fp32 without.

    Args:
        weight (Tensor): The float matrix (out, in).
    """

    def __init__(self, weight: torch.Tensor):
        from ..quantize import quantize_rows
        self.int8, self.scale = quantize_rows(weight)
        self.dtype = torch.int8
        self.shape = self.int8.shape


@torch.no_grad()
def _int8_linear(x: torch.Tensor, m: Int8Matrix) -> torch.Tensor:
    from ..quantize import quantize_activations
    x_int8, x_scale = quantize_activations(x)
    cols = m.int8.shape[0]
    threads = _step_threads()
    pool = _pool(threads) if m.int8.numel() >= SPLIT_MIN_ELEMENTS else None
    if pool is not None and pool.lock.acquire(blocking=False):
        try:
            bounds = [cols * i // threads for i in range(threads + 1)]
            parts: List[Optional[torch.Tensor]] = [None] * threads

            def job(i: int) -> Callable[[], None]:
                def run() -> None:
                    parts[i] = torch._int_mm(x_int8, m.int8[bounds[i]:bounds[i + 1]].t())
                return run

            jobs = [job(i) for i in range(threads)]
            pool.run(jobs[0], jobs[1:])
            acc = torch.cat(parts, dim=-1)
        finally:
            pool.lock.release()
    else:
        acc = torch._int_mm(x_int8, m.int8.t())
    out = acc.float() * x_scale * m.scale
    return out.to(x.dtype).view(x.shape[:-1] + (cols, ))


def linear(x: torch.Tensor, weight: torch.Tensor,
           bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``x @ weight.T + bias`` in ``x``'s dtype; a ``weight`` of another dtype (the bf16
    decode copies) multiplies ``x`` cast to it, an :class:`Int8Matrix` quantizes ``x`` per
    row. One row: :func:`split_linear`."""
    if isinstance(weight, Int8Matrix):
        out = _int8_linear(x, weight)
        return out if bias is None else out + bias
    if weight.dtype != x.dtype:
        x_cast = x.to(weight.dtype)
        out = split_linear(x_cast, weight)
        out = (F.linear(x_cast, weight) if out is None else out).to(x.dtype)
        return out if bias is None else out + bias
    out = split_linear(x, weight)
    if out is None:
        return F.linear(x, weight, bias)
    return out if bias is None else out + bias
