"""``gn.check_grad``: finite differences in float64 catch a wrong gradient rule and pass every right one.

The oracle is independent of the symbolic gradient: central differences of the
cost, evaluated op by op with each op's NumPy ``perform``. A user-defined op
with a planted wrong gradient must fail; every built-in op family must pass,
also when the network it sits in was declared in float32.
"""
import numpy as np
import pytest

import graphnet as gn
from graphnet.graph.gradcheck import check_grad
from graphnet.graph import Apply, Op, TensorType, as_variable


class Cube(Op):
    """A user-defined op: ``x ** 3`` with its gradient ``3 x^2``."""

    def make_node(self, x):
        x = as_variable(x)
        return Apply(self, [x], [TensorType(x.dtype, x.shape)])

    def perform(self, inputs):
        return [np.asarray(inputs[0]) ** 3]

    def infer_shape(self, node, shapes):
        return [shapes[0]]

    def grad(self, inputs, outputs, output_grads):
        x = inputs[0]
        return [output_grads[0] * 3.0 * x * x]


class CubeWithPlantedBug(Cube):
    """The same forward pass, but the gradient forgot the power rule's factor: ``2 x^2``."""

    def grad(self, inputs, outputs, output_grads):
        x = inputs[0]
        return [output_grads[0] * 2.0 * x * x]


RNG = np.random.default_rng(0)
X = RNG.normal(size=(4, 3))
WEIGHTS = RNG.normal(size=(4, 3))


def _cost_of(build, shape=(4, 3), dtype="float64"):
    x = gn.placeholder("x", shape, dtype)
    out = build(x)
    weights = np.random.default_rng(1).normal(size=out.shape)
    return x, gn.sum(out * gn.constant(weights.astype(out.dtype)))


def test_a_planted_wrong_gradient_in_a_user_defined_op_is_found():
    x, cost = _cost_of(CubeWithPlantedBug())
    report = check_grad(cost, x, {x: X})
    assert not report.passed
    assert report["x"].relative_error > 0.1
    # The worst entry's analytic value is 2/3 of the numeric one: the missing factor shows.
    index, analytic, numeric, _ = report["x"].worst[0]
    assert analytic == pytest.approx(numeric * 2 / 3, rel=1e-6)
    assert "FAIL" in str(report) and "worst entries of x" in str(report)


def test_a_correct_user_defined_op_passes():
    x, cost = _cost_of(Cube())
    report = check_grad(cost, x, {x: X})
    assert report.passed, str(report)
    assert report.max_relative_error < 1e-8


def test_a_wrong_op_deep_inside_a_float32_network_is_found_for_the_parameters_below_it():
    x = gn.placeholder("x", (None, 3), "float32")
    y = gn.placeholder("y", (None,), "int64")
    W1 = gn.shared(RNG.normal(size=(3, 5)).astype("float32"), name="W1")
    W2 = gn.shared(RNG.normal(size=(5, 2)).astype("float32"), name="W2")
    hidden = CubeWithPlantedBug()(gn.tanh(gn.dot(x, W1)))
    loss = gn.nn.cross_entropy(gn.dot(hidden, W2), y)
    report = check_grad(loss, [W1, W2], {x: X[:, :3].astype("float32"), y: np.array([0, 1, 1, 0])})
    assert report["W2"].passed       # above the bug: its gradient does not go through the cube's rule
    assert not report["W1"].passed   # below it: wrong


# ---------------------------------------------------------------- every built-in op family
POSITIVE = np.abs(X) + 0.5
DISTINCT = (RNG.permutation(12).reshape(4, 3) - 5.5) / 3.0   # no ties, nothing at 0

FAMILIES = {
    "elementwise arithmetic": (lambda x: (x * x - x / (x * x + 1.0) + 2.0) ** 2.0, X),
    "elementwise math": (lambda x: gn.exp(x) + gn.log(x) + gn.sqrt(x) + gn.softplus(x), POSITIVE),
    "activations": (lambda x: gn.sigmoid(x) + gn.tanh(x) + gn.relu(x) + gn.leaky_relu(x, 0.1)
                    + gn.elu(x) + gn.abs(x), DISTINCT),
    "maximum, minimum, where": (lambda x: gn.maximum(x, 0.1 * x * x) + gn.minimum(x, -x)
                                + gn.where(x > 0, x * 3.0, x * x), DISTINCT),
    "prelu and maxout": (lambda x: gn.prelu(x, gn.constant(np.array([0.1, 0.2, 0.3])))
                         + gn.sum(gn.maxout(x, 3), keepdims=True), DISTINCT),
    "cast": (lambda x: gn.cast(gn.cast(x, "float32") * 2.0, "float64"), X),
    "reductions": (lambda x: gn.sum(x, axis=0) + gn.mean(x, axis=0) + gn.max(x, axis=0) + gn.min(x, axis=0)
                   + gn.var(x, axis=0), DISTINCT),
    "moments": (lambda x: gn.moments(x, axis=1)[1] + gn.moments(x, axis=1)[0], DISTINCT),
    "dot": (lambda x: gn.dot(x, gn.constant(RNG.normal(size=(3, 2)))) + gn.dot(x, gn.dot(gn.transpose(x), x))[:, :2]
            + gn.expand_dims(gn.dot(x, gn.constant(RNG.normal(size=3))), 1), X),
    "shape": (lambda x: gn.squeeze(gn.expand_dims(gn.reshape(gn.transpose(x), (2, 6)), 0), 0), X),
    "softmax family": (lambda x: gn.softmax(x) + gn.log_softmax(x, axis=0), X),
    "basic indexing": (lambda x: x[1:3] * x[0] + x[-1, 1], X),
    "advanced indexing": (lambda x: x[np.array([0, 2, 2, 3])] * 2.0 + x[:, 2:][np.array([1, 1, 0, 0])], X),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_built_in_op_family_passes(family):
    build, value = FAMILIES[family]
    x, cost = _cost_of(build)
    report = check_grad(cost, x, {x: value})
    assert report.passed, str(report)


def test_cross_entropy_and_weight_decay_of_a_float32_mlp_pass():
    model = gn.nn.mlp([5, 4, 3], activation="tanh", seed=0)
    g = model.classifier()
    feed = {g.x: RNG.normal(size=(6, 5)).astype("float32"), g.y: np.array([0, 1, 2, 2, 1, 0])}
    report = check_grad(model.training_objective(weight_decay=1e-2), model.params, feed)
    assert report.passed, str(report)
    assert report.max_relative_error < 1e-7   # float64 copy: no float32 noise in the comparison


def test_batch_norm_and_dropout_in_training_mode_pass():
    model = gn.nn.mlp([5, 4, 3], activation="relu", batch_norm=True, dropout=0.3, seed=2)
    g = model.classifier()
    feed = {"x": RNG.normal(size=(8, 5)).astype("float32"), "y": np.arange(8) % 3}
    step_before = [v.get_value() for v in model.state]
    report = check_grad(g.loss, model.params, feed, training=True)
    assert report.passed, str(report)
    # Checking never touches the network's state (running statistics).
    for before, var in zip(step_before, model.state):
        np.testing.assert_array_equal(before, var.get_value())


def test_max_entries_samples_that_many_entries_per_variable():
    W = gn.shared(RNG.normal(size=(10, 10)), name="W")
    report = check_grad(gn.sum(gn.tanh(W) * 3.0), W, max_entries=7)
    assert report["W"].checked == 7 and report.passed


def test_a_missing_feed_is_named():
    x, cost = _cost_of(Cube())
    with pytest.raises(gn.FeedError, match="placeholder x"):
        check_grad(cost, x, {})


def test_an_intermediate_variable_cannot_be_perturbed():
    x, cost = _cost_of(Cube())
    with pytest.raises(gn.GradientError, match="not a placeholder or shared"):
        check_grad(cost, x * 2.0, {x: X})


def test_check_grad_is_exported_at_top_level():
    assert gn.check_grad is check_grad
