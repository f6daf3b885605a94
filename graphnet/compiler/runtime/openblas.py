"""The OpenBLAS builds this process has loaded, found in the files Linux lists as mapped.

NumPy's wheel brings one (``numpy.libs/libscipy_openblas64_*.so``) and SciPy's another;
graphnet sets their thread counts through their C API (``threads``) and calls NumPy's GEMM
from compiled code (``blas_symbols``), each looking up its symbols in these libraries.
"""
from __future__ import annotations

import ctypes
import re


def loaded_openblas():
    """``[(path, ctypes.CDLL)]`` of every OpenBLAS shared library mapped into this process, in
    path order; ``[]`` where ``/proc/self/maps`` does not exist (not Linux). A library ctypes
    cannot open is left out."""
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted(set(re.findall(r"(/\S*openblas\S*\.so\S*)", maps.read())))
    except OSError:
        return []
    found = []
    for path in paths:
        try:
            found.append((path, ctypes.CDLL(path)))
        except OSError:
            continue
    return found
