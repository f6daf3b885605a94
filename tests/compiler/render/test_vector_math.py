"""The vectorizable transcendentals of the generated CPU kernels (render/vector_math.py),
against float64 NumPy, and the packed instructions that make them worth having."""
import re

import numba
import numpy as np
import pytest

from graphnet.compiler.render.vector_math import vexp, vsigmoid, vtanh

ULP32 = np.finfo(np.float32).eps     # 2^-23: one unit in the last place at 1.0
SMALLEST_NORMAL32 = np.finfo(np.float32).tiny


@numba.njit(error_model="numpy")
def exp_loop(x, out):
    for j in range(x.shape[0]):
        out[j] = vexp(x[j])


@numba.njit(error_model="numpy")
def tanh_loop(x, out):
    for j in range(x.shape[0]):
        out[j] = vtanh(x[j])


@numba.njit(error_model="numpy")
def sigmoid_loop(x, out):
    for j in range(x.shape[0]):
        out[j] = vsigmoid(x[j])


def run(loop, x):
    out = np.empty_like(x)
    loop(x, out)
    return out


def ulps(got, exact):
    """|got - exact| in units of the float32 spacing at the exact value."""
    spacing = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    return np.abs(got.astype(np.float64) - exact) / spacing


def test_float32_exp_is_within_one_ulp_of_the_exact_value_over_its_normal_range():
    x = np.linspace(-87.3, 88.7, 1_000_001).astype(np.float32)
    exact = np.exp(x.astype(np.float64))
    relative = np.abs(run(exp_loop, x).astype(np.float64) - exact) / exact
    assert relative.max() <= ULP32


def test_float32_exp_flushes_results_below_the_smallest_normal_to_zero():
    x = np.linspace(-104.0, -87.34, 10_001).astype(np.float32)
    got = run(exp_loop, x)
    assert np.all(np.abs(got.astype(np.float64) - np.exp(x.astype(np.float64))) < SMALLEST_NORMAL32)


def test_float32_exp_of_nan_and_infinities_is_as_numpy():
    special = np.array([np.nan, -np.inf, np.inf, 89.0, -200.0, 0.0], np.float32)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(run(exp_loop, special), np.exp(special))


def test_float64_exp_is_math_exp_within_two_ulp_of_numpy():
    x = np.linspace(-700, 700, 10_001)
    np.testing.assert_allclose(run(exp_loop, x), np.exp(x), rtol=2 * np.finfo(np.float64).eps)


def test_float32_tanh_is_within_two_ulp_everywhere():
    x = np.concatenate([np.linspace(-20, 20, 2_000_001), np.geomspace(1e-30, 1, 10_001),
                        -np.geomspace(1e-30, 1, 10_001), [0.6249999, 0.625, 0.6250001]]).astype(np.float32)
    exact = np.tanh(x.astype(np.float64))
    assert ulps(run(tanh_loop, x), exact).max() <= 2


def test_float32_tanh_of_zeros_nan_and_infinities_is_as_numpy():
    special = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 50.0, -50.0, 1e-38], np.float32)
    got = run(tanh_loop, special)
    np.testing.assert_array_equal(got, np.tanh(special))
    assert np.signbit(got[1])


def test_float32_sigmoid_is_within_three_ulp_where_the_result_is_normal():
    x = np.linspace(-87, 30, 2_000_001).astype(np.float32)
    x64 = x.astype(np.float64)
    exact = 1 / (1 + np.exp(-x64))
    assert ulps(run(sigmoid_loop, x), exact).max() <= 3


def test_float32_sigmoid_saturates_without_nan():
    special = np.array([-1000.0, -100.0, 100.0, 1000.0, -np.inf, np.inf], np.float32)
    got = run(sigmoid_loop, special)
    np.testing.assert_array_equal(got, np.float32([0, 0, 1, 1, 0, 1]))
    assert np.isnan(run(sigmoid_loop, np.float32([np.nan]))[0])


def test_float64_tanh_and_sigmoid_keep_the_scalar_libm_forms():
    x = np.linspace(-40, 40, 10_001)
    np.testing.assert_allclose(run(tanh_loop, x), np.tanh(x), rtol=2 * np.finfo(np.float64).eps)
    np.testing.assert_allclose(run(sigmoid_loop, x), 1 / (1 + np.exp(-x)), rtol=4 * np.finfo(np.float64).eps)


@pytest.mark.parametrize("loop", [exp_loop, tanh_loop, sigmoid_loop], ids=["exp", "tanh", "sigmoid"])
def test_a_loop_of_the_float32_form_compiles_to_packed_vector_instructions(loop):
    run(loop, np.zeros(16, np.float32))
    signature = next(s for s in loop.signatures if s[0].dtype == numba.float32)
    asm = loop.inspect_asm(signature)
    packed = re.findall(r"\bv(?:fmadd\d+|mul|add|rndscale|div)ps\s[^\n]*%[yz]mm", asm)
    assert len(packed) >= 8, "the float32 loop did not vectorize (libm runs as scalar calls)"
