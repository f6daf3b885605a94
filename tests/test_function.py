"""gn.function and gn.Session: outputs before updates, updates all at once, modes and state."""
import numpy as np
import pytest

import graphnet as gn
from graphnet.graph import SharedVariable, graph_inputs

RNG = np.random.default_rng(3)

# ------------------------------------------------------------ the issue's example
# Softmax regression 784 -> 10 with weight decay, as the issue writes it.
x = gn.placeholder("x", (None, 784), "float32")
y = gn.placeholder("y", (None,), "int64")
W0 = RNG.normal(size=(784, 10)).astype("float32") * 0.01
W = gn.shared(W0, name="W")
b = gn.shared(np.zeros(10, "float32"), name="b")
loss = gn.nn.cross_entropy(gn.dot(x, W) + b, y) + 1e-4 * gn.nn.l2(W)
gW, gb = gn.grad(loss, [W, b])
SGD = [(W, W - 0.1 * gW), (b, b - 0.1 * gb)]
XB = (RNG.random((8, 784)) * 0.05).astype("float32")  # small enough for a learning rate of 0.1
YB = RNG.integers(0, 10, 8)


@pytest.fixture
def fresh_parameters():
    W.set_value(W0)
    b.set_value(np.zeros(10, "float32"))


def test_issue_example_step_decreases_the_loss(backend, compiled, fresh_parameters):
    step = compiled(loss, [x, y], backend, updates=SGD)
    losses = [float(step(XB, YB)) for _ in range(3)]
    assert losses[0] > losses[1] > losses[2]


def test_step_returns_the_loss_computed_before_the_updates(backend, compiled, fresh_parameters):
    evaluate = compiled([loss, gW, gb], [x, y], backend)
    step = compiled(loss, [x, y], backend, updates=SGD)
    loss_before, gW_before, gb_before = evaluate(XB, YB)
    returned = step(XB, YB)
    assert returned.shape == () and returned.dtype == np.float32
    np.testing.assert_allclose(returned, loss_before, rtol=1e-6)
    np.testing.assert_allclose(W.get_value(), W0 - 0.1 * gW_before, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(b.get_value(), -0.1 * gb_before, rtol=1e-5, atol=1e-7)


def test_session_runs_the_issue_example(backend, fresh_parameters):
    sess = gn.Session(backend=backend)
    value, grad = sess.run([loss, gW], feed_dict={x: XB, y: YB})
    assert value.shape == () and grad.shape == (784, 10)
    np.testing.assert_array_equal(W.get_value(), W0)  # no updates were asked for


# ------------------------------------------------------------------- updates
def test_updates_are_applied_after_outputs_are_computed(backend, compiled):
    counter = gn.shared(np.float64(0.0), name="counter")
    tick = compiled(counter * 1.0, [], backend, updates=[(counter, counter + 1.0)])
    assert [float(tick()) for _ in range(3)] == [0.0, 1.0, 2.0]
    assert float(counter.get_value()) == 3.0


def test_updates_are_applied_simultaneously(backend, compiled):
    a = gn.shared(np.array([1.0, 2.0]), name="a")
    c = gn.shared(np.array([3.0, 4.0]), name="c")
    swap = compiled(a + c, [], backend, updates=[(a, c), (c, a)])
    swap()
    np.testing.assert_array_equal(a.get_value(), [3.0, 4.0])
    np.testing.assert_array_equal(c.get_value(), [1.0, 2.0])


# ------------------------------------------------------------------- outputs
V = gn.placeholder("v", (3,), "float64")


def test_single_output_returns_one_array(backend, compiled):
    out = compiled(V * 2.0, [V], backend)(np.arange(3.0))
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, [0.0, 2.0, 4.0])


def test_list_of_outputs_returns_a_list(backend, compiled):
    out = compiled([V * 2.0], [V], backend)(np.arange(3.0))
    assert isinstance(out, list) and len(out) == 1
    np.testing.assert_array_equal(out[0], [0.0, 2.0, 4.0])


def test_scalar_placeholder_gives_a_scalar_output(backend, compiled):
    s = gn.placeholder("s", (), "float64")
    out = compiled(s * 2.0, [s], backend)(np.float64(1.5))
    assert out.shape == () and float(out) == 3.0


def test_inputs_may_be_fed_by_name(backend, compiled):
    fn = compiled(V + 1.0, [V], backend)
    np.testing.assert_array_equal(fn(v=np.zeros(3)), np.ones(3))


# ------------------------------------------------------------------- session
def test_session_reuses_the_compiled_function_for_the_same_signature(backend):
    sess = gn.Session(backend=backend)
    double = V * 2.0
    sess.run(double, {V: np.arange(3.0)})
    sess.run(double, {V: np.ones(3)})
    assert len(sess._compiled) == 1
    sess.run([double, V + 1.0], {V: np.ones(3)})
    assert len(sess._compiled) == 2


def test_session_single_fetch_returns_an_array_and_a_list_returns_a_list(backend):
    sess = gn.Session(backend=backend)
    assert isinstance(sess.run(V * 2.0, {V: np.ones(3)}), np.ndarray)
    assert isinstance(sess.run([V * 2.0], {V: np.ones(3)}), list)


def test_session_run_applies_updates(backend):
    total = gn.shared(np.zeros(3), name="total")
    fetch, accumulate = total * 1.0, [(total, total + V)]
    sess = gn.Session(backend=backend)
    before = sess.run(fetch, {V: np.ones(3)}, updates=accumulate)
    sess.run(fetch, {V: np.ones(3)}, updates=accumulate)
    np.testing.assert_array_equal(before, np.zeros(3))
    np.testing.assert_array_equal(total.get_value(), [2.0, 2.0, 2.0])
    assert len(sess._compiled) == 1


def test_session_run_training_selects_the_training_mode(backend):
    dropped = gn.nn.dropout(V, 0.5, seed=99)
    sess = gn.Session(backend=backend)
    ones = np.ones(3)
    np.testing.assert_array_equal(sess.run(dropped, {V: ones}), ones)
    trained = np.stack([sess.run(dropped, {V: ones}, training=True) for _ in range(8)])
    assert set(np.unique(trained)) <= {0.0, 2.0} and (trained == 0).any()
    assert len(sess._compiled) == 2


# ---------------------------------------------------------------- batch norm
BN_X = gn.placeholder("bn_x", (None, 3), "float64")
BN_GAMMA = gn.shared(np.array([1.0, 2.0, 0.5]), name="gamma")
BN_BETA = gn.shared(np.array([0.0, -1.0, 3.0]), name="beta")
EPS = 1e-5
XS = RNG.normal(loc=2.0, scale=3.0, size=(6, 3))


def _batch_norm_graph():
    """A fresh batch norm with explicit running statistics (mean 0, variance 1)."""
    running_mean = gn.shared(np.zeros(3), name="running_mean")
    running_var = gn.shared(np.ones(3), name="running_var")
    out = gn.nn.batch_norm(BN_X, BN_GAMMA, BN_BETA, eps=EPS, running_mean=running_mean, running_var=running_var)
    return out, running_mean, running_var


def _normalized(x, mean, var):
    return (x - mean) / np.sqrt(var + EPS) * BN_GAMMA.get_value() + BN_BETA.get_value()


def test_batch_norm_training_normalizes_with_batch_mean_and_biased_variance(backend, run):
    out, _, _ = _batch_norm_graph()
    got = run(out, {BN_X: XS}, backend, training=True)
    np.testing.assert_allclose(got, _normalized(XS, XS.mean(0), XS.var(0)), rtol=1e-10, atol=1e-12)


def test_batch_norm_training_updates_running_statistics_pytorch_style(backend, run):
    out, running_mean, running_var = _batch_norm_graph()
    run(out, {BN_X: XS}, backend, training=True)
    np.testing.assert_allclose(running_mean.get_value(), 0.9 * 0.0 + 0.1 * XS.mean(0), rtol=1e-12)
    np.testing.assert_allclose(running_var.get_value(), 0.9 * 1.0 + 0.1 * XS.var(0, ddof=1), rtol=1e-12)
    run(out, {BN_X: XS[:4]}, backend, training=True)
    np.testing.assert_allclose(running_mean.get_value(), 0.9 * (0.1 * XS.mean(0)) + 0.1 * XS[:4].mean(0), rtol=1e-12)


def test_batch_norm_eval_mode_uses_running_statistics_and_changes_no_state(backend, run):
    out, running_mean, running_var = _batch_norm_graph()
    run(out, {BN_X: XS}, backend, training=True)
    mean, var = running_mean.get_value(), running_var.get_value()
    got = run(out, {BN_X: XS[:2]}, backend)
    np.testing.assert_allclose(got, _normalized(XS[:2], mean, var), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(running_mean.get_value(), mean)
    np.testing.assert_array_equal(running_var.get_value(), var)


def test_batch_norm_creates_running_statistics_updated_only_in_training(backend, run):
    out = gn.nn.batch_norm(BN_X, BN_GAMMA, BN_BETA)
    state = {v.name: v for v in graph_inputs([out]) if isinstance(v, SharedVariable) and v.name.startswith("running")}
    assert set(state) == {"running_mean", "running_var"}
    run(out, {BN_X: XS}, backend)
    np.testing.assert_array_equal(state["running_mean"].get_value(), np.zeros(3))
    run(out, {BN_X: XS}, backend, training=True)
    np.testing.assert_allclose(state["running_mean"].get_value(), 0.1 * XS.mean(0), rtol=1e-12)


# ------------------------------------------------------------------- dropout
DROP_X = gn.placeholder("drop_x", (40, 50), "float32")
RATE = 0.3
DROPPED = gn.nn.dropout(DROP_X, RATE, seed=2024)
ONES = np.ones((40, 50), np.float32)


def test_dropout_is_the_identity_in_eval_mode(backend, run):
    values = RNG.normal(size=(40, 50)).astype(np.float32)
    np.testing.assert_array_equal(run(DROPPED, {DROP_X: values}, backend), values)


def test_dropout_zeroes_about_rate_of_units_and_scales_the_rest_in_training(backend, run):
    out = run(DROPPED, {DROP_X: ONES}, backend, training=True)
    dropped_fraction = np.mean(out == 0)
    assert abs(dropped_fraction - RATE) < 0.04  # 2000 units: four standard deviations
    np.testing.assert_allclose(out[out != 0], 1 / (1 - RATE), rtol=1e-6)


def test_dropout_draws_a_new_mask_on_each_training_call(backend, run):
    first = run(DROPPED, {DROP_X: ONES}, backend, training=True)
    second = run(DROPPED, {DROP_X: ONES}, backend, training=True)
    assert not np.array_equal(first == 0, second == 0)


def test_a_feed_in_any_memory_layout_gives_the_same_result(backend):
    # A C-contiguous array of the right dtype goes straight through; any other is converted first.
    x = gn.placeholder("x_layout", (None, 3))
    fn = gn.function([x], gn.sum(x * np.arange(3, dtype="float32"), axis=1), backend=backend)
    c = np.arange(12, dtype="float32").reshape(4, 3)
    expected = c @ np.arange(3, dtype="float32")
    for fed in (c, np.asfortranarray(c), c[::-1][::-1], c.astype("float16"), c.tolist()):
        np.testing.assert_allclose(fn(fed), expected)
