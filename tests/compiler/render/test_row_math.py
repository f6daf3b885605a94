"""The vectorizable row arithmetic of the softmax family (render/row_math.py), against float64 NumPy."""

import numba
import numpy as np
import pytest

from graphnet.compiler.render.row_math import (ROW_BLOCK, contiguous_row, row_max, row_max_exp_sum, row_scratch,
                                               scratch_sum, sum_and_squares)

ULP32 = np.finfo(np.float32).eps     # 2^-23: one unit in the last place at 1.0
SMALLEST_NORMAL32 = np.finfo(np.float32).tiny


@numba.njit(error_model="numpy")
def max_and_total(row, store):
    out = np.empty(row.shape[0] if store else 0, row.dtype)
    m, total = row_max_exp_sum(row, out)
    return m, total, out


def reference_max_and_total(row):
    row64 = row.astype(np.float64)
    m = row64.max()
    e = np.exp(row64 - m)
    return m, e.sum(), e


@pytest.mark.parametrize("columns", [1, 7, ROW_BLOCK, 3 * ROW_BLOCK + 5])
@pytest.mark.parametrize("store", [False, True])
def test_one_pass_max_and_sum_match_two_passes_in_float64(columns, store):
    rng = np.random.default_rng(columns)
    row = (10 * rng.standard_normal(columns)).astype(np.float32)
    row[-1] = row.max() + 5    # the maximum in the last block: earlier blocks are rescaled
    m, total, out = max_and_total(row, store)
    m_ref, total_ref, e_ref = reference_max_and_total(row)
    assert m == m_ref
    np.testing.assert_allclose(total, total_ref, rtol=1e-6)
    if store:
        assert_exponentials_close(out, e_ref, row, m_ref)


def assert_exponentials_close(out, exact, row, m):
    """float32 ``exp(x - m)`` carries the rounding of ``x - m``: ~|x - m| ulps of relative error."""
    allowed = 4 * ULP32 * (1 + np.abs(row.astype(np.float64) - m)) * exact + SMALLEST_NORMAL32
    assert np.all(np.abs(out - exact) <= allowed)


def test_a_first_block_of_minus_infinity_contributes_zeros_not_nan():
    row = np.full(2 * ROW_BLOCK, -np.inf, np.float32)
    row[ROW_BLOCK:] = np.linspace(-3, 3, ROW_BLOCK)
    m, total, out = max_and_total(row, True)
    m_ref, total_ref, e_ref = reference_max_and_total(row)
    assert m == m_ref and np.isfinite(total)
    np.testing.assert_allclose(total, total_ref, rtol=1e-6)
    finite = np.isfinite(row)
    assert np.all(out[~finite] == 0)
    assert_exponentials_close(out[finite], e_ref[finite], row[finite], m_ref)


@pytest.mark.parametrize("where", [0, 5, ROW_BLOCK + 3])
def test_a_nan_anywhere_makes_the_total_nan_as_in_numpy(where):
    row = np.linspace(-1, 1, 2 * ROW_BLOCK).astype(np.float32)
    row[where] = np.nan
    _, total, _ = max_and_total(row, False)
    assert np.isnan(total)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("columns", [1, 10, 64, 65, 1000])
def test_the_vector_lanes_maximum_is_numpys_on_any_block(dtype, columns):
    rng = np.random.default_rng(columns)
    row = rng.standard_normal(columns + 9).astype(dtype)
    row[rng.integers(0, columns + 9, 3)] = -np.inf
    for start, stop in ((0, columns), (4, columns + 9), (columns - 1, columns)):
        assert row_max(row, np.int64(start), np.int64(stop)) == row[start:stop].max()


@pytest.mark.parametrize("where", [0, 3, 63])
def test_a_nan_in_a_short_row_makes_its_softmax_nan(where):
    # The maximum may pass over the NaN (its lanes assume none); the exponentials may not.
    row = np.linspace(-2, 2, 64).astype(np.float32)
    row[where] = np.nan
    _, total, out = max_and_total(row, True)
    assert np.isnan(total) and np.isnan(out[where])


def test_an_empty_row_has_no_maximum_and_a_zero_total():
    m, total, _ = max_and_total(np.zeros(0, np.float32), True)
    assert m == -np.inf and total == 0.0


@pytest.mark.parametrize("dtype", [np.float64, np.int64])
def test_a_scratch_row_sums_to_its_exact_total(dtype):
    row = np.arange(1, 1001).astype(dtype)
    assert scratch_sum(row, 1000) == 500500
    assert scratch_sum(row, 10) == 55


def test_a_scratch_sum_of_float32_terms_in_float64_is_as_accurate_as_numpy_in_float64():
    rng = np.random.default_rng(0)
    terms = (1e4 + rng.standard_normal(4099)).astype(np.float32).astype(np.float64)  # large mean
    np.testing.assert_allclose(scratch_sum(terms, terms.shape[0]), np.sum(terms), rtol=1e-14)


def test_a_float32_scratch_row_is_summed_in_float64():
    # The row holds float32 terms (half the bytes); the sum must still be float64's
    rng = np.random.default_rng(1)
    terms = (1e4 + rng.standard_normal(4099)).astype(np.float32)
    total = scratch_sum(terms, terms.shape[0])
    assert isinstance(total, float)
    np.testing.assert_allclose(total, np.sum(terms.astype(np.float64)), rtol=1e-14)


def test_sums_and_squares_of_float32_terms_are_float64_sums_whatever_the_mean():
    # Batch norm's moments after a convolution: a large mean with a small spread, where
    # E[x^2] - mean^2 cancels; each term is widened before it is squared
    rng = np.random.default_rng(2)
    terms = (1e4 + rng.standard_normal(4099)).astype(np.float32)
    wide = terms.astype(np.float64)
    total, squares = sum_and_squares(terms, terms.shape[0])
    np.testing.assert_allclose(total, wide.sum(), rtol=1e-14)
    np.testing.assert_allclose(squares, (wide * wide).sum(), rtol=1e-14)
    variance = squares / terms.shape[0] - (total / terms.shape[0]) ** 2
    np.testing.assert_allclose(variance, wide.var(), rtol=1e-6)
    assert sum_and_squares(terms, 0) == (0.0, 0.0)
    assert np.isnan(sum_and_squares(np.array([1.0, np.nan, 2.0], np.float32), 3)[1])


@numba.njit(error_model="numpy")
def doubled_rows(a, out):
    scratch = row_scratch(a, a.shape[1])
    for i in range(a.shape[0]):
        row = contiguous_row(a, i, scratch)
        for j in range(a.shape[1]):
            out[i, j] = 2 * row[j]
    return scratch.shape[0]


Z = np.arange(12 * 20, dtype=np.float32).reshape(12, 20)
ROW_VIEWS = {   # name: (view, whether its rows must be copied: their elements are not adjacent)
    "contiguous": (np.ascontiguousarray(Z[:, 5:10]), False),
    "a gate view": (Z[:, 5:10], False),   # rows strided, elements adjacent: read in place
    "every other row": (Z[::2, 5:10], False),
    "rows reversed": (Z[::-1, 5:10], False),
    "every other column": (Z[:, 2:12:2], True),
    "a transposed array": (Z.T[3:9, :5], True),
}


@pytest.mark.parametrize("name", ROW_VIEWS)
def test_a_row_is_read_in_place_where_its_elements_are_adjacent_and_copied_only_else(name):
    view, copied = ROW_VIEWS[name]
    out = np.empty(view.shape, np.float32)
    scratch_size = doubled_rows(view, out)
    np.testing.assert_array_equal(out, 2 * view)
    assert scratch_size == (view.shape[1] if copied else 0)


def test_the_first_block_and_the_later_ones_share_one_compiled_helper():
    # A literal 0 as the first block's start typed as Literal[int](0): row_max and
    # block_exp_sum were compiled twice for every row type, 0.3 s of a cold start.
    # A fresh copy of row_max_exp_sum (no disk cache) types its calls of the helpers here.
    from graphnet.compiler.render import row_math
    fresh = numba.njit(error_model="numpy")(row_math.row_max_exp_sum.py_func)
    row = np.linspace(-3, 3, 3 * ROW_BLOCK + 5).astype(np.float32)
    m, _ = fresh(row, np.empty(0, np.float32))
    assert m == row.max()
    m, _ = fresh(row, np.empty_like(row))
    assert m == row.max()
    for helper in (row_math.row_max, row_math.block_exp_sum, row_math.block_exp_store_sum):
        literal = [sig for sig in helper.signatures if any(isinstance(t, numba.types.Literal) for t in sig)]
        assert literal == [], f"{helper.__name__} compiled for a literal argument: {literal}"
