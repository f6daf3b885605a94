"""One owner of the thread budget: Numba's kernel threads and BLAS threads.

Measured on 2 cores: a training step with OpenMP threads spinning against
OpenBLAS's ran 62 ms instead of 9 ms. graphnet therefore (1) makes OpenMP
threads wait passively (set before Numba starts its threading layer), (2) runs
kernels and BLAS calls one after the other, never at once, and (3) runs a
kernel in parallel only when it is large enough to amortize waking threads.
``set_num_threads(n)`` sets both pools.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("KMP_BLOCKTIME", "0")

import numba  # noqa: E402

#: kernels with fewer elements run serially: waking threads costs more, and a
#: parallel variant costs a second compile (~1 s cold) the first time it runs
PARALLEL_MIN_ELEMENTS = int(os.environ.get("GRAPHNET_PARALLEL_MIN_ELEMENTS", 1 << 18))

_threads = None


def num_threads():
    global _threads
    if _threads is None:
        _threads = numba.config.NUMBA_NUM_THREADS
    return _threads


def set_num_threads(n):
    """Use ``n`` threads for graphnet kernels and (when threadpoolctl is installed) BLAS."""
    global _threads
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    _threads = n
    numba.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(n, user_api="blas")


def use_parallel(elements, rows):
    return num_threads() > 1 and elements >= PARALLEL_MIN_ELEMENTS and rows >= num_threads()


def chunks(rows):
    """Row blocks for a parallel kernel: one per thread."""
    return max(1, min(rows, num_threads()))
