"""Softmax, log-softmax and softmax cross-entropy: one block per row."""
import numpy as np
import pytest

import graphnet as gn

RNG = np.random.default_rng(2)


def logits(rows, cols):
    return (RNG.standard_normal((rows, cols)) * 30).astype("float32")   # large: the max shift matters


def test_softmax_and_log_softmax_match_reference(matches_reference):
    x = gn.placeholder("x", (None, 7))
    fn = matches_reference([gn.softmax(x), gn.log_softmax(x)], {x: logits(5, 7)}, rtol=1e-5, atol=1e-6)
    assert sorted(k.name.split("_", 1)[1] for k in fn.kernels) == ["log_softmax", "softmax"]


def test_cross_entropy_and_its_gradient_match_reference(matches_reference):
    x, y = gn.placeholder("x", (None, 6)), gn.placeholder("y", (None,), "int64")
    loss = gn.nn.cross_entropy(x, y)
    fn = matches_reference([loss, gn.grad(loss, x)], {x: logits(5, 6), y: RNG.integers(0, 6, 5)}, rtol=1e-5)
    names = [k.name for k in fn.kernels]
    # one kernel computes both (rowwise_join): each row's max and exponentials once
    assert any(n.endswith("softmax_cross_entropy_and_grad") for n in names)


def test_cross_entropy_alone_and_its_gradient_alone_run_their_own_templates(matches_reference):
    x, y = gn.placeholder("x", (None, 6)), gn.placeholder("y", (None,), "int64")
    loss = gn.nn.cross_entropy(x, y)
    feeds = {x: logits(5, 6), y: RNG.integers(0, 6, 5)}
    alone = matches_reference([loss], feeds, rtol=1e-5)
    assert any(k.name.endswith("_softmax_cross_entropy") for k in alone.kernels)
    grad_only = matches_reference([gn.grad(gn.sum(loss), x)], feeds, rtol=1e-5)
    assert any(k.name.endswith("_softmax_cross_entropy_grad") for k in grad_only.kernels)


def test_softmax_over_the_first_axis_falls_back_to_the_host(matches_reference):
    x = gn.placeholder("x", (4, 3))
    fn = matches_reference([gn.softmax(x, axis=0)], {x: logits(4, 3)})
    assert [k.device for k in fn.kernels] == ["host"]


def test_labels_out_of_range_are_refused_before_any_kernel_runs():
    x, y = gn.placeholder("x", (None, 3)), gn.placeholder("y", (None,), "int64")
    W = gn.shared(np.eye(3, dtype="float32"), name="W")
    loss = gn.nn.cross_entropy(gn.dot(x, W), y)
    step = gn.function([x, y], loss, updates=[(W, W - 0.1 * gn.grad(loss, W))], backend="cuda")
    with pytest.raises(gn.FeedError, match="outside"):
        step(np.ones((2, 3), "float32"), np.array([0, 3]))
    np.testing.assert_array_equal(W.get_value(), np.eye(3))
    step(np.ones((2, 3), "float32"), np.array([0, 2]))
    assert not np.array_equal(W.get_value(), np.eye(3))
