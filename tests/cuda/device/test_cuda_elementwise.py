"""Fused elementwise kernels: every scalar expression, every broadcast, bit-identical dropout."""
import numpy as np

import graphnet as gn

RNG = np.random.default_rng(0)


def floats(*shape, dtype="float32"):
    return RNG.standard_normal(shape).astype(dtype)


def test_arithmetic_comparisons_and_casts_match_reference(matches_reference):
    x, y = gn.placeholder("x", (None, 5)), gn.placeholder("y", (None, 5))
    outputs = [x + y, x - 2 * y, x / (gn.abs(y) + 1), x ** 2, gn.abs(x) ** y, -x, gn.sign(x),
               gn.maximum(x, y), gn.minimum(x, y), gn.where(x > y, x, y), x < y, gn.eq(x, x),
               gn.cast(x, "int32"), gn.cast(x, "float64"), gn.cast(x, "bool")]
    fn = matches_reference(outputs, {x: floats(4, 5), y: floats(4, 5)})
    assert {(k.kind, k.device) for k in fn.kernels} == {("fused", "gpu")}


def test_math_functions_match_reference_including_nan_and_inf(matches_reference):
    x = gn.placeholder("x", (None, 6))
    xb = np.array([[-80.0, -2.5, -0.0, 0.0, 1e-3, 90.0]] * 2, "float32")
    xb[1] *= 0.5
    outputs = [gn.exp(x / 10), gn.log(x), gn.sqrt(x), gn.sigmoid(x), gn.tanh(x), gn.softplus(x),
               gn.relu(x), gn.leaky_relu(x, 0.1), gn.elu(x, 1.5)]
    matches_reference(outputs, {x: xb}, rtol=2e-6)


def test_integer_and_boolean_arithmetic_is_exact(matches_reference):
    i, j = gn.placeholder("i", (3, 4), "int64"), gn.placeholder("j", (3, 4), "int64")
    outputs = [i + j, i * 3 - j, gn.abs(i), gn.maximum(i, j), gn.where(i > j, i, 0), gn.sign(j)]
    matches_reference(outputs, {i: RNG.integers(-9, 9, (3, 4)), j: RNG.integers(-9, 9, (3, 4))})


def test_float64_chains_keep_float64(matches_reference):
    x = gn.placeholder("x", (None, 3), "float64")
    matches_reference([gn.tanh(x) * 3.0 + gn.exp(-x)], {x: floats(5, 3, dtype="float64")}, rtol=1e-12)


def test_rows_columns_and_scalars_broadcast_over_a_3d_domain(matches_reference):
    x = gn.placeholder("x", (2, 3, 4))
    bias, per_row, scale = gn.placeholder("b", (4,)), gn.placeholder("r", (2, 3, 1)), gn.placeholder("s", ())
    matches_reference([gn.relu(x * scale + bias) - per_row],
                      {x: floats(2, 3, 4), bias: floats(4), per_row: floats(2, 3, 1), scale: np.float32(1.5)})


def test_zero_d_values_run_as_kernels(matches_reference):
    a, b = gn.placeholder("a", ()), gn.placeholder("b", ())
    fn = matches_reference([gn.sqrt(a * a + b * b), gn.maximum(a, b)], {a: np.float32(3), b: np.float32(-4)})
    assert all(k.device == "gpu" for k in fn.kernels)


def test_empty_batches_give_empty_outputs(matches_reference):
    x = gn.placeholder("x", (None, 3))
    matches_reference([gn.exp(x) + 1], {x: np.zeros((0, 3), "float32")})


def test_dropout_masks_are_bit_identical_to_the_cpu_backend():
    def build():
        x = gn.placeholder("x", (None, 7))
        return x, gn.nn.dropout(x, 0.4, seed=1234)
    xb = floats(6, 7) + 3.0   # no zeros of its own: a zero is a dropped unit
    results = {}
    for backend in ("cpu", "cuda", "reference"):
        x, dropped = build()
        fn = gn.function([x], dropped, backend=backend, training=True)
        results[backend] = [fn(xb) for _ in range(3)]   # the step counter advances: new masks
    for cpu, cuda, ref in zip(results["cpu"], results["cuda"], results["reference"]):
        np.testing.assert_array_equal(cuda == 0, cpu == 0)
        np.testing.assert_array_equal(cuda, cpu)
        np.testing.assert_array_equal(cuda, ref)
    first, second = results["cuda"][:2]
    assert not np.array_equal(first == 0, second == 0), "each call draws a fresh mask"
