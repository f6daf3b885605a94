"""Bad input raises an error in the user's terms, and a failed call changes no state.

Build-time shape errors name the op, both shapes and the user's file:line;
feed errors name the placeholder; a bad label is an error, not an
out-of-bounds read. After every failed call, every shared variable holds
exactly the value it held before.
"""
from pathlib import Path

import numpy as np
import pytest

import graphnet as gn
from graphnet.graph import SharedVariable, graph_inputs


def raising_line(excinfo):
    """The line of this file at which the exception left the test function."""
    frames = [entry for entry in excinfo.traceback if Path(str(entry.path)) == Path(__file__)]
    return frames[-1].lineno + 1  # pytest's line numbers are 0-based


# ------------------------------------------------------------ build-time shapes
A34 = gn.placeholder("a", (3, 4), "float32")
B5 = gn.placeholder("b5", (5,), "float32")
M52 = gn.placeholder("m", (5, 2), "float32")
LABELS5 = gn.placeholder("labels5", (5,), "int64")

MISMATCHES = {
    "add": (lambda: A34 + B5, ["(3, 4)", "(5,)"]),
    "maximum": (lambda: gn.maximum(A34, B5), ["(3, 4)", "(5,)"]),
    "dot": (lambda: gn.dot(A34, M52), ["(3, 4)", "(5, 2)"]),
    "reshape": (lambda: gn.reshape(A34, (5,)), ["(3, 4)", "(5,)"]),
    "cross_entropy": (lambda: gn.nn.cross_entropy(A34, LABELS5), ["(3, 4)", "(5,)"]),
}


@pytest.mark.parametrize("op", list(MISMATCHES))
def test_build_time_shape_mismatch_names_op_shapes_and_user_line(op):
    build, shapes = MISMATCHES[op]
    with pytest.raises(gn.ShapeError) as excinfo:
        build()
    message = str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)
    assert op in message
    for shape in shapes:
        assert shape in message, f"{shape} not in {message!r}"
    assert f"test_bad_input.py:{build.__code__.co_firstlineno}" in message  # the lambda's line above


def test_shape_error_points_at_the_line_that_built_the_node():
    with pytest.raises(gn.ShapeError) as excinfo:
        A34 * B5
    assert f"{Path(__file__).name}:{raising_line(excinfo)}" in str(excinfo.value)


# ------------------------------------------------------------------ the model
# A training step whose state includes default updates (batch-norm statistics).
X = gn.placeholder("x", (None, 4), "float32")
Y = gn.placeholder("y", (None,), "int64")
GAMMA = gn.shared(np.ones(4, "float32"), name="gamma")
BETA = gn.shared(np.zeros(4, "float32"), name="beta")
W = gn.shared(np.random.default_rng(0).normal(size=(4, 3)).astype("float32"), name="W")
B = gn.shared(np.zeros(3, "float32"), name="b")
PARAMS = [GAMMA, BETA, W, B]
LOSS = gn.nn.cross_entropy(gn.dot(gn.nn.batch_norm(X, GAMMA, BETA), W) + B, Y)
SGD = [(p, p - 0.1 * g) for p, g in zip(PARAMS, gn.grad(LOSS, PARAMS))]
STATE = [v for v in graph_inputs([LOSS]) if isinstance(v, SharedVariable)]
XB = np.random.default_rng(1).normal(size=(4, 4)).astype("float32")
YB = np.array([0, 2, 1, 2], np.int64)


@pytest.fixture
def state_is_unchanged():
    """Checks, after the test, that every shared variable of the model holds its old value."""
    assert len(STATE) == 6  # four parameters and the two running statistics
    before = [v.get_value() for v in STATE]
    yield
    for var, old in zip(STATE, before):
        assert np.array_equal(var.get_value(), old), f"{var.name} changed in a failed call"


def train_step(backend, compiled, **options):
    return compiled(LOSS, [X, Y], backend, updates=SGD, training=True, **options)


BAD_FEEDS = {
    "x_of_wrong_rank": ({"x": XB[0]}, "x"),
    "x_of_wrong_width": ({"x": XB[:, :3]}, "x"),
    "x_as_float64": ({"x": XB.astype(np.float64)}, "x"),
    "y_as_float_with_nan": ({"y": np.array([0.0, np.nan, 1.0, 2.0])}, "y"),
    "y_as_float": ({"y": YB.astype(np.float64)}, "y"),
    "y_of_wrong_rank": ({"y": YB[:, None]}, "y"),
}


@pytest.mark.parametrize("case", list(BAD_FEEDS))
def test_bad_feed_raises_feed_error_naming_the_placeholder(case, backend, compiled, state_is_unchanged):
    bad, name = BAD_FEEDS[case]
    feeds = {"x": XB, "y": YB, **bad}
    with pytest.raises(gn.FeedError, match=rf"\b{name}\b"):
        train_step(backend, compiled)(feeds["x"], feeds["y"])


def test_float64_feed_is_accepted_with_allow_input_downcast(backend, compiled):
    step = compiled(LOSS, [X, Y], backend, allow_input_downcast=True)
    assert np.isfinite(step(XB.astype(np.float64), YB))


def test_missing_feed_names_the_missing_placeholder(backend, compiled, state_is_unchanged):
    with pytest.raises(gn.FeedError, match=r"\by\b"):
        train_step(backend, compiled)(XB)


def test_session_missing_feed_names_the_missing_placeholder(backend, state_is_unchanged):
    sess = gn.Session(backend=backend)
    with pytest.raises(gn.FeedError, match=r"\by\b"):
        sess.run(LOSS, feed_dict={X: XB}, updates=SGD, training=True)


@pytest.mark.parametrize("labels", [[0, 3, 1, 2], [0, -1, 1, 2], [0, 1, 1, 1000]], ids=["classes", "negative", "huge"])
def test_label_outside_the_classes_raises_instead_of_reading_out_of_bounds(labels, backend, compiled,
                                                                            state_is_unchanged):
    with pytest.raises(gn.GraphnetError, match="label") as excinfo:
        train_step(backend, compiled)(XB, np.array(labels, np.int64))
    assert not isinstance(excinfo.value, IndexError)


LOSS_LINE = next(i for i, line in enumerate(Path(__file__).read_text().splitlines(), 1)
                 if line.startswith("LOSS = gn.nn.cross_entropy("))


@pytest.mark.parametrize("labels, bad, position", [([0, 3, 1, 2], 3, 1), ([0, 1, -1, 2], -1, 2)],
                         ids=["classes", "negative"])
def test_a_label_error_names_the_fed_input_and_the_line_in_the_same_words_on_every_backend(
        labels, bad, position, backend, compiled, state_is_unchanged):
    with pytest.raises(gn.FeedError) as excinfo:
        train_step(backend, compiled)(XB, np.array(labels, np.int64))
    assert str(excinfo.value) == (f"input y of cross_entropy ({__file__}:{LOSS_LINE}): "
                                  f"label {bad} at position {position} is outside [0, 3)")


def test_inconsistent_batch_sizes_of_x_and_y_raise(backend, compiled, state_is_unchanged):
    with pytest.raises(gn.GraphnetError, match="batch|labels|rows"):
        train_step(backend, compiled)(XB, YB[:3])


def test_set_value_with_the_wrong_shape_raises_shape_error_and_keeps_the_value():
    w = gn.shared(np.ones((4, 3), "float32"), name="w")
    with pytest.raises(gn.ShapeError, match="w"):
        w.set_value(np.zeros((3, 4), "float32"))
    np.testing.assert_array_equal(w.get_value(), np.ones((4, 3)))


def test_set_value_with_floats_for_an_integer_variable_raises_dtype_error():
    counter = gn.shared(np.zeros(2, np.int64), name="counter")
    with pytest.raises(gn.DTypeError):
        counter.set_value(np.array([0.5, 1.5]))
    np.testing.assert_array_equal(counter.get_value(), [0, 0])


def test_successful_step_after_failures_still_trains(backend, compiled):
    step = train_step(backend, compiled)
    with pytest.raises(gn.GraphnetError):
        step(XB, np.array([0, 1, 2, 7], np.int64))
    before = W.get_value()
    assert np.isfinite(step(XB, YB))
    assert not np.array_equal(W.get_value(), before)


# ------------------------------------------------- graphs built apart, sessions apart
# Variables belong to no session (a Session is a compile cache), so mixing graphs is
# legal; what cannot work is a graph whose placeholders are not all fed, or a feed that
# is not an array for a placeholder. Each is refused naming the variable and its line.
OTHER_X = gn.placeholder("other_x", (None, 4), "float32")  # a second model's input
OTHER_LOSS = gn.sum(OTHER_X * 2.0)


def test_two_sessions_of_different_backends_share_one_parameter_value():
    total = gn.shared(np.zeros(3, "float32"), name="total")
    step = [(total, total + 1.0)]
    for k, sess in enumerate([gn.Session(backend="reference"), gn.Session(backend="cpu")] * 2):
        assert np.array_equal(sess.run(total * 1.0, updates=step), np.full(3, k, "float32"))
    np.testing.assert_array_equal(total.get_value(), np.full(3, 4.0))


def test_fetching_across_graphs_names_the_unfed_placeholder_and_its_line(backend, state_is_unchanged):
    sess = gn.Session(backend=backend)
    with pytest.raises(gn.FeedError, match=r"other_x \(built at .*test_bad_input.py:\d+\)"):
        sess.run(LOSS + OTHER_LOSS, {X: XB, Y: YB}, updates=SGD, training=True)


def test_feeding_a_symbolic_variable_points_to_givens(backend, state_is_unchanged):
    sess = gn.Session(backend=backend)
    with pytest.raises(gn.FeedError, match=r"input x: fed the symbolic variable other_x .*givens=\{x: other_x\}"):
        sess.run(LOSS, {X: OTHER_X, Y: YB}, updates=SGD, training=True)


@pytest.mark.parametrize("key", ["W", "intermediate"])
def test_feeding_a_parameter_or_an_intermediate_is_refused(key, backend, state_is_unchanged):
    var = W if key == "W" else gn.dot(X, W)
    value = np.zeros(var.type.shape if key == "W" else (4, 3), "float32")
    with pytest.raises(gn.FeedError, match="is not a placeholder"):
        gn.Session(backend=backend).run(LOSS, {X: XB, Y: YB, var: value}, updates=SGD, training=True)
