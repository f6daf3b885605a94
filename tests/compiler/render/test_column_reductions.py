"""Column reductions (register-blocked, float64 partials) against float64 NumPy on adversarial
columns: large means, cancellation, a row count that leaves a remainder after the blocks."""
import numpy as np
import pytest

import graphnet as gn
from graphnet.compiler.render.cpu import COLUMN_BLOCK_ROWS

ROWS = 16 * COLUMN_BLOCK_ROWS + 3      # blocks of rows and a remainder read one at a time
EPS32 = np.finfo(np.float32).eps


@pytest.fixture(scope="module")
def column_sum():
    x = gn.placeholder("x", (None, None))
    return gn.function([x], gn.sum(x, axis=0))


@pytest.fixture(scope="module")
def column_moments():
    x = gn.placeholder("x", (None, None))
    return gn.function([x], list(gn.moments(x, axis=0)))


def test_a_column_sum_reads_its_rows_in_register_blocks(column_sum):
    column_sum(np.ones((ROWS, 3), np.float32))
    [kernel] = column_sum.kernels
    assert f"range(start, blocked_stop, {COLUMN_BLOCK_ROWS})" in kernel.source


def test_a_column_sum_with_a_large_mean_is_the_float64_sum_rounded_once(column_sum):
    x = (1e4 + np.random.default_rng(0).standard_normal((ROWS, 8))).astype(np.float32)
    exact = x.astype(np.float64).sum(axis=0)
    np.testing.assert_allclose(column_sum(x), exact, rtol=EPS32)   # float32 output: one rounding


def test_a_column_sum_that_cancels_keeps_the_small_terms(column_sum):
    # +1e8, 1, -1e8, 1, ...: a float32 running sum loses every 1 (1e8 + 1 == 1e8 in float32)
    x = np.tile(np.array([[1e8], [1.0], [-1e8], [1.0]], np.float32), (ROWS // 4 + 1, 5))[:ROWS]
    exact = x.astype(np.float64).sum(axis=0)
    np.testing.assert_array_equal(column_sum(x), exact.astype(np.float32))


@pytest.mark.parametrize("mean", [0.0, 1e3])
def test_moments_of_columns_with_a_large_mean_match_float64(column_moments, mean):
    x = (mean + np.random.default_rng(1).standard_normal((ROWS, 6))).astype(np.float32)
    x64 = x.astype(np.float64)
    got_mean, got_var = column_moments(x)
    np.testing.assert_allclose(got_mean, x64.mean(axis=0), rtol=EPS32, atol=EPS32)
    # E[x^2] - mean^2 in float64: the cancellation costs ~2^-52 (mean / std)^2 of the variance
    np.testing.assert_allclose(got_var, x64.var(axis=0), rtol=EPS32 + 8 * 2.0**-52 * (1 + mean) ** 2)


@pytest.mark.parametrize("axis", [0, None])
def test_partial_maxima_start_at_minus_infinity_without_np_full(axis):
    # The per-chunk partials are np.empty filled by a loop (np.full's implementation would be
    # one more compile in every cold process): each must still start at the identity.
    x = gn.placeholder("x", (None, None))
    fn = gn.function([x], gn.max(x, axis=axis))
    a = -1e30 - np.random.default_rng(3).random((ROWS, 5)).astype(np.float32)   # all far below 0
    np.testing.assert_array_equal(fn(a), a.max(axis=axis))
    [kernel] = fn.kernels
    assert "np.full" not in kernel.source and "np.empty" in kernel.source


def test_partial_sums_start_at_zero_without_np_full():
    x = gn.placeholder("x", (None, None))
    fn = gn.function([x], gn.sum(x * 2.0))
    a = np.random.default_rng(4).random((ROWS, 5)).astype(np.float32)
    np.testing.assert_allclose(fn(a), (a.astype(np.float64) * 2).sum(), rtol=1e-6)
    assert all("np.full" not in k.source for k in fn.kernels)


def test_column_sums_of_a_transposed_input_read_each_row_of_a_block_apart():
    # A transposed view reaches the kernel strided: each row is copied into a scratch row
    # first. The rows of a register block need one scratch each (with one for the block, the
    # block summed its last row four times, silently).
    x = gn.placeholder("x", (None, None))
    fn = gn.function([x], [gn.sum(gn.transpose(x) * 2.0, axis=0), gn.sum(gn.transpose(x) ** 2, axis=0)])
    v = np.random.default_rng(3).standard_normal((29, ROWS)).astype(np.float32)
    doubled, squares = fn(v)
    np.testing.assert_allclose(doubled, 2 * v.T.astype(np.float64).sum(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(squares, (v.T.astype(np.float64) ** 2).sum(axis=0), rtol=1e-5, atol=1e-5)
