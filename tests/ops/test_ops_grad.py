"""Every differentiable op's symbolic gradient equals central finite differences (float64).

For each case the cost is ``sum(op(inputs) * R)`` with ``R`` a fixed random
array, so that no symmetry of the op can hide a wrong gradient. Inputs are
chosen away from kinks: nothing at 0 for relu and abs, no ties for max and
maximum, positive values for log, sqrt and pow's base. The finite differences
evaluate the cost on the reference backend (its forward pass is checked against
NumPy in test_ops_forward.py); the gradient under test runs on every backend.
"""
import functools
import zlib
from types import SimpleNamespace

import numpy as np
import pytest

import graphnet as gn

EPS = 1e-6
MAX_RELATIVE_ERROR = 1e-6


def numeric_grad(f, x, eps=EPS):
    """Central differences of the scalar function ``f`` at the array ``x``."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        original = x[index]
        x[index] = original + eps
        up = f(x.copy())
        x[index] = original - eps
        down = f(x.copy())
        x[index] = original
        grad[index] = (up - down) / (2 * eps)
    return grad


def relative_error(analytic, numeric):
    return np.max(np.abs(analytic - numeric)) / max(np.max(np.abs(numeric)), 1e-12)


def _inputs():
    rng = np.random.default_rng(7)
    signs = lambda shape: rng.choice([-1.0, 1.0], size=shape)  # noqa: E731
    x = signs((3, 4)) * rng.uniform(0.2, 2.0, (3, 4))
    y = signs((3, 4)) * rng.uniform(0.2, 2.0, (3, 4))
    assert np.min(np.abs(x - y)) > 1e-3  # no ties for maximum/minimum
    z = rng.permutation(24).reshape(2, 3, 4) / 5.0 - 2.3  # distinct, none at 0: no ties for max/min
    return {
        "x": x, "y": y, "p": rng.uniform(0.5, 2.0, (3, 4)),
        "bias": rng.normal(size=(4,)), "col": rng.normal(size=(3, 1)), "s": np.float64(0.7),
        "z": z, "m": rng.normal(size=(4, 2)), "v": rng.normal(size=(4,)), "u": rng.normal(size=(3,)),
        "x6": rng.normal(size=(3, 6)), "alpha": rng.uniform(0.05, 0.5, (4,)),
        "b2": rng.normal(size=(2,)), "gamma": rng.uniform(0.5, 1.5, (4,)), "beta": rng.normal(size=(4,)),
        "labels": np.array([2, 0, 3], np.int64),
    }


INPUTS = _inputs()


def _reduction_cases():
    cases = {}
    for op_name, op in [("sum", gn.sum), ("mean", gn.mean), ("max", gn.max), ("min", gn.min), ("var", gn.var)]:
        for axis in [None, 0, 1, 2, -1, (0, 2)]:
            cases[f"{op_name}-axis={axis}".replace(" ", "")] = (
                lambda v, op=op, axis=axis: op(v.z, axis=axis), ["z"])
        cases[f"{op_name}-axis=1-keepdims"] = (lambda v, op=op: op(v.z, axis=1, keepdims=True), ["z"])
    return cases


# case name -> (graphnet expression of the symbolic inputs ``v``, names of the inputs to differentiate)
CASES = {
    "add": (lambda v: v.x + v.y, ["x", "y"]),
    "sub": (lambda v: v.x - v.y, ["x", "y"]),
    "mul": (lambda v: v.x * v.y, ["x", "y"]),
    "true_div": (lambda v: v.x / v.y, ["x", "y"]),
    "pow": (lambda v: v.p ** v.y, ["p", "y"]),
    "pow_by_python_int": (lambda v: v.x ** 3, ["x"]),
    "neg": (lambda v: -v.x, ["x"]),
    "abs": (lambda v: gn.abs(v.x), ["x"]),
    "maximum": (lambda v: gn.maximum(v.x, v.y), ["x", "y"]),
    "minimum": (lambda v: gn.minimum(v.x, v.y), ["x", "y"]),
    "where": (lambda v: gn.where(v.p > 1.0, v.x, v.y), ["x", "y"]),
    "exp": (lambda v: gn.exp(v.x), ["x"]),
    "log": (lambda v: gn.log(v.p), ["p"]),
    "sqrt": (lambda v: gn.sqrt(v.p), ["p"]),
    "sigmoid": (lambda v: gn.sigmoid(v.x), ["x"]),
    "tanh": (lambda v: gn.tanh(v.x), ["x"]),
    "softplus": (lambda v: gn.softplus(v.x), ["x"]),
    "relu": (lambda v: gn.relu(v.x), ["x"]),
    "leaky_relu": (lambda v: gn.leaky_relu(v.x, alpha=0.1), ["x"]),
    "elu": (lambda v: gn.elu(v.x, alpha=0.7), ["x"]),
    "prelu": (lambda v: gn.prelu(v.x, v.alpha), ["x", "alpha"]),
    "maxout": (lambda v: gn.maxout(v.x6, 2), ["x6"]),
    "bias_broadcast_over_rows": (lambda v: v.x + v.bias, ["x", "bias"]),
    "column_times_row": (lambda v: v.col * v.bias, ["col", "bias"]),
    "scalar_times_matrix": (lambda v: v.s * v.x, ["s", "x"]),
    **_reduction_cases(),
    "dot_matrix_matrix": (lambda v: gn.dot(v.x, v.m), ["x", "m"]),
    "dot_matrix_vector": (lambda v: gn.dot(v.x, v.v), ["x", "v"]),
    "dot_vector_matrix": (lambda v: gn.dot(v.u, v.x), ["u", "x"]),
    "transpose": (lambda v: gn.transpose(v.x), ["x"]),
    "transpose_3d_axes": (lambda v: gn.transpose(v.z, (2, 0, 1)), ["z"]),
    "reshape_minus_one": (lambda v: gn.reshape(v.x, (-1, 2)), ["x"]),
    "softmax": (lambda v: gn.softmax(v.x), ["x"]),
    "softmax_axis_0": (lambda v: gn.softmax(v.x, axis=0), ["x"]),
    "log_softmax": (lambda v: gn.log_softmax(v.x), ["x"]),
    "log_softmax_axis_0": (lambda v: gn.log_softmax(v.x, axis=0), ["x"]),
    "cross_entropy": (lambda v: gn.nn.cross_entropy(v.x, v.labels), ["x"]),
    "l2": (lambda v: gn.nn.l2(v.m, v.bias), ["m", "bias"]),
    "tanh_of_affine_layer": (lambda v: gn.tanh(gn.dot(v.x, v.m) + v.b2), ["x", "m", "b2"]),
}


@functools.cache
def case_graph(name):
    build, wrt_names = CASES[name]
    return build_case(build, wrt_names, seed=zlib.crc32(name.encode()))


def build_case(build, wrt_names, seed, training=False):
    """Placeholders for the inputs, the cost ``sum(out * R)`` and its symbolic gradients."""
    symbols = {name: gn.placeholder(name, np.shape(value), np.asarray(value).dtype)
               for name, value in INPUTS.items()}
    out = build(SimpleNamespace(**symbols))
    weights = np.random.default_rng(seed).normal(size=out.shape)
    cost = gn.sum(out * gn.constant(weights))
    wrt = [symbols[name] for name in wrt_names]
    grads = gn.grad(cost, wrt)
    used = [p for p in gn.graph.graph_inputs([cost]) if isinstance(p, gn.Placeholder)]
    return SimpleNamespace(cost=cost, wrt=wrt, grads=grads, feeds={p: INPUTS[p.name] for p in used},
                           training=training)


def check_against_finite_differences(case, backend, run):
    analytic = run(case.grads, case.feeds, backend, training=case.training)
    for variable, grad in zip(case.wrt, analytic):
        def cost_at(value, variable=variable):
            return float(run(case.cost, {**case.feeds, variable: value}, "reference", training=case.training))
        numeric = numeric_grad(cost_at, case.feeds[variable])
        assert grad.shape == case.feeds[variable].shape and grad.dtype == np.float64
        error = relative_error(grad, numeric)
        assert error < MAX_RELATIVE_ERROR, f"gradient wrt {variable.name}: relative error {error:.2e}"


@pytest.mark.parametrize("name", list(CASES))
def test_gradient_matches_finite_differences(name, backend, run):
    check_against_finite_differences(case_graph(name), backend, run)


def test_batch_norm_training_gradient_matches_finite_differences(backend, run):
    case = build_case(lambda v: gn.nn.batch_norm(v.x, v.gamma, v.beta), ["x", "gamma", "beta"],
                      seed=11, training=True)
    check_against_finite_differences(case, backend, run)


def test_dropout_gradient_is_the_forward_mask_over_keep_probability(backend, run):
    rate = 0.4
    x = gn.placeholder("x", (6, 5), "float64")
    weights = np.random.default_rng(3).normal(size=(6, 5))
    out = gn.nn.dropout(x, rate, seed=1234)
    dx = gn.grad(gn.sum(out * gn.constant(weights)), x)
    # One training call: the output and the gradient read the same step of the mask.
    forward, analytic = run([out, dx], {x: np.ones((6, 5))}, backend, training=True)
    mask = forward != 0
    assert 0 < mask.sum() < mask.size
    np.testing.assert_allclose(analytic, weights * mask / (1 - rate), rtol=1e-12)


def test_cast_gradient_is_the_output_gradient_cast_back(backend, run):
    x = gn.placeholder("x", (3, 4), "float64")
    weights = np.random.default_rng(5).normal(size=(3, 4)).astype(np.float32)
    dx = gn.grad(gn.sum(gn.cast(x, "float32") * gn.constant(weights)), x)
    assert dx.dtype == np.float64
    np.testing.assert_array_equal(run(dx, {x: INPUTS["x"]}, backend), weights.astype(np.float64))


def test_sign_gradient_is_zero(backend, run):
    x = gn.placeholder("x", (3, 4), "float64")
    dx = gn.grad(gn.sum(gn.sign(x) * 3.0), x)
    np.testing.assert_array_equal(run(dx, {x: INPUTS["x"]}, backend), np.zeros((3, 4)))


# op -> (f, analytic f'') for d2/dx2 of sum(f(x)), which is f'' elementwise.
SECOND_DERIVATIVES = {
    "tanh": (gn.tanh, lambda a: -2 * np.tanh(a) * (1 - np.tanh(a) ** 2)),
    "sigmoid": (gn.sigmoid, lambda a: (s := 1 / (1 + np.exp(-a))) * (1 - s) * (1 - 2 * s)),
    "exp": (gn.exp, np.exp),
    "softplus": (gn.softplus, lambda a: (s := 1 / (1 + np.exp(-a))) * (1 - s)),
    "square": (lambda x: x * x, lambda a: np.full_like(a, 2.0)),
    "cube": (lambda x: x ** 3, lambda a: 6 * a),
    "reciprocal": (lambda x: 1.0 / x, lambda a: 2 / a ** 3),
    "log_of_square": (lambda x: gn.log(x * x), lambda a: -2 / a ** 2),
    "sqrt_of_square": (lambda x: gn.sqrt(x * x + 1.0), lambda a: (a * a + 1) ** -1.5),
    "elu": (gn.elu, lambda a: np.where(a > 0, 0.0, np.exp(a))),
    "relu": (gn.relu, np.zeros_like),
    "abs": (gn.abs, np.zeros_like),
}


@pytest.mark.parametrize("name", list(SECOND_DERIVATIVES))
def test_grad_of_grad_gives_the_second_derivative(name, backend, run):
    f, second = SECOND_DERIVATIVES[name]
    x = gn.placeholder("x", (3, 4), "float64")
    first = gn.grad(gn.sum(f(x)), x)
    d2 = gn.grad(gn.sum(first), x)
    np.testing.assert_allclose(run(d2, {x: INPUTS["x"]}, backend), second(INPUTS["x"]), rtol=1e-10, atol=1e-12)
