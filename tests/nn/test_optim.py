"""Each optimizer's update rule against a NumPy implementation of its textbook formula.

The model is a tiny quadratic, ``cost = sum(0.5 * a * p^2 - c * p)`` over a
matrix and a vector parameter, whose gradient ``a * p - c`` NumPy computes
independently; three steps exercise the optimizer state (velocities, caches,
Adam's step counter).
"""
import numpy as np
import pytest

import graphnet as gn
from graphnet import optim
from graphnet.nn.schedules import HalveOnPlateau, StepDecay

A = {"W": np.array([[1.0, 2.0, 0.5], [3.0, 0.25, 1.5]]), "b": np.array([0.5, 2.0, 4.0])}
C = {"W": np.array([[0.3, -1.0, 2.0], [0.1, 0.7, -0.4]]), "b": np.array([1.0, -0.5, 0.2])}
START = {"W": np.array([[0.5, -0.2, 0.1], [1.0, 0.3, -0.7]]), "b": np.array([0.2, 0.4, -0.3])}
STEPS = 3


def numpy_grad(name, p):
    return A[name] * p - C[name]


# Textbook rules, written from the lecture slides / papers, one state dict per parameter.
def sgd(p, g, s, t, lr):
    return p - lr * g


def momentum(p, g, s, t, lr, mu=0.9):
    s["v"] = mu * s.get("v", 0.0) - lr * g
    return p + s["v"]


def nesterov(p, g, s, t, lr, mu=0.9):
    v_prev = s.get("v", 0.0)
    s["v"] = mu * v_prev - lr * g
    return p - mu * v_prev + (1 + mu) * s["v"]


def adagrad(p, g, s, t, lr, eps=1e-8):
    s["cache"] = s.get("cache", 0.0) + g ** 2
    return p - lr * g / (np.sqrt(s["cache"]) + eps)


def rmsprop(p, g, s, t, lr, rho=0.9, eps=1e-8):
    s["cache"] = rho * s.get("cache", 0.0) + (1 - rho) * g ** 2
    return p - lr * g / (np.sqrt(s["cache"]) + eps)


def adam(p, g, s, t, lr, b1=0.9, b2=0.999, eps=1e-8):
    s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
    s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g ** 2
    m_hat = s["m"] / (1 - b1 ** t)
    v_hat = s["v"] / (1 - b2 ** t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps)


CASES = {
    "sgd": (lambda: optim.SGD(0.1), sgd, 0.1),
    "momentum": (lambda: optim.Momentum(0.1, mu=0.9), momentum, 0.1),
    "nesterov": (lambda: optim.Nesterov(0.1, mu=0.9), nesterov, 0.1),
    "adagrad": (lambda: optim.AdaGrad(0.5), adagrad, 0.5),
    "rmsprop": (lambda: optim.RMSProp(0.01, rho=0.9), rmsprop, 0.01),
    "adam": (lambda: optim.Adam(0.05), adam, 0.05),
}


def graphnet_steps(optimizer, backend, dtype="float64", steps=STEPS):
    params = {name: gn.shared(START[name].astype(dtype), name=name) for name in START}
    cost = gn.constant(0.0, dtype=dtype)
    for name, p in params.items():
        cost = cost + gn.sum(0.5 * gn.constant(A[name].astype(dtype)) * p * p
                             - gn.constant(C[name].astype(dtype)) * p)
    step = gn.function([], cost, updates=optimizer.minimize(cost, list(params.values())), backend=backend)
    trajectory = []
    for _ in range(steps):
        step()
        trajectory.append({name: p.get_value() for name, p in params.items()})
    return trajectory


def numpy_steps(rule, lr, steps=STEPS):
    params = {name: value.copy() for name, value in START.items()}
    states = {name: {} for name in START}
    trajectory = []
    for t in range(1, steps + 1):
        params = {name: rule(p, numpy_grad(name, p), states[name], t, lr) for name, p in params.items()}
        trajectory.append({name: p.copy() for name, p in params.items()})
    return trajectory


@pytest.mark.parametrize("name", list(CASES))
def test_update_rule_matches_the_textbook_formula_for_three_steps(name):
    make, rule, lr = CASES[name]
    ours = graphnet_steps(make(), "reference")
    expected = numpy_steps(rule, lr)
    for step, (got, want) in enumerate(zip(ours, expected), start=1):
        for param in START:
            np.testing.assert_allclose(got[param], want[param], rtol=1e-6, atol=1e-9,
                                       err_msg=f"{name}, parameter {param}, step {step}")


@pytest.mark.parametrize("name", ["nesterov", "adam"])
def test_update_rules_agree_on_every_backend_in_float32(name, backend):
    make, rule, lr = CASES[name]
    ours = graphnet_steps(make(), backend, dtype="float32")
    expected = numpy_steps(rule, lr)
    for got, want in zip(ours, expected):
        for param in START:
            assert got[param].dtype == np.float32
            np.testing.assert_allclose(got[param], want[param], rtol=2e-5, atol=1e-6)


def test_changing_the_learning_rate_takes_effect_without_recompiling():
    optimizer = optim.SGD(0.1)
    p = gn.shared(np.array([1.0, 2.0], "float32"), name="p")
    cost = gn.sum(p * p) * 0.5          # gradient p
    step = gn.function([], cost, updates=optimizer.minimize(cost, [p]), backend="reference")
    step()
    np.testing.assert_allclose(p.get_value(), [0.9, 1.8], rtol=1e-6)
    optimizer.learning_rate = 0.5
    step()
    np.testing.assert_allclose(p.get_value(), [0.45, 0.9], rtol=1e-6)
    assert optimizer.learning_rate == pytest.approx(0.5)


def test_adam_counts_steps_in_one_shared_counter():
    optimizer = optim.Adam(0.01)
    p = gn.shared(np.ones(3, "float32"), name="p")
    q = gn.shared(np.ones((2, 2), "float32"), name="q")
    cost = gn.sum(p * p) + gn.sum(q * q)
    step = gn.function([], cost, updates=optimizer.minimize(cost, [p, q]), backend="reference")
    for _ in range(4):
        step()
    assert int(optimizer.t.get_value()) == 4
    assert len(optimizer.slots["m"]) == 2 and len(optimizer.slots["v"]) == 2


def test_weight_decay_skips_biases_by_default():
    W = gn.shared(np.array([[1.0, -2.0], [3.0, 0.5]], "float32"), name="W")
    b = gn.shared(np.array([10.0, 20.0], "float32"), name="b")
    penalty = optim.weight_decay(0.01, [W, b])
    with_biases = optim.weight_decay(0.01, [W, b], include_biases=True)
    grads = gn.grad(penalty, [W, b])
    got, got_all, dW, db = gn.function([], [penalty, with_biases] + grads, backend="reference")()
    assert got == pytest.approx(0.01 * (1 + 4 + 9 + 0.25))
    assert got_all == pytest.approx(0.01 * (1 + 4 + 9 + 0.25 + 100 + 400))
    np.testing.assert_allclose(dW, 2 * 0.01 * W.get_value(), rtol=1e-6)   # the lecture's 2 lambda W
    np.testing.assert_array_equal(db, 0)


def test_weight_decay_of_a_model_uses_its_regularized_params():
    from graphnet.nn import BatchNorm, Dense, Sequential
    model = Sequential([Dense(3, 4, "prelu", seed=0), BatchNorm(4), Dense(4, 2, "linear", seed=1)])
    penalty = gn.function([], optim.weight_decay(0.5, model), backend="reference")()
    weights = [layer.W.get_value() for layer in model.layers if hasattr(layer, "W")]
    assert penalty == pytest.approx(0.5 * sum((w.astype(np.float64) ** 2).sum() for w in weights), rel=1e-5)


def test_optimizer_by_name():
    assert isinstance(optim.get("Nesterov", 0.1), optim.Nesterov)
    with pytest.raises(gn.GraphnetError, match="unknown optimizer"):
        optim.get("lbfgs", 0.1)


# --------------------------------------------------------------------------- schedules
def test_halve_on_plateau_with_patience_0_halves_at_the_first_epoch_without_improvement():
    optimizer = optim.SGD(0.8)
    schedule = HalveOnPlateau(patience=0)
    rates = [schedule.step(optimizer, epoch, loss) for epoch, loss in enumerate([1.0, 0.9, 0.95, 0.8, 0.85, 0.9], 1)]
    assert rates == pytest.approx([0.8, 0.8, 0.4, 0.4, 0.2, 0.1])


def test_halve_on_plateau_with_patience_1_waits_one_more_epoch():
    optimizer = optim.SGD(0.8)
    schedule = HalveOnPlateau(patience=1)
    rates = [schedule.step(optimizer, epoch, loss) for epoch, loss in enumerate([1.0, 1.1, 0.9, 1.0, 1.0, 1.0], 1)]
    assert rates == pytest.approx([0.8, 0.8, 0.8, 0.8, 0.4, 0.4])


def test_step_decay_multiplies_the_rate_every_n_epochs():
    optimizer = optim.SGD(1.0)
    schedule = StepDecay(every=2, factor=0.1)
    rates = [schedule.step(optimizer, epoch) for epoch in range(1, 6)]
    assert rates == pytest.approx([1.0, 0.1, 0.1, 0.01, 0.01])
