"""One thread's OpenMP thread count, leaving every other thread's alone.

``torch.set_num_threads`` is process-wide: it also sets the count every thread created later
starts with (ATen copies it on a thread's first op) and MKL's global one. The decode loop
wants torch on one thread only in the thread that decodes (its OpenMP workers would spin on
the core the product pool needs), so this calls OpenMP's ``omp_set_num_threads``, whose
setting is the calling thread's own (OpenMP's nthreads-var ICV), on the OpenMP library torch
loaded, and MKL's ``mkl_set_num_threads_local`` (MKL's per-thread count). Without an OpenMP
library (another build), :func:`this_thread_omp_threads` does nothing.
"""
import ctypes
import glob
import os
from contextlib import contextmanager
from typing import Iterator, Optional

_LIB = []


def _mkl_local():
    """MKL's ``mkl_set_num_threads_local`` from torch's library (MKL is linked into it), or
    None: torch's ``set_num_threads`` also sets MKL's process-wide count, which outranks the
    OpenMP one."""
    import torch
    folder = os.path.join(os.path.dirname(torch.__file__), 'lib')
    for path in sorted(glob.glob(os.path.join(folder, 'libtorch_cpu*'))):
        try:
            return ctypes.CDLL(path).mkl_set_num_threads_local
        except (OSError, AttributeError):
            continue
    return None


def _openmp() -> Optional[ctypes.CDLL]:
    if not _LIB:
        import torch
        folder = os.path.join(os.path.dirname(torch.__file__), 'lib')
        found = None
        for pattern in ('libgomp*.so*', 'libiomp5*', 'libomp*'):
            for path in sorted(glob.glob(os.path.join(folder, pattern))):
                try:
                    lib = ctypes.CDLL(path)
                    lib.omp_get_max_threads, lib.omp_set_num_threads  # noqa: B018
                except (OSError, AttributeError):
                    continue
                found = lib
                break
            if found is not None:
                break
        _LIB.append(found)
        _LIB.append(_mkl_local() if found is not None else None)
    return _LIB[0]


def omp_available() -> bool:
    """Whether torch's OpenMP library was found (else the context below does nothing)."""
    return _openmp() is not None


@contextmanager
def this_thread_omp_threads(threads: int) -> Iterator[bool]:
    """Run the calling thread's torch ops on ``threads`` OpenMP threads; restore after.

    Yields:
        bool: Whether the count was set (False without an OpenMP library).
    """
    lib = _openmp()
    if lib is None:
        yield False
        return
    mkl_local = _LIB[1]
    before = lib.omp_get_max_threads()
    lib.omp_set_num_threads(int(threads))
    # The exported symbol is MKL's Fortran-convention entry (its C and Fortran names share
    # one address): the count goes by pointer; it returns the previous local count.
    mkl_before = (mkl_local(ctypes.byref(ctypes.c_int(int(threads))))
                  if mkl_local is not None else None)
    try:
        yield True
    finally:
        if mkl_local is not None:  # 0: back to MKL's process-wide count
            mkl_local(ctypes.byref(ctypes.c_int(mkl_before)))
        lib.omp_set_num_threads(before)
