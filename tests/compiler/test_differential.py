"""The compiled backend agrees with the NumPy reference, fused and unfused."""
import numpy as np
import pytest

import graphnet as gn


def build_mlp(seed):
    """A 2-hidden-layer MLP with batch norm, dropout, L2 and momentum: the lectures' toolbox."""
    rng = np.random.default_rng(seed)
    x = gn.placeholder("x", (None, 12))
    y = gn.placeholder("y", (None,), "int64")
    params = {
        "W1": rng.standard_normal((12, 16)) * 0.4, "g1": np.ones(16), "b1": np.zeros(16),
        "W2": rng.standard_normal((16, 8)) * 0.4, "c2": np.zeros(8),
        "W3": rng.standard_normal((8, 5)) * 0.4, "c3": np.zeros(5),
    }
    p = {k: gn.shared(v.astype("float32"), name=k) for k, v in params.items()}
    h = gn.relu(gn.nn.batch_norm(gn.dot(x, p["W1"]), p["g1"], p["b1"]))
    h = gn.nn.dropout(h, 0.3, seed=7)
    h = gn.tanh(gn.dot(h, p["W2"]) + p["c2"])
    logits = gn.dot(h, p["W3"]) + p["c3"]
    loss = gn.nn.cross_entropy(logits, y) + 1e-3 * gn.nn.l2(p["W1"], p["W2"], p["W3"])
    names = list(p)
    grads = gn.grad(loss, [p[k] for k in names])
    updates = []
    for k, g in zip(names, grads):
        v = gn.shared(np.zeros_like(p[k].get_value()), name="v_" + k)
        v_new = 0.9 * v - 0.05 * g
        updates += [(v, v_new), (p[k], p[k] + v_new)]
    predict = gn.argmax(logits, axis=1)
    return x, y, p, loss, updates, predict


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((24, 12)).astype("float32")
    yb = rng.integers(0, 5, 24)
    results = {}
    for backend, fuse in [("reference", True), ("cpu", True), ("cpu", False)]:
        x, y, p, loss, updates, predict = build_mlp(seed=1)
        step = gn.function([x, y], loss, updates=updates, backend=backend, fuse=fuse, training=True)
        evaluate = gn.function([x], predict, backend=backend, fuse=fuse)
        losses = [float(step(xb, yb)) for _ in range(6)]
        results[(backend, fuse)] = (losses, {k: v.get_value() for k, v in p.items()}, evaluate(xb))
    return results


@pytest.mark.parametrize("variant", [("cpu", True), ("cpu", False)], ids=["fused", "unfused"])
def test_training_steps_match_reference(trained, variant):
    ref_losses, ref_params, ref_pred = trained[("reference", True)]
    losses, params, pred = trained[variant]
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    for name, value in params.items():
        np.testing.assert_allclose(value, ref_params[name], rtol=1e-4, atol=1e-5, err_msg=name)
    np.testing.assert_array_equal(pred, ref_pred)


def test_loss_decreases_while_training(trained):
    losses = trained[("cpu", True)][0]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("dtype,rtol", [("float32", 1e-5), ("float64", 1e-10)])
def test_reductions_over_every_axis_pattern_match_numpy(dtype, rtol):
    x = gn.placeholder("x", (None, 3, 5), dtype)
    outs = [gn.sum(x), gn.sum(x, axis=0), gn.sum(x, axis=-1, keepdims=True), gn.max(x, axis=(0, 1)),
            gn.mean(x, axis=1), gn.var(x, axis=0), gn.sum(gn.exp(x) * 2.0, axis=(0, 1))]
    xb = np.random.default_rng(3).standard_normal((4, 3, 5)).astype(dtype)
    expected = gn.function([x], outs, backend="reference")(xb)
    for fuse in (True, False):
        got = gn.function([x], outs, backend="cpu", fuse=fuse)(xb)
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)


def test_buffers_are_reused_across_calls_and_parameters_updated_in_place():
    x = gn.placeholder("x", (None, 4))
    W = gn.shared(np.ones((4, 3), "float32"), name="W")
    loss = gn.mean(gn.dot(x, W) ** 2)
    step = gn.function([x], loss, updates=[(W, W - 0.01 * gn.grad(loss, W))], backend="cpu")
    before = W.get_value(copy=False)
    xb = np.ones((5, 4), "float32")
    first = step(xb)
    step(xb)
    assert W.get_value(copy=False) is before, "W was not updated in place"
    assert len(step.program._frames) == 1
    assert step(xb) < first
