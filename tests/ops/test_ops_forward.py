"""Every op's forward pass equals NumPy's, in float64 and float32, on every backend.

The oracle is NumPy in float64 on the very values fed (float32 inputs are
widened exactly), compared at rtol 1e-10 for float64 graphs and 1e-5 for
float32 graphs (values too small for the dtype may underflow to zero). Each
family of ops is one graph holding every case, compiled once per (dtype,
backend); each test checks one case of it.
"""
import functools
from types import SimpleNamespace

import numpy as np
import pytest

import graphnet as gn
from graphnet.graph import Placeholder, graph_inputs

DTYPES = ["float64", "float32"]
RTOL = {"float64": 1e-10, "float32": 1e-5}


def _away_from_zero(rng, shape, low=0.2, high=2.0):
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, high, size=shape)


def _inputs():
    rng = np.random.default_rng(20240601)
    x = _away_from_zero(rng, (3, 4))
    y = _away_from_zero(rng, (3, 4))
    y[0, 0], y[2, 3] = x[0, 0], x[2, 3]  # ties, so comparisons and maximum see equal values
    return {
        "x": x, "y": y,
        "p": rng.uniform(0.5, 2.0, (3, 4)),           # positive: log, sqrt, pow's base
        "col": rng.normal(size=(3, 1)), "row": rng.normal(size=(4,)), "row1": rng.normal(size=(1, 4)),
        "s": np.float64(rng.normal()), "z": rng.permutation(24).reshape(2, 3, 4) / 7.0 - 1.5,
        "zcol": rng.normal(size=(3, 1)),
        "m": rng.normal(size=(4, 2)), "v": rng.normal(size=(4,)), "u": rng.normal(size=(3,)),
        "x6": rng.normal(size=(3, 6)), "alpha": rng.uniform(0.05, 0.5, (4,)),
        "labels": np.array([2, 0, 3], np.int64),
    }


INPUTS = _inputs()


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _log_softmax(a, axis):
    shifted = a - a.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


# Each family: case name -> (graphnet expression of the symbolic inputs ``v``,
#                            NumPy expression of the float64 arrays ``a``).
ELEMENTWISE = {
    "add": (lambda v: v.x + v.y, lambda a: a.x + a.y),
    "sub": (lambda v: v.x - v.y, lambda a: a.x - a.y),
    "mul": (lambda v: v.x * v.y, lambda a: a.x * a.y),
    "true_div": (lambda v: v.x / v.y, lambda a: a.x / a.y),
    "pow": (lambda v: v.p ** v.y, lambda a: a.p ** a.y),
    "pow_by_python_int": (lambda v: v.x ** 3, lambda a: a.x ** 3),
    "scalar_times_var": (lambda v: 2.5 * v.x, lambda a: 2.5 * a.x),
    "scalar_minus_var": (lambda v: 1 - v.x, lambda a: 1 - a.x),
    "scalar_over_var": (lambda v: 1.0 / v.x, lambda a: 1.0 / a.x),
    "neg": (lambda v: -v.x, lambda a: -a.x),
    "abs": (lambda v: gn.abs(v.x), lambda a: np.abs(a.x)),
    "abs_operator": (lambda v: abs(v.x), lambda a: np.abs(a.x)),
    "sign": (lambda v: gn.sign(v.x), lambda a: np.sign(a.x)),
    "maximum": (lambda v: gn.maximum(v.x, v.y), lambda a: np.maximum(a.x, a.y)),
    "minimum": (lambda v: gn.minimum(v.x, v.y), lambda a: np.minimum(a.x, a.y)),
    "maximum_with_scalar": (lambda v: gn.maximum(v.x, 0.5), lambda a: np.maximum(a.x, 0.5)),
    "where": (lambda v: gn.where(v.x > 0, v.x, v.y), lambda a: np.where(a.x > 0, a.x, a.y)),
    "less": (lambda v: v.x < v.y, lambda a: a.x < a.y),
    "less_equal": (lambda v: v.x <= v.y, lambda a: a.x <= a.y),
    "greater": (lambda v: v.x > v.y, lambda a: a.x > a.y),
    "greater_equal": (lambda v: v.x >= v.y, lambda a: a.x >= a.y),
    "eq": (lambda v: gn.eq(v.x, v.y), lambda a: a.x == a.y),
    "neq": (lambda v: gn.neq(v.x, v.y), lambda a: a.x != a.y),
    "exp": (lambda v: gn.exp(v.x), lambda a: np.exp(a.x)),
    "log": (lambda v: gn.log(v.p), lambda a: np.log(a.p)),
    "sqrt": (lambda v: gn.sqrt(v.p), lambda a: np.sqrt(a.p)),
    "sigmoid": (lambda v: gn.sigmoid(v.x), lambda a: _sigmoid(a.x)),
    "tanh": (lambda v: gn.tanh(v.x), lambda a: np.tanh(a.x)),
    "softplus": (lambda v: gn.softplus(v.x), lambda a: np.log1p(np.exp(a.x))),
    "relu": (lambda v: gn.relu(v.x), lambda a: np.maximum(a.x, 0.0)),
    "leaky_relu": (lambda v: gn.leaky_relu(v.x), lambda a: np.where(a.x > 0, a.x, 0.01 * a.x)),
    "leaky_relu_alpha_0.2": (lambda v: gn.leaky_relu(v.x, alpha=0.2), lambda a: np.where(a.x > 0, a.x, 0.2 * a.x)),
    "elu": (lambda v: gn.elu(v.x), lambda a: np.where(a.x > 0, a.x, np.exp(a.x) - 1.0)),
    "elu_alpha_0.5": (lambda v: gn.elu(v.x, alpha=0.5), lambda a: np.where(a.x > 0, a.x, 0.5 * (np.exp(a.x) - 1.0))),
    "cast_to_int64": (lambda v: gn.cast(v.x * 3, "int64"), lambda a: (a.x * 3).astype(np.int64)),
    "cast_to_bool": (lambda v: gn.cast(gn.relu(v.x), "bool"), lambda a: np.maximum(a.x, 0) != 0),
}

BROADCASTING = {
    "column_plus_row": (lambda v: v.col + v.row, lambda a: a.col + a.row),            # (3,1) + (4,)
    "matrix_plus_bias": (lambda v: v.x + v.row, lambda a: a.x + a.row),               # (3,4) + (4,)
    "row_times_column": (lambda v: v.row1 * v.col, lambda a: a.row1 * a.col),         # (1,4) * (3,1)
    "scalar_placeholder_minus_matrix": (lambda v: v.s - v.x, lambda a: a.s - a.x),    # () - (3,4)
    "cube_times_column": (lambda v: v.z * v.zcol, lambda a: a.z * a.zcol),            # (2,3,4) * (3,1)
    "where_broadcasts_all_three": (lambda v: gn.where(v.col > 0, v.row, v.s),
                                   lambda a: np.where(a.col > 0, a.row, a.s)),
    "maximum_of_column_and_row": (lambda v: gn.maximum(v.col, v.row), lambda a: np.maximum(a.col, a.row)),
}


def _reduction_cases():
    ops = {"sum": (gn.sum, np.sum), "mean": (gn.mean, np.mean), "max": (gn.max, np.max),
           "min": (gn.min, np.min), "var": (gn.var, np.var)}
    cases = {}
    for op_name, (ours, numpys) in ops.items():
        for axis in [None, 0, 1, -1, (0, 2), (-1, 0)]:
            for keepdims in [False, True]:
                name = f"{op_name}-axis={axis}-keepdims={keepdims}".replace(" ", "")
                cases[name] = (lambda v, f=ours, ax=axis, kd=keepdims: f(v.z, axis=ax, keepdims=kd),
                               lambda a, f=numpys, ax=axis, kd=keepdims: f(a.z, axis=ax, keepdims=kd))
    for axis in [0, 1, -1]:
        for keepdims in [False, True]:
            cases[f"argmax-axis={axis}-keepdims={keepdims}"] = (
                lambda v, ax=axis, kd=keepdims: gn.argmax(v.z, axis=ax, keepdims=kd),
                lambda a, ax=axis, kd=keepdims: np.argmax(a.z, axis=ax, keepdims=kd))
    return cases


REDUCTIONS = _reduction_cases()

LINALG_AND_SHAPE = {
    "dot_matrix_matrix": (lambda v: gn.dot(v.x, v.m), lambda a: a.x @ a.m),         # (3,4)(4,2)
    "dot_matrix_vector": (lambda v: gn.dot(v.x, v.v), lambda a: a.x @ a.v),         # (3,4)(4,)
    "dot_vector_matrix": (lambda v: gn.dot(v.u, v.x), lambda a: a.u @ a.x),         # (3,)(3,4)
    "matmul_operator": (lambda v: v.x @ v.m, lambda a: a.x @ a.m),
    "transpose": (lambda v: gn.transpose(v.x), lambda a: a.x.T),
    "T_attribute": (lambda v: v.x.T, lambda a: a.x.T),
    "transpose_3d_axes": (lambda v: gn.transpose(v.z, (1, 0, 2)), lambda a: np.transpose(a.z, (1, 0, 2))),
    "reshape_flat_minus_one": (lambda v: gn.reshape(v.x, (-1,)), lambda a: a.x.reshape(-1)),
    "reshape_minus_one_first": (lambda v: gn.reshape(v.x, (-1, 2)), lambda a: a.x.reshape(-1, 2)),
    "reshape_to_3d": (lambda v: gn.reshape(v.x, (3, 2, -1)), lambda a: a.x.reshape(3, 2, -1)),
    "reshape_explicit": (lambda v: gn.reshape(v.x, (4, 3)), lambda a: a.x.reshape(4, 3)),
}

NN = {
    "softmax": (lambda v: gn.softmax(v.x), lambda a: np.exp(_log_softmax(a.x, -1))),
    "softmax_axis_0": (lambda v: gn.softmax(v.x, axis=0), lambda a: np.exp(_log_softmax(a.x, 0))),
    "softmax_of_large_logits": (lambda v: gn.softmax(v.x * 1000.0), lambda a: np.exp(_log_softmax(a.x * 1000.0, -1))),
    "log_softmax": (lambda v: gn.log_softmax(v.x), lambda a: _log_softmax(a.x, -1)),
    "log_softmax_axis_0": (lambda v: gn.log_softmax(v.x, axis=0), lambda a: _log_softmax(a.x, 0)),
    "prelu": (lambda v: gn.prelu(v.x, v.alpha), lambda a: np.where(a.x > 0, a.x, a.alpha * a.x)),
    "maxout_2_pieces": (lambda v: gn.maxout(v.x6, 2), lambda a: a.x6.reshape(3, 3, 2).max(-1)),
    "maxout_3_pieces": (lambda v: gn.maxout(v.x6, 3), lambda a: a.x6.reshape(3, 2, 3).max(-1)),
    "cross_entropy": (lambda v: gn.nn.cross_entropy(v.x, v.labels),
                      lambda a: -_log_softmax(a.x, 1)[np.arange(3), a.labels].mean()),
    "l2_one_param": (lambda v: gn.nn.l2(v.m), lambda a: np.sum(a.m ** 2)),
    "l2_two_params": (lambda v: gn.nn.l2(v.m, v.row), lambda a: np.sum(a.m ** 2) + np.sum(a.row ** 2)),
}

FAMILIES = {"elementwise": ELEMENTWISE, "broadcasting": BROADCASTING, "reductions": REDUCTIONS,
            "linalg_and_shape": LINALG_AND_SHAPE, "nn": NN}


def _feed_value(name, dtype):
    value = np.asarray(INPUTS[name])
    return value if value.dtype.kind == "i" else value.astype(dtype)


@functools.cache
def family_graph(family, dtype):
    """(names, outputs, feeds): one graph computing every case of ``family`` in ``dtype``."""
    symbols = {name: gn.placeholder(name, np.shape(value), _feed_value(name, dtype).dtype)
               for name, value in INPUTS.items()}
    v = SimpleNamespace(**symbols)
    names = sorted(FAMILIES[family])
    outputs = [FAMILIES[family][name][0](v) for name in names]
    used = [p for p in graph_inputs(outputs) if isinstance(p, Placeholder)]
    feeds = {p: _feed_value(p.name, dtype) for p in used}
    return names, outputs, feeds


def check_forward(family, name, dtype, backend, run):
    names, outputs, feeds = family_graph(family, dtype)
    out = outputs[names.index(name)]
    try:
        actual = run(outputs, feeds, backend)[names.index(name)]
    except Exception:  # noqa: BLE001
        # Some case of the family failed to compile or run: run this one alone, so only the culprit fails.
        own_inputs = [p for p in graph_inputs([out]) if isinstance(p, Placeholder)]
        actual = run(out, {p: feeds[p] for p in own_inputs}, backend)
    widened = SimpleNamespace(**{k: np.asarray(_feed_value(k, dtype), np.float64)
                                 if INPUTS[k].dtype.kind == "f" else INPUTS[k] for k in INPUTS})
    expected = np.asarray(FAMILIES[family][name][1](widened))

    assert actual.shape == expected.shape
    assert out.type.accepts_shape(actual.shape), f"static shape {out.shape} vs run-time {actual.shape}"
    assert actual.dtype == out.dtype
    if expected.dtype.kind in "biu":
        assert actual.dtype.kind == expected.dtype.kind
        np.testing.assert_array_equal(actual, expected)
    else:
        assert actual.dtype == np.dtype(dtype)
        np.testing.assert_allclose(actual.astype(np.float64), expected, rtol=RTOL[dtype],
                                   atol=np.finfo(dtype).tiny)  # values below it underflow to 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_op_matches_numpy(name, dtype, backend, run):
    check_forward("elementwise", name, dtype, backend, run)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(BROADCASTING))
def test_broadcasting_matches_numpy(name, dtype, backend, run):
    check_forward("broadcasting", name, dtype, backend, run)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reduction_matches_numpy(name, dtype, backend, run):
    check_forward("reductions", name, dtype, backend, run)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(LINALG_AND_SHAPE))
def test_dot_and_shape_op_matches_numpy(name, dtype, backend, run):
    check_forward("linalg_and_shape", name, dtype, backend, run)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(NN))
def test_nn_op_matches_numpy(name, dtype, backend, run):
    check_forward("nn", name, dtype, backend, run)


@pytest.mark.parametrize("source, target", [("float64", "float32"), ("float32", "float64")])
def test_cast_between_float_dtypes_rounds_as_numpy(source, target, backend, run):
    x = gn.placeholder("x", (3, 4), source)
    value = INPUTS["x"].astype(source)
    actual = run(gn.cast(x, target), {x: value}, backend)
    assert actual.dtype == np.dtype(target)
    np.testing.assert_array_equal(actual, value.astype(target))
