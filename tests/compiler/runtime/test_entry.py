"""The compiled call path: a frame's generated entry runs every call after the frame's first."""
import numpy as np
import pytest

import graphnet as gn
from graphnet.errors import GraphnetError


@pytest.fixture(scope="module")
def sgd_step():
    rng = np.random.default_rng(3)
    W0 = (0.1 * rng.standard_normal((5, 3))).astype("float32")
    x = gn.placeholder("x_entry", (None, 5))
    y = gn.placeholder("y_entry", (None,), "int64")
    W, b = gn.shared(W0, name="W_entry"), gn.shared(np.zeros(3, "float32"), name="b_entry")
    loss = gn.mean(gn.nn.cross_entropy(gn.dot(x, W) + b, y))
    gW, gb = gn.grad(loss, [W, b])
    fn = gn.function([x, y], [loss, gn.softmax(gn.dot(x, W) + b)],
                     updates=[(W, W - 0.5 * gW), (b, b - 0.5 * gb)])
    reference = gn.function([x, y], [loss, gn.softmax(gn.dot(x, W) + b)],
                            updates=[(W, W - 0.5 * gW), (b, b - 0.5 * gb)], backend="reference")
    return fn, reference, W, b, W0


def _frame(fn):
    return next(iter(fn.program._frames.values()))[0]


def test_calls_after_a_frames_first_take_its_entry_and_agree_with_the_reference(sgd_step):
    fn, reference, W, b, W0 = sgd_step
    rng = np.random.default_rng(4)
    xb, yb = rng.standard_normal((4, 5)).astype("float32"), np.array([0, 2, 1, 2])
    states = []
    for run in (fn, reference):
        W.set_value(W0)
        b.set_value(np.zeros(3, "float32"))
        results = [run(xb, yb) for _ in range(4)]
        states.append((results, W.get_value(), b.get_value()))
    assert _frame(fn).entry is not None and "def run(feeds)" in _frame(fn).entry.source
    (got, W_got, b_got), (want, W_want, b_want) = states
    for (loss, probs), (loss_ref, probs_ref) in zip(got, want):
        np.testing.assert_allclose(loss, loss_ref, rtol=1e-5)
        np.testing.assert_allclose(probs, probs_ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(W_got, W_want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(b_got, b_want, rtol=1e-5, atol=1e-7)


def test_outputs_of_the_entry_are_the_callers_own_arrays(sgd_step):
    fn, _, W, b, W0 = sgd_step
    xb, yb = np.ones((4, 5), "float32"), np.array([0, 1, 2, 0])
    first = fn(xb, yb)
    second = fn(xb, yb)
    assert _frame(fn).entry is not None
    assert not np.shares_memory(first[1], second[1])
    before = second[1].copy()
    fn(xb, yb)
    np.testing.assert_array_equal(second[1], before)


def test_a_bad_label_through_the_entry_raises_before_any_update(sgd_step):
    fn, _, W, b, _ = sgd_step
    xb = np.ones((4, 5), "float32")
    fn(xb, np.array([0, 1, 2, 0]))
    fn(xb, np.array([0, 1, 2, 0]))
    assert _frame(fn).entry is not None
    W_before, b_before, version = W.get_value(), b.get_value(), W.version
    with pytest.raises(GraphnetError, match="y_entry"):
        fn(xb, np.array([0, 1, 3, 0]))
    np.testing.assert_array_equal(W.get_value(), W_before)
    np.testing.assert_array_equal(b.get_value(), b_before)
    assert W.version == version


def test_a_bad_index_on_a_later_call_names_the_indexed_input():
    x = gn.placeholder("x_host_entry", (None, 3))
    k = gn.placeholder("k_host_entry", (), "int64")
    fn = gn.function([x, k], gn.sum(x[gn.arange(k)], axis=0))
    xb = np.ones((4, 3), "float32")
    for _ in range(2):
        np.testing.assert_allclose(fn(xb, np.int64(2)), [2, 2, 2])
    with pytest.raises(GraphnetError, match="x_host_entry"):
        fn(xb, np.int64(9))
