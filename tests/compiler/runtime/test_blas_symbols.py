"""The GEMM compiled code calls (``runtime/blas_symbols.py``): NumPy's OpenBLAS or Numba's np.dot
(SciPy's BLAS), chosen per product by measurement, each agreeing with NumPy."""
import ctypes
import itertools

import numba
import numpy as np
import pytest

from graphnet.compiler.runtime import blas_symbols, threads
from graphnet.compiler.runtime.blas_symbols import NUMPY_BLAS, SCIPY_BLAS, gemm_into

RNG = np.random.default_rng(23)
LIBRARIES = (NUMPY_BLAS, SCIPY_BLAS)
needs_numpy_openblas = pytest.mark.skipif(blas_symbols.FOUND is None,
                                          reason="NumPy's BLAS has no ILP64 OpenBLAS symbols here")


@numba.njit
def took_numpy_blas(a, b, out):
    """Whether NumPy's BLAS itself wrote ``out = a @ b`` (False: gemm_into falls back to np.dot)."""
    return blas_symbols._numpy_gemm(a, b, out)


def operand(rows, cols, dtype, transposed):
    """A (rows x cols) operand, stored as it is or as the ``.T`` view of a C-ordered (cols x rows) array."""
    if transposed:
        return RNG.standard_normal((cols, rows)).astype(dtype).T
    return RNG.standard_normal((rows, cols)).astype(dtype)


def oracle(a, b):
    return a.astype(np.float64) @ b.astype(np.float64)


def tolerance(dtype, k):
    return dict(rtol=1e-4, atol=1e-5 * k) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12 * k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a, trans_b", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("library", LIBRARIES)
def test_every_transpose_and_dtype_agrees_with_numpy(dtype, trans_a, trans_b, library):
    m, k, n = 7, 13, 5   # not square: a swapped length or leading dimension shows
    a, b = operand(m, k, dtype, trans_a), operand(k, n, dtype, trans_b)
    out = np.full((m, n), np.nan, dtype)
    gemm_into(a, b, out, library)
    np.testing.assert_allclose(out, oracle(a, b), **tolerance(dtype, k))


@needs_numpy_openblas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_blas_itself_takes_c_ordered_and_transposed_operands(dtype):
    for trans_a, trans_b in itertools.product([False, True], repeat=2):
        a, b = operand(6, 4, dtype, trans_a), operand(4, 3, dtype, trans_b)
        assert took_numpy_blas(a, b, np.empty((6, 3), dtype)), (trans_a, trans_b)


def _strided_cases(dtype):
    """(name, a, b, out) whose rows are strided: BLAS reads them through its leading dimensions."""
    big = RNG.standard_normal((9, 20)).astype(dtype)
    wide_out = np.full((9, 30), np.nan, dtype)
    gates = RNG.standard_normal((5, 16)).astype(dtype)   # an LSTM's z, its gate z[:, 4:8]
    return [("column slice of a", big[:, 3:11], operand(8, 6, dtype, False), np.full((9, 6), np.nan, dtype)),
            ("row slice of b", operand(4, 7, dtype, False), big[2:9, :5], np.full((4, 5), np.nan, dtype)),
            ("transposed column slice", gates[:, 4:8].T, operand(5, 3, dtype, False), np.full((4, 3), np.nan, dtype)),
            ("out a column slice", big[:, :8], operand(8, 6, dtype, True), wide_out[:, 10:16]),
            ("one row", big[3:4, :8], operand(8, 6, dtype, False), np.full((1, 6), np.nan, dtype)),
            ("one column", big[:, 5:6], operand(1, 6, dtype, False), np.full((9, 6), np.nan, dtype))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("library", LIBRARIES)
def test_views_with_strided_rows_agree_with_numpy(dtype, library):
    for name, a, b, out in _strided_cases(dtype):
        gemm_into(a, b, out, library)
        np.testing.assert_allclose(out, oracle(a, b), err_msg=name, **tolerance(dtype, a.shape[1]))
        if library == NUMPY_BLAS and blas_symbols.FOUND is not None:
            assert took_numpy_blas(a, b, out), f"{name}: NumPy's BLAS reads it without a copy"


def _refused_cases(dtype):
    """(name, a, b, out) that BLAS cannot read as they are: gemm_into gives them to np.dot."""
    a, b = RNG.standard_normal((6, 10)).astype(dtype), RNG.standard_normal((5, 4)).astype(dtype)
    return [("every other column", a[:, ::2], b, np.empty((6, 4), dtype)),
            ("rows reversed", a[::-1, :5], b, np.empty((6, 4), dtype)),
            ("out column-major", a[:, :5], b, np.empty((4, 6), dtype).T),
            ("out every other column", a[:, :5], b, np.empty((6, 8), dtype)[:, ::2])]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layouts_blas_cannot_read_fall_back_to_numbas_dot_and_still_agree(dtype):
    for name, a, b, out in _refused_cases(dtype):
        assert not took_numpy_blas(a, b, out), name
        gemm_into(a, b, out, NUMPY_BLAS)
        np.testing.assert_allclose(out, oracle(a, b), err_msg=name, **tolerance(dtype, a.shape[1]))


@pytest.mark.parametrize("library", LIBRARIES)
def test_an_empty_inner_dimension_gives_zeros_and_empty_outputs_are_left_alone(library):
    out = np.full((3, 4), np.nan, np.float32)
    gemm_into(np.empty((3, 0), np.float32), np.empty((0, 4), np.float32), out, library)
    np.testing.assert_array_equal(out, np.zeros((3, 4), np.float32))
    gemm_into(np.empty((0, 5), np.float32), np.ones((5, 4), np.float32), np.empty((0, 4), np.float32), library)


def test_shapes_that_do_not_agree_are_refused():
    with pytest.raises(ValueError, match="shapes do not agree"):
        gemm_into(np.ones((3, 4)), np.ones((5, 2)), np.empty((3, 2)), NUMPY_BLAS)
    with pytest.raises(ValueError, match="shapes do not agree"):
        gemm_into(np.ones((3, 4)), np.ones((4, 2)), np.empty((2, 3)), NUMPY_BLAS)


def test_small_products_take_numpys_blas_unmeasured(monkeypatch):
    monkeypatch.setattr(blas_symbols, "_measure", lambda *args: pytest.fail("measured a tiny product"))
    assert blas_symbols.faster_library(4, 3, 10, np.float32) == NUMPY_BLAS


def test_a_products_library_is_measured_once_per_shape(monkeypatch):
    measured = []

    def measure(libraries, *key):
        measured.append(key)
        return SCIPY_BLAS

    monkeypatch.setattr(blas_symbols, "_chosen", {})
    monkeypatch.setattr(blas_symbols, "_measure", measure)
    monkeypatch.setattr(blas_symbols, "_timed_libraries", lambda: {NUMPY_BLAS: None, SCIPY_BLAS: None})
    shape = (64, 64, 64, np.float32, True, False)
    assert blas_symbols.faster_library(*shape) == SCIPY_BLAS
    assert blas_symbols.faster_library(*shape) == SCIPY_BLAS
    assert blas_symbols.faster_library(64, 64, 64, np.float32) == SCIPY_BLAS   # another layout: measured
    assert len(measured) == 2


@needs_numpy_openblas
def test_measuring_gives_one_of_the_two_libraries_and_leaves_scipys_blas_on_one_thread(monkeypatch):
    monkeypatch.setattr(blas_symbols, "_chosen", {})
    assert blas_symbols.faster_library(32, 256, 64, np.float32, False, True) in LIBRARIES
    assert blas_symbols.faster_library(32, 256, 64, np.float64) in LIBRARIES
    if blas_symbols._timed_libraries():   # SciPy's OpenBLAS found: it runs one thread (threads.py)
        assert scipy_openblas_threads() == 1


def scipy_openblas_threads():
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "openblas" in line and line.split()[-1].startswith("/")}
    for path in sorted(paths):
        library = ctypes.CDLL(path)
        if hasattr(library, "scipy_openblas_get_num_threads"):
            return library.scipy_openblas_get_num_threads()
    pytest.skip("SciPy's BLAS is not an OpenBLAS found here")


def test_compiled_code_runs_both_openblas_builds_on_one_thread():
    threads._numpy_blas().use(2)
    blas = threads.compiled_code_blas()
    assert blas.current == 1
    assert scipy_openblas_threads() == 1


def test_setting_graphnets_thread_count_leaves_scipys_blas_on_one_thread():
    threads.compiled_code_blas()
    threads.set_num_threads(threads.num_threads())   # threadpoolctl sets every BLAS it finds
    assert scipy_openblas_threads() == 1


def test_a_frame_that_runs_from_python_measures_no_library(monkeypatch):
    import graphnet as gn
    monkeypatch.setattr(blas_symbols, "_measure", lambda *args: pytest.fail("measured for the Python entry"))
    x = gn.placeholder("x_lib", (None, 64))
    W = gn.shared(RNG.standard_normal((64, 96)).astype("float32"), name="W_lib")
    fn = gn.function([x], gn.tanh(gn.dot(x, W)))
    xb = RNG.standard_normal((48, 64)).astype("float32")   # 48x64 @ 64x96: 2^18 multiply-adds
    for _ in range(3):   # the step-by-step call, then the frame's Python entry
        np.testing.assert_allclose(fn(xb), np.tanh(xb @ W.get_value()), rtol=1e-5, atol=1e-6)
