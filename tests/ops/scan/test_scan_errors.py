"""Bad scans fail with a graphnet error naming the scan, the output and the user's line."""
from contextlib import contextmanager

import numpy as np
import pytest

import graphnet as gn
from graphnet.errors import DTypeError, GraphnetError, ShapeError

HERE = "test_scan_errors.py:"
X = gn.placeholder("x", (None, 3))


@contextmanager
def raises(kind, *fragments):
    """pytest.raises(kind), and the message holds every fragment (the scan's name, this file's line...)."""
    with pytest.raises(kind) as info:
        yield info
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in: {info.value}"


def test_a_state_whose_shape_changes_is_refused_when_the_graph_is_built():
    with raises(ShapeError, "'grow'", "output 0", "shape (6,)", HERE):
        gn.scan(lambda x_t, h: gn.ops.concatenate([h, x_t]), sequences=X, outputs_info=X[0], name="grow")


def test_a_state_whose_dtype_changes_is_refused():
    with raises(DTypeError, "'widen'", "float64", "float32", HERE):
        gn.scan(lambda x_t, h: gn.cast(h + x_t, "float64"), sequences=X, outputs_info=X[0], name="widen")


def test_a_state_whose_shape_changes_at_run_time_names_the_step():
    h0 = gn.placeholder("h0", (None,))
    hs, _ = gn.scan(lambda h: h[1:], outputs_info=h0, n_steps=2, name="shrink")
    fn = gn.function([h0], hs, backend="reference")
    with raises(ShapeError, "'shrink'", "output 0", "step 0", HERE):
        fn(np.ones(3, "float32"))


def test_a_stacked_output_whose_shape_changes_between_steps():
    lengths = gn.placeholder("n", (None,), "int64")
    out, _ = gn.scan(lambda x_t, k: x_t[:k], sequences=[X, lengths], name="ragged")
    fn = gn.function([X, lengths], out, backend="reference")
    with raises(ShapeError, "'ragged'", "step 1", "the first step", HERE):
        fn(np.ones((2, 3), "float32"), np.array([1, 2]))


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_a_sequence_shorter_than_n_steps(backend):
    k = gn.placeholder("k", (), "int64")
    out, _ = gn.scan(lambda x_t, h: h + x_t, sequences=X, outputs_info=X[0], n_steps=k, name="short")
    fn = gn.function([X, k], out, backend=backend)
    with raises(ShapeError, "'short'", "x[t]", "has 3 steps", "n_steps is 4", HERE):
        fn(np.ones((3, 3), "float32"), np.int64(4))


def test_taps_of_a_fed_back_output_must_be_negative():
    with raises(GraphnetError, "'future'", "taps [0]", HERE):
        gn.scan(lambda x_t, h: h + x_t, sequences=X, outputs_info=dict(initial=X[0], taps=[0]), name="future")


def test_an_initial_value_too_short_for_its_taps():
    with raises(ShapeError, "taps [-3, -1]", "3 values", HERE):
        gn.scan(lambda x_t, a, b: a + b + x_t, sequences=X,
                outputs_info=dict(initial=gn.placeholder("i", (2, 3)), taps=[-3, -1]), name="lagging")


def test_a_sequence_too_short_for_its_taps():
    with raises(ShapeError, "taps [-2, 2]", HERE):
        gn.scan(lambda a, b: a + b, sequences=dict(input=gn.placeholder("s", (4, 3)), taps=[-2, 2]))


def test_fn_returning_another_number_of_outputs_than_outputs_info():
    with raises(GraphnetError, "returned 1 output(s)", "describes 2", HERE):
        gn.scan(lambda x_t, h, c: h + x_t, sequences=X, outputs_info=[X[0], X[0]], name="count")


def test_a_negative_n_steps_and_a_scan_without_a_length():
    with raises(ShapeError, "negative", HERE):
        gn.scan(lambda h: h, outputs_info=X[0], n_steps=-1)
    with raises(GraphnetError, "give n_steps", HERE):
        gn.scan(lambda h: h, outputs_info=X[0])
    k = gn.placeholder("k", (), "int64")
    out, _ = gn.scan(lambda h: h * 2, outputs_info=X[0], n_steps=k, name="backwards_count")
    with raises(ShapeError, "'backwards_count'", "n_steps is -2", HERE):
        gn.function([X, k], out, backend="reference")(np.ones((1, 3), "float32"), np.int64(-2))


def test_a_body_error_names_the_users_line_inside_the_body():
    idx = gn.placeholder("i", (None,), "int64")
    out, _ = gn.scan(lambda i: X[i], sequences=idx, name="gather")
    with pytest.raises(GraphnetError, match="out of range") as info:
        gn.function([X, idx], out, backend="reference")(np.ones((2, 3), "float32"), np.array([0, 5]))
    assert HERE in str(info.value)
