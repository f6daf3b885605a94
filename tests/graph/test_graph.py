"""The graph IR: type inference, op equality for CSE, and the user's source line on every node."""
import numpy as np
import pytest

import graphnet as gn
from graphnet.graph import ancestors_toposort

X = gn.placeholder("x", (None, 4), "float32")       # None: any batch size
B = gn.shared(np.zeros(4, "float32"), name="b")
W = gn.shared(np.zeros((4, 3), "float32"), name="W")


# ------------------------------------------------------------------ shapes
@pytest.mark.parametrize("build, shape", [
    (lambda: X + B, (None, 4)),
    (lambda: gn.placeholder("c", (None, 1)) * gn.placeholder("r", (3,)), (None, 3)),
    (lambda: gn.placeholder("c", (3, 1)) + gn.placeholder("r", (4,)), (3, 4)),
    (lambda: gn.placeholder("c", (None, 4)) + gn.placeholder("r", (3, 4)), (3, 4)),
    (lambda: gn.placeholder("s", ()) * X, (None, 4)),
    (lambda: gn.dot(X, W), (None, 3)),
    (lambda: X @ W, (None, 3)),
    (lambda: gn.dot(gn.placeholder("v", (4,)), W), (3,)),
    (lambda: gn.dot(W, gn.placeholder("v", (3,))), (4,)),
    (lambda: gn.sum(X, axis=1), (None,)),
    (lambda: gn.sum(X, axis=0), (4,)),
    (lambda: gn.mean(X, axis=-1, keepdims=True), (None, 1)),
    (lambda: gn.max(X), ()),
    (lambda: gn.argmax(X, axis=1), (None,)),
    (lambda: gn.reshape(X, (-1, 2)), (None, 2)),
    (lambda: gn.transpose(X), (4, None)),
    (lambda: X.T, (4, None)),
    (lambda: gn.softmax(X), (None, 4)),
    (lambda: gn.maxout(X, 2), (None, 2)),
    (lambda: gn.nn.cross_entropy(X, gn.placeholder("y", (None,), "int64")), ()),
])
def test_static_shape_inference(build, shape):
    assert build().shape == shape


def test_none_dimension_accepts_any_size_at_run_time(backend, run):
    out = X + B
    for rows in (1, 5):
        assert run(out, {X: np.ones((rows, 4), "float32")}, backend).shape == (rows, 4)


# ------------------------------------------------------------------ dtypes
I = gn.placeholder("i", (3,), "int64")
F64 = gn.placeholder("f64", (4,), "float64")


@pytest.mark.parametrize("build, dtype", [
    (lambda: X * 0.5, "float32"),          # Python scalars are weak: float32 stays float32
    (lambda: 2 * X, "float32"),
    (lambda: X + F64, "float64"),
    (lambda: I * 2, "int64"),
    (lambda: I / 2, "float64"),
    (lambda: gn.exp(I), "float64"),
    (lambda: X < 0.5, "bool"),
    (lambda: gn.eq(I, 1), "bool"),
    (lambda: gn.mean(I), "float64"),
    (lambda: gn.sum(gn.placeholder("i32", (3,), "int32")), "int64"),
    (lambda: gn.argmax(X, axis=1), "int64"),
    (lambda: gn.cast(X, "float64"), "float64"),
    (lambda: gn.relu(X), "float32"),
    (lambda: gn.where(X > 0, X, 0.0), "float32"),
])
def test_dtype_inference(build, dtype):
    assert build().dtype == np.dtype(dtype)


# --------------------------------------------------------------- op equality
Y = gn.placeholder("y2", (5, 4), "float32")


@pytest.mark.parametrize("make_a, make_b", [
    (lambda: gn.sum(X, axis=0), lambda: gn.sum(Y, axis=-2)),             # axes normalized
    (lambda: gn.sum(X, axis=(1, 0)), lambda: gn.sum(Y, axis=(0, 1))),
    (lambda: gn.max(X, axis=1, keepdims=True), lambda: gn.max(Y, axis=1, keepdims=True)),
    (lambda: gn.leaky_relu(X, 0.1), lambda: gn.leaky_relu(Y, 0.1)),
    (lambda: gn.cast(X, "float64"), lambda: gn.cast(Y, "float64")),
    (lambda: gn.softmax(X), lambda: gn.softmax(Y, axis=1)),
    (lambda: X + B, lambda: Y + B),
    (lambda: gn.transpose(X), lambda: Y.T),
    (lambda: gn.reshape(X, (-1, 2)), lambda: gn.reshape(Y, (-1, 2))),
])
def test_ops_with_equal_parameters_are_equal_and_hash_equal(make_a, make_b):
    a, b = make_a().owner.op, make_b().owner.op
    assert a == b and hash(a) == hash(b)
    assert len({a, b}) == 1


@pytest.mark.parametrize("make_a, make_b", [
    (lambda: gn.sum(X, axis=0), lambda: gn.sum(X, axis=1)),
    (lambda: gn.sum(X, axis=0), lambda: gn.sum(X, axis=0, keepdims=True)),
    (lambda: gn.sum(X, axis=0), lambda: gn.max(X, axis=0)),
    (lambda: gn.leaky_relu(X, 0.1), lambda: gn.leaky_relu(X, 0.2)),
    (lambda: gn.elu(X, 1.0), lambda: gn.leaky_relu(X, 1.0)),
    (lambda: gn.cast(X, "float64"), lambda: gn.cast(X, "int32")),
    (lambda: X < 0.5, lambda: X > 0.5),
    (lambda: X + B, lambda: X * B),
    (lambda: gn.softmax(X, axis=0), lambda: gn.softmax(X, axis=1)),
    (lambda: gn.softmax(X), lambda: gn.log_softmax(X)),
])
def test_ops_with_different_type_or_parameters_differ(make_a, make_b):
    assert make_a().owner.op != make_b().owner.op


def test_two_identical_applications_have_the_same_cse_key():
    first, second = gn.tanh(X * 2.0), gn.tanh(X * 2.0)
    assert first is not second
    mul_a, mul_b = first.owner.inputs[0].owner, second.owner.inputs[0].owner
    assert mul_a.op == mul_b.op and mul_a.inputs[0] is mul_b.inputs[0]
    assert first.owner.op == second.owner.op


# --------------------------------------------------------------- source lines
def _where(build):
    return f"{build.__code__.co_filename}:{build.__code__.co_firstlineno}"


def test_every_forward_node_records_the_users_source_line():
    y = gn.placeholder("labels", (None,), "int64")
    build = lambda: gn.nn.cross_entropy(gn.dot(gn.nn.batch_norm(X, B, B), W) + 1.0, y)  # noqa: E731
    loss = build()
    nodes = ancestors_toposort([loss])
    assert len(nodes) > 5
    assert {node.source for node in nodes} == {_where(build)}
    assert {out.source for node in nodes for out in node.outputs} == {_where(build)}


def test_gradient_nodes_record_the_line_of_the_grad_call():
    loss = gn.mean(gn.tanh(gn.dot(X, W)))
    forward = set(ancestors_toposort([loss]))
    backprop = lambda: gn.grad(loss, W)  # noqa: E731
    dW = backprop()
    backward = [node for node in ancestors_toposort([dW]) if node not in forward]
    assert backward and {node.source for node in backward} == {_where(backprop)}


def test_source_line_names_this_test_file():
    out = gn.sqrt(X)
    path, line = out.owner.source.rsplit(":", 1)
    assert path == __file__ and int(line) > 0


# ------------------------------------------------------------------ variables
def test_symbolic_variable_has_no_truth_value():
    with pytest.raises(gn.GraphnetError, match="where"):
        bool(X > 0)


def test_shared_value_is_copied_in_and_out():
    value = np.arange(3.0)
    v = gn.shared(value, name="v")
    value[0] = 100.0
    got = v.get_value()
    got[1] = 100.0
    np.testing.assert_array_equal(v.get_value(), [0.0, 1.0, 2.0])


def test_shared_scalar_keeps_a_scalar_shape():
    v = gn.shared(np.float64(1.5), name="scalar")
    assert v.shape == () and v.get_value().shape == ()


def test_placeholder_rejects_a_non_numeric_dtype():
    with pytest.raises(gn.DTypeError):
        gn.placeholder("s", (3,), "U10")
