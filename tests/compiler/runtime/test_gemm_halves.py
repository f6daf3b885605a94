"""A product as two one-thread halves of its rows in one ``prange`` (``runtime/gemm_halves.py``),
and the way ``threads.in_halves`` takes it: against NumPy, and never before it is compiled."""
import numpy as np
import pytest

from graphnet.compiler.runtime import gemm_halves, threads, tiered

RNG = np.random.default_rng(2026)


def operands(dtype, m, k, n, transposed):
    a = RNG.standard_normal((m, k)).astype(dtype)
    b = RNG.standard_normal((n, k)).astype(dtype).T if transposed else RNG.standard_normal((k, n)).astype(dtype)
    return a, b, np.full((m, n), np.nan, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("m", [2, 7, 64])
@pytest.mark.parametrize("transposed", [False, True])
def test_both_halves_of_the_rows_are_the_product(dtype, m, transposed):
    a, b, out = operands(dtype, m, 33, 17, transposed)
    gemm_halves.gemm_halves(a, b, out)
    tolerance = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(out, a.astype("float64") @ b.astype("float64"), rtol=tolerance, atol=tolerance)


def test_run_says_no_until_its_background_compile_is_ready_and_the_caller_waits_on_it(monkeypatch):
    monkeypatch.setattr(gemm_halves, "_variants", {})
    monkeypatch.setenv(tiered.TIERED_ENV, "1")
    # An F-ordered output is a layout no other test compiles, so this signature is new here.
    a, b, _ = operands("float32", 9, 5, 6, False)
    out = np.asfortranarray(np.zeros((9, 6), "float32"))
    signature = tuple(gemm_halves.numba.typeof(x) for x in (a, b, out))
    if signature in gemm_halves.gemm_halves.overloads:
        pytest.skip("compiled for this layout in this process already")
    started = []
    if not gemm_halves.run(a, b, out, started.append):
        assert len(started) == 1 and not out.any()   # nothing written while it compiles
        assert started[0].wait(120) and started[0].error is None
    assert gemm_halves.run(a, b, out, started.append)
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-5)


def test_operands_it_does_not_take_are_refused_and_in_halves_still_multiplies():
    a, b, out = operands("float32", 8, 4, 3, False)
    assert not gemm_halves.run(a.astype("float64"), b, out)           # mixed dtypes
    assert not gemm_halves.run(a[:1], b, out[:1])                     # one row: nothing to halve
    ints = np.ones((4, 4), "int64")
    assert not gemm_halves.run(ints, ints, np.zeros((4, 4), "int64"))
    mixed = np.zeros((8, 3), "float32")
    threads.in_halves(lambda x, y, o: np.dot(x, y, out=o), a, b, mixed)
    np.testing.assert_allclose(mixed, a @ b, rtol=1e-5, atol=1e-5)
