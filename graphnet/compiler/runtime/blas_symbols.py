"""NumPy's OpenBLAS GEMM, callable from compiled code, beside Numba's ``np.dot``.

This process holds two OpenBLAS builds: NumPy's (``np.dot`` from Python) and
SciPy's (Numba's ``np.dot`` inside ``njit`` goes through
``scipy.linalg.cython_blas``). Neither is faster everywhere (measured, one
thread: 20x784 @ 784x500 157 us on NumPy's against 240 us on SciPy's;
784x16 @ 16x1024 545 against 410 us), so compiled code (a frame's driver, a
compiled loop) calls :func:`gemm_into`, whose ``library`` argument picks one
per product at run time, and :func:`faster_library` measures, once per
process and product shape, which one that is.

NumPy's ``cblas_sgemm``/``cblas_dgemm`` are found with ctypes and registered
with LLVM *by name* (``llvmlite.binding.add_symbol``), and the compiled code
calls them as ``types.ExternalFunction``: it links by name when loaded, so
Numba's disk cache keeps working (a ctypes function object as a global makes
Numba refuse to cache the function: its address is baked into the code).
Where NumPy's BLAS is not an OpenBLAS with those symbols (ILP64, the
``scipy_``-prefixed names of NumPy's wheels or the plain ``64_`` ones),
:func:`gemm_into` is Numba's ``np.dot`` whatever ``library`` says.
"""
from __future__ import annotations

import ctypes
import time

import numba
import numpy as np
from numba import types
from numba.extending import overload

from graphnet.compiler.runtime.openblas import loaded_openblas

#: ``library`` of :func:`gemm_into`: NumPy's OpenBLAS (np.dot's from Python), or Numba's np.dot on SciPy's BLAS
NUMPY_BLAS, SCIPY_BLAS = 0, 1

#: products with fewer multiply-adds are not measured: NumPy's BLAS, called directly, skips
#: the checks and copies Numba's np.dot makes around its call (a few hundred ns)
MEASURE_MIN_MACS = 1 << 15
#: SciPy's BLAS is chosen only where it takes less than this share of NumPy's time (the two
#: are often within noise)
MARGIN = 0.95

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_SYMBOLS = {"sgemm": ("scipy_cblas_sgemm64_", "cblas_sgemm64_"),
            "dgemm": ("scipy_cblas_dgemm64_", "cblas_dgemm64_")}


def _numpy_openblas():
    """{"sgemm": address, "dgemm": address, "library": path} of NumPy's ILP64 OpenBLAS, or None."""
    for path, library in loaded_openblas():
        found = {}
        for kind, names in _SYMBOLS.items():
            name = next((n for n in names if hasattr(library, n)), None)
            if name is not None:
                found[kind] = ctypes.cast(getattr(library, name), ctypes.c_void_p).value
        if len(found) == len(_SYMBOLS):
            return dict(found, library=path)
    return None


FOUND = _numpy_openblas()
#: what compiled code calls, said in the text of generated modules that call :func:`gemm_into`
#: (their cache entries then differ where the symbols differ)
DESCRIPTION = (f"NumPy's OpenBLAS ({FOUND['library'].rsplit('/', 1)[-1]}) or Numba's np.dot" if FOUND
               else "Numba's np.dot (NumPy's BLAS has no ILP64 OpenBLAS symbols here)")

_i32, _i64, _ptr = types.int32, types.int64, types.voidptr
if FOUND:
    from llvmlite import binding
    binding.add_symbol("graphnet_numpy_sgemm", FOUND["sgemm"])
    binding.add_symbol("graphnet_numpy_dgemm", FOUND["dgemm"])


def _cblas(name, real):
    # cblas_?gemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc): the enums
    # are C ints, the lengths 64-bit (ILP64)
    return types.ExternalFunction(name, types.void(_i32, _i32, _i32, _i64, _i64, _i64, real, _ptr, _i64,
                                                   _ptr, _i64, real, _ptr, _i64))


_sgemm = _cblas("graphnet_numpy_sgemm", types.float32)
_dgemm = _cblas("graphnet_numpy_dgemm", types.float64)


@numba.njit(inline="always")
def _layout(x):
    """(flag, leading dimension) that BLAS reads the 2-d ``x`` with, in row-major terms: rows
    of unit-stride elements (``_NO_TRANS``), or the transpose of such (``_TRANS``, a ``.T`` view);
    (0, 0) when BLAS cannot read it as it is (negative or element-misaligned strides, no unit
    stride). A length-1 axis may have any stride."""
    rows, cols = x.shape
    s0, s1 = x.strides
    item = x.itemsize
    if (cols <= 1 or s1 == item) and (rows <= 1 or (s0 % item == 0 and s0 >= cols * item)):
        return _NO_TRANS, (s0 // item if rows > 1 else max(cols, 1))
    if (rows <= 1 or s0 == item) and (cols <= 1 or (s1 % item == 0 and s1 >= rows * item)):
        return _TRANS, (s1 // item if cols > 1 else max(rows, 1))
    return 0, 0


def _numpy_gemm(a, b, out):
    """Whether NumPy's BLAS wrote ``out = a @ b`` (False: the dtypes or a layout it does not take)."""


@overload(_numpy_gemm)
def _numpy_gemm_typed(a, b, out):
    if not FOUND or not (a.dtype == b.dtype == out.dtype and a.dtype in (types.float32, types.float64)):
        return lambda a, b, out: False
    gemm, one, zero = (_sgemm, np.float32(1), np.float32(0)) if a.dtype == types.float32 else (_dgemm, 1.0, 0.0)

    def impl(a, b, out):
        m, k = a.shape
        n = b.shape[1]
        trans_a, lda = _layout(a)
        trans_b, ldb = _layout(b)
        trans_c, ldc = _layout(out)
        if trans_a == 0 or trans_b == 0 or trans_c != _NO_TRANS or m == 0 or n == 0 or k == 0:
            return False
        gemm(_ROW_MAJOR, trans_a, trans_b, m, n, k, one, a.ctypes.data, lda, b.ctypes.data, ldb,
             zero, out.ctypes.data, ldc)
        return True
    return impl


@numba.njit(cache=True, nogil=True)
def gemm_into(a, b, out, library):
    """``out[...] = a @ b`` for 2-d float arrays, on NumPy's OpenBLAS (``library == NUMPY_BLAS``)
    or Numba's ``np.dot`` (SciPy's BLAS). ``a`` and ``b`` are read as they are: C-ordered, ``.T``
    views, or views whose rows are strided (a row or column slice); ``out`` with rows of unit
    stride. Any other layout (or an empty product) takes Numba's ``np.dot``, which copies what BLAS
    cannot read (and writes a product that is not C-ordered through a temporary). ``out`` must
    not overlap ``a`` or ``b`` (the plans never make it so)."""
    if a.shape[1] != b.shape[0] or out.shape[0] != a.shape[0] or out.shape[1] != b.shape[1]:
        raise ValueError("gemm_into: shapes do not agree")
    if library == NUMPY_BLAS and _numpy_gemm(a, b, out):
        return
    _numba_dot(a, b, out)


def _numba_dot(a, b, out):
    """``out[...] = a @ b`` through Numba's ``np.dot``."""


@overload(_numba_dot)
def _numba_dot_typed(a, b, out):
    if out.layout == "C":
        return lambda a, b, out: np.dot(a, b, out)

    def into_a_view(a, b, out):   # Numba's np.dot writes only C-ordered arrays (an assertion, not an error)
        out[:, :] = np.dot(a, b)
    return into_a_view


class Library:
    """The ``library`` argument of one product's :func:`gemm_into`: ``value`` is measured
    (:func:`faster_library`) the first time compiled code that calls it is written, not when
    the frame's calls are: most frames never get a driver (W1's move megabytes), and measuring
    their products would cost their first call ~20 ms a shape and SciPy's import (~140 ms)."""

    def __init__(self, m, n, k, dtype, trans_a, trans_b):
        self.shape = (m, n, k, dtype, trans_a, trans_b)
        self._value = None

    @property
    def value(self):
        if self._value is None:
            self._value = faster_library(*self.shape)
        return self._value

    def __repr__(self):   # how the frame's Python entry shows it
        m, n, k, dtype, trans_a, trans_b = self.shape
        return f"Library({m}x{k} @ {k}x{n}{', a.T' if trans_a else ''}{', b.T' if trans_b else ''})"


_chosen = {}


def faster_library(m, n, k, dtype, trans_a=False, trans_b=False):
    """The ``library`` that runs an (m x k) @ (k x n) product of ``dtype`` faster on one thread,
    measured once per process and shape on operands of that layout (``trans_a``: ``a`` read as
    the ``.T`` of a C-ordered array): NumPy's unless SciPy's is faster by more than ``1 - MARGIN``.

    The two libraries are timed through ctypes (both ``cblas_?gemm``, alternating, the median of
    ``ROUNDS`` calls each after a warm-up), not through :func:`gemm_into`, which would have to
    compile for the operands' types in line (0.5-0.9 s cold) where the first calls must not wait
    (``tiered.py``); ctypes' ~1 us a call is the same for both and small beside a product
    of ``MEASURE_MIN_MACS`` or more."""
    dtype = np.dtype(dtype)
    key = (m, n, k, dtype.str, bool(trans_a), bool(trans_b))
    chosen = _chosen.get(key)
    if chosen is None:
        libraries = _timed_libraries() if m * n * k >= MEASURE_MIN_MACS else None
        chosen = _chosen[key] = (_measure(libraries, *key) if libraries and dtype.char in "fd"
                                 else NUMPY_BLAS)
    return chosen


ROUNDS = 7
_libraries = None


def _timed_libraries():
    """{library: {"f": cblas_sgemm, "d": cblas_dgemm}} as ctypes functions taking the same
    arguments, or {} when SciPy's BLAS is not an OpenBLAS found here (NumPy's then runs, unmeasured)."""
    global _libraries
    if _libraries is None:
        scipy_cblas = _scipy_cblas() if FOUND is not None else None
        _libraries = {}
        if scipy_cblas is not None:
            numpy_cblas = {"f": ctypes.CFUNCTYPE(None)(FOUND["sgemm"]), "d": ctypes.CFUNCTYPE(None)(FOUND["dgemm"])}
            for library, functions, integer in ((NUMPY_BLAS, numpy_cblas, ctypes.c_int64),   # ILP64
                                                (SCIPY_BLAS, scipy_cblas, ctypes.c_int)):    # LP64
                for char, function in functions.items():
                    real = ctypes.c_float if char == "f" else ctypes.c_double
                    function.argtypes = [ctypes.c_int] * 3 + [integer] * 3 + [real, ctypes.c_void_p, integer,
                                                                            ctypes.c_void_p, integer, real,
                                                                            ctypes.c_void_p, integer]
                    function.restype = None
                _libraries[library] = functions
    return _libraries


def _scipy_cblas():
    """{"f": cblas_sgemm, "d": cblas_dgemm} of the OpenBLAS SciPy loads (LP64, ``scipy_``-prefixed), or None."""
    try:
        import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS Numba's np.dot calls)
    except ImportError:
        return None
    for path, library in loaded_openblas():
        if path != FOUND["library"] and hasattr(library, "scipy_cblas_sgemm") and hasattr(library, "scipy_cblas_dgemm"):
            return {"f": library.scipy_cblas_sgemm, "d": library.scipy_cblas_dgemm}
    return None


def _measure(libraries, m, n, k, dtype, trans_a, trans_b):
    from graphnet.compiler.runtime import threads
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    out = np.empty((m, n), dtype)
    flags = (_TRANS if trans_a else _NO_TRANS, _TRANS if trans_b else _NO_TRANS)
    args = (*flags, m, n, k, 1.0, a.ctypes.data, a.shape[1], b.ctypes.data, b.shape[1], 0.0, out.ctypes.data, n)
    char = np.dtype(dtype).char
    calls = {library: functions[char] for library, functions in libraries.items()}
    threads.compiled_code_blas()
    times = {library: [] for library in calls}
    for round_ in range(ROUNDS + 1):
        for library in sorted(calls, reverse=bool(round_ % 2)):
            start = time.perf_counter()
            calls[library](_ROW_MAJOR, *args)
            if round_:   # the first: a warm-up
                times[library].append(time.perf_counter() - start)
    numpy_s, scipy_s = (sorted(t)[len(t) // 2] for t in (times[NUMPY_BLAS], times[SCIPY_BLAS]))
    return SCIPY_BLAS if scipy_s < MARGIN * numpy_s else NUMPY_BLAS
