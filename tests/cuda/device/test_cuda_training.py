"""A training step on the device: the MLP of the lectures with batch norm and
dropout agrees with the CPU backend; shared variables stay on the device."""
import numpy as np
import pytest

import graphnet as gn
from graphnet import optim

BATCH = np.random.default_rng(5).standard_normal((6, 5)).astype("float32")
LABELS = np.array([0, 1, 2, 3, 1, 2])


def build_mlp(optimizer="adam", seed=0):
    """Dense -> batch norm -> ReLU -> dropout -> dense -> softmax cross-entropy, with its updates."""
    rng = np.random.default_rng(seed)
    x, y = gn.placeholder("x", (None, 5)), gn.placeholder("y", (None,), "int64")
    W1 = gn.shared((rng.standard_normal((5, 8)) * 0.5).astype("float32"), name="W1")
    gamma, beta = gn.shared(np.ones(8, "float32"), name="gamma"), gn.shared(np.zeros(8, "float32"), name="beta")
    W2 = gn.shared((rng.standard_normal((8, 4)) * 0.5).astype("float32"), name="W2")
    b2 = gn.shared(np.zeros(4, "float32"), name="b2")
    hidden = gn.nn.dropout(gn.relu(gn.nn.batch_norm(gn.dot(x, W1), gamma, beta)), 0.5, seed=42)
    logits = gn.dot(hidden, W2) + b2
    loss = gn.nn.cross_entropy(logits, y) + 1e-3 * gn.nn.l2(W1, W2)
    params = [W1, gamma, beta, W2, b2]
    updates = optim.get(optimizer, 0.05).updates(params, gn.grad(loss, params))
    return dict(x=x, y=y, params=params, loss=loss, hidden=hidden, logits=logits, updates=updates)


def train(backend, steps=3, optimizer="adam"):
    model = build_mlp(optimizer)
    step = gn.function([model["x"], model["y"]], [model["loss"], model["hidden"]], updates=model["updates"],
                       training=True, backend=backend)
    history = [step(BATCH, LABELS) for _ in range(steps)]
    state = [shared.get_value() for shared, _ in step.fgraph.updates]
    return step, history, state


@pytest.fixture(scope="module")
def cpu_and_cuda():
    return train("cpu"), train("cuda")


def test_losses_and_every_updated_variable_match_the_cpu_backend(cpu_and_cuda):
    (_, cpu_history, cpu_state), (step, cuda_history, cuda_state) = cpu_and_cuda
    np.testing.assert_allclose([h[0] for h in cuda_history], [h[0] for h in cpu_history], rtol=1e-5)
    names = [shared.describe() for shared, _ in step.fgraph.updates]
    assert {"running_mean", "running_var", "W1", "b2"} <= set(names)
    for name, got, expected in zip(names, cuda_state, cpu_state):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=name)


def test_dropout_masks_are_identical_to_the_cpu_backend(cpu_and_cuda):
    (_, cpu_history, _), (_, cuda_history, _) = cpu_and_cuda
    for (_, cpu_hidden), (_, cuda_hidden) in zip(cpu_history, cuda_history):
        np.testing.assert_array_equal(cuda_hidden == 0, cpu_hidden == 0)
        np.testing.assert_allclose(cuda_hidden, cpu_hidden, rtol=1e-5, atol=1e-6)


def test_the_whole_step_runs_on_the_device(cpu_and_cuda):
    _, (step, _, _) = cpu_and_cuda
    assert {k.device for k in step.kernels} == {"gpu"}
    assert any(k.kind == "gemm" and k.ops[0] == "dot" and len(k.ops) > 1 for k in step.kernels), \
        "some product carries a fused epilogue"


def test_only_feeds_fetches_and_updated_values_cross_the_bus(cpu_and_cuda):
    _, (step, _, _) = cpu_and_cuda
    before = step.program.transfers
    step(BATCH, LABELS)
    after = step.program.transfers
    assert after["uploads"] - before["uploads"] == 2, "x and y only: parameters stay on the device"
    assert after["downloads"] - before["downloads"] == 2 + len(step.fgraph.updates)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "rmsprop"])
def test_other_optimizers_match_the_reference(optimizer):
    _, expected, expected_state = train("reference", steps=2, optimizer=optimizer)
    _, got, state = train("cuda", steps=2, optimizer=optimizer)
    np.testing.assert_allclose([g[0] for g in got], [e[0] for e in expected], rtol=1e-5)
    for a, b in zip(state, expected_state):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_set_value_reaches_the_device_and_get_value_sees_updates():
    x = gn.placeholder("x", (None, 3))
    W = gn.shared(np.ones((3, 2), "float32"), name="W")
    forward = gn.function([x], gn.dot(x, W), backend="cuda")
    xb = np.eye(3, dtype="float32")
    np.testing.assert_array_equal(forward(xb), np.ones((3, 2)))
    W.set_value(np.full((3, 2), 2.0, "float32"))
    np.testing.assert_array_equal(forward(xb), np.full((3, 2), 2.0))
    halve = gn.function([], [], updates=[(W, W * 0.5)], backend="cuda")
    halve()
    np.testing.assert_array_equal(W.get_value(), np.ones((3, 2)))
    uploads = forward.program.transfers["uploads"]
    np.testing.assert_array_equal(forward(xb), np.ones((3, 2)))
    assert forward.program.transfers["uploads"] == uploads + 1, "W's new value came from the device copy"


def test_a_cpu_update_is_seen_by_the_next_cuda_call():
    W = gn.shared(np.zeros(4, "float32"), name="W")
    bump_on_cpu = gn.function([], [], updates=[(W, W + 1)], backend="cpu")
    bump_on_cuda = gn.function([], [], updates=[(W, W + 10)], backend="cuda")
    bump_on_cuda()
    bump_on_cpu()
    bump_on_cuda()
    np.testing.assert_array_equal(W.get_value(), np.full(4, 21.0))


def test_updates_that_swap_two_variables_read_the_old_values():
    a, b = gn.shared(np.arange(3.0), name="a"), gn.shared(np.arange(3.0) + 10, name="b")
    swap = gn.function([], [], updates=[(a, b), (b, a)], backend="cuda")
    swap()
    swap()
    swap()
    np.testing.assert_array_equal(a.get_value(), np.arange(3.0) + 10)
    np.testing.assert_array_equal(b.get_value(), np.arange(3.0))


def test_an_update_the_graph_does_not_read_is_written_on_the_device():
    x = gn.placeholder("x", (3,))
    W = gn.shared(np.zeros(3, "float32"), name="W")
    store = gn.function([x], [], updates=[(W, gn.exp(x) * 2)], backend="cuda")
    for value in (np.zeros(3, "float32"), np.ones(3, "float32")):
        store(value)
        np.testing.assert_allclose(W.get_value(), np.exp(value) * 2, rtol=1e-6)


def test_check_numerics_names_the_node_and_changes_nothing():
    x = gn.placeholder("x", (None, 2))
    W = gn.shared(np.ones(2, "float32"), name="W")
    step = gn.function([x], gn.sum(gn.log(x)), updates=[(W, W * 2)], backend="cuda", check_numerics=True)
    with pytest.raises(gn.NumericsError, match="log"):
        step(-np.ones((3, 2), "float32"))
    np.testing.assert_array_equal(W.get_value(), np.ones(2))
    step(np.ones((3, 2), "float32"))
    np.testing.assert_array_equal(W.get_value(), np.full(2, 2.0))
