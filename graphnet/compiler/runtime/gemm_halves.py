"""A matrix product on two cores while graphnet owns them (``threads.own_cores``): two
one-thread BLAS products over the halves of the output's rows, as the two iterations of a
Numba ``prange`` (the kernels' own threads).

Before, the second half went to a helper thread through ``concurrent.futures``: a lock, a
condition and the GIL passed back and forth, 40-45 us a product even when it does nothing,
paid by each of W7's six products a step. A ``prange`` region hands over in one wake of a
waiting thread. :func:`gemm_halves` is compiled for each operand type (a C-ordered array,
a ``.T`` view) once, in the background (``tiered.CompiledVariants``); until then
:func:`run` says no and the caller takes the helper thread, as before.
"""
from __future__ import annotations

import numba
import numpy as np

from graphnet.compiler.runtime.blas_symbols import NUMPY_BLAS, gemm_into
from graphnet.compiler.runtime.tiered import CompiledVariants


@numba.njit(cache=True, nogil=True, parallel=True)
def gemm_halves(a, b, out):
    """``out[...] = a @ b``, the rows ``[0, m/2)`` and ``[m/2, m)`` at once, each on one thread
    of NumPy's OpenBLAS (set to one thread by the caller)."""
    cut = out.shape[0] // 2
    for half in numba.prange(2):
        if half == 0:
            gemm_into(a[:cut], b, out[:cut], NUMPY_BLAS)
        else:
            gemm_into(a[cut:], b, out[cut:], NUMPY_BLAS)


#: operand layouts -> whether gemm_halves is compiled for them (``CompiledVariants``)
_variants = {}


def _key(x):
    flags = x.flags
    return x.dtype.char, x.ndim, flags.c_contiguous, flags.f_contiguous, flags.writeable


def run(a, b, out, started=None):
    """Whether :func:`gemm_halves` wrote ``out = a @ b`` (2-d float32 or float64 arrays). False
    while it is not compiled for these operand types: the first such call starts its compile
    and passes it to ``started`` (a kernel's ``background`` list's ``append``: what
    ``fn.wait_compiled`` waits for)."""
    if not all(isinstance(x, np.ndarray) and x.ndim == 2 and x.dtype == out.dtype for x in (a, b, out)) \
            or out.dtype.char not in "fd" or out.shape[0] < 2:
        return False
    key = (_key(a), _key(b), _key(out))
    compiled = _variants.get(key)
    if compiled is None:
        compiled = _variants[key] = CompiledVariants([(gemm_halves, ())], started)
    if not compiled(a, b, out):
        return False
    gemm_halves(a, b, out)
    return True
