"""The vectorizable row arithmetic of the softmax family (render/row_math.py), against float64 NumPy."""
import re

import numba
import numpy as np
import pytest

from graphnet.compiler.render.row_math import ROW_BLOCK, row_max_exp_sum, vexp

ULP32 = np.finfo(np.float32).eps     # 2^-23: one unit in the last place at 1.0
SMALLEST_NORMAL32 = np.finfo(np.float32).tiny


@numba.njit(error_model="numpy")
def exp_loop(x, out):
    for j in range(x.shape[0]):
        out[j] = vexp(x[j])


@pytest.fixture(scope="module")
def exps():
    def run(x):
        out = np.empty_like(x)
        exp_loop(x, out)
        return out
    return run


def test_float32_exp_is_within_one_ulp_of_the_exact_value_over_its_normal_range(exps):
    x = np.linspace(-87.3, 88.7, 1_000_001).astype(np.float32)
    exact = np.exp(x.astype(np.float64))
    relative = np.abs(exps(x).astype(np.float64) - exact) / exact
    assert relative.max() <= ULP32


def test_float32_exp_flushes_results_below_the_smallest_normal_to_zero(exps):
    x = np.linspace(-104.0, -87.34, 10_001).astype(np.float32)
    got = exps(x)
    assert np.all(np.abs(got.astype(np.float64) - np.exp(x.astype(np.float64))) < SMALLEST_NORMAL32)


def test_float32_exp_of_nan_and_infinities_is_as_numpy(exps):
    special = np.array([np.nan, -np.inf, np.inf, 89.0, -200.0, 0.0], np.float32)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(exps(special), np.exp(special))


def test_float64_exp_is_math_exp_within_two_ulp_of_numpy(exps):
    x = np.linspace(-700, 700, 10_001)
    np.testing.assert_allclose(exps(x), np.exp(x), rtol=2 * np.finfo(np.float64).eps)


def test_a_loop_of_float32_exp_compiles_to_packed_vector_instructions(exps):
    exps(np.zeros(16, np.float32))
    signature = next(s for s in exp_loop.signatures if s[0].dtype == numba.float32)
    asm = exp_loop.inspect_asm(signature)
    packed = re.findall(r"\bv(?:fmadd\d+|mul|add|rndscale)ps\s[^\n]*%[yz]mm", asm)
    assert len(packed) >= 8, "the float32 exp loop did not vectorize (math.exp runs as scalar calls)"


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


def test_an_empty_row_has_no_maximum_and_a_zero_total():
    m, total, _ = max_and_total(np.zeros(0, np.float32), True)
    assert m == -np.inf and total == 0.0
