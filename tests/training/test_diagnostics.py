"""Sanity checks and training statistics: what the lectures tell a practitioner to look at.

Oracles: ``log(classes)`` for the initial loss; NumPy statistics of the layer
outputs for the monitor's activation statistics; the parameter change of the
real training step for its update/weight ratio.
"""
import math

import numpy as np
import pytest

import graphnet as gn
from graphnet import data, diagnostics, init, optim, report
from graphnet.training.diagnostics import Monitor, initial_loss_check, overfit_check
from graphnet.graph import Apply, Op, TensorType, as_variable
from graphnet.nn import Dense, Layer, Sequential, mlp
from graphnet.training.fit import fit


def _digits():
    X, y = data.load_digits()
    splits = data.split(X, y, seed=0)
    scaler = data.Standardizer().fit(splits.train[0])
    return data.Splits(*[(scaler.transform(Xs), ys) for Xs, ys in splits])


DIGITS = _digits()
X_TRAIN, Y_TRAIN = DIGITS.train


# ---------------------------------------------------------------- initial loss
def test_initial_loss_of_a_small_initialization_is_log_of_the_classes():
    model = mlp([64, 32, 10], activation="tanh", init=init.normal(std=0.01), seed=0)
    check = initial_loss_check(model, X_TRAIN, Y_TRAIN)
    assert check.passed and check.loss == pytest.approx(math.log(10), abs=0.01)


def test_initial_loss_fails_for_weights_of_scale_10_and_rises_with_weight_decay():
    big = mlp([64, 32, 10], activation="tanh", init=init.normal(std=10.0), seed=0)
    assert not initial_loss_check(big, X_TRAIN, Y_TRAIN).passed
    check = initial_loss_check(mlp([64, 32, 10], seed=0), X_TRAIN, Y_TRAIN, weight_decay=1e-2)
    assert check.passed and check.loss_with_decay > check.loss


# ---------------------------------------------------------------- overfitting 50 examples
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_a_healthy_network_overfits_50_examples(activation):
    model = mlp([64, 64, 64, 10], activation=activation, dropout=0.5, seed=0)
    before = model.state_dict()
    check = overfit_check(model, X_TRAIN, Y_TRAIN, n=50)
    assert check.passed and check.accuracy == 1.0 and check.suspects == []
    for name, value in model.state_dict().items():   # the model is given back as it was
        np.testing.assert_array_equal(value, before[name], err_msg=name)


def test_weights_of_scale_10_fail_and_saturation_is_the_suspect():
    model = mlp([64, 64, 64, 10], activation="tanh", init=init.normal(std=10.0), seed=0)
    check = overfit_check(model, X_TRAIN, Y_TRAIN, n=50, steps=150)
    assert not check.passed
    assert "saturated initialization" in check.suspect_names()
    assert "wrong gradients" not in check.suspect_names()
    assert check.before["layers"]["dense0"]["saturated"] > 0.9


def test_all_zero_weights_are_reported_as_zero_gradients():
    model = mlp([64, 32, 32, 10], activation="tanh", init="zeros", seed=0)
    check = overfit_check(model, X_TRAIN, Y_TRAIN, n=50, steps=60)
    assert not check.passed
    assert "zero or vanishing gradients" in check.suspect_names()


def test_a_huge_learning_rate_is_reported():
    model = mlp([64, 32, 10], activation="relu", seed=0)
    check = overfit_check(model, X_TRAIN, Y_TRAIN, n=50, steps=60, optimizer=optim.SGD(1e4))
    assert not check.passed
    assert "learning rate too large" in check.suspect_names()


def test_unnormalized_input_is_reported():
    raw = X_TRAIN * 50.0 + 200.0
    model = mlp([64, 32, 10], activation="sigmoid", seed=0)
    check = overfit_check(model, raw, Y_TRAIN, n=50, steps=60, optimizer=optim.SGD(0.1))
    assert not check.passed
    assert "unnormalized input" in check.suspect_names()


class _TanhWithWrongSign(Op):
    """A user-defined activation whose gradient has the wrong sign."""

    def make_node(self, x):
        x = as_variable(x)
        return Apply(self, [x], [TensorType(x.dtype, x.shape)])

    def perform(self, inputs):
        return [np.tanh(inputs[0])]

    def infer_shape(self, node, shapes):
        return [shapes[0]]

    def grad(self, inputs, outputs, g):
        return [-(g[0] * (1.0 - outputs[0] * outputs[0]))]


class _WrongTanh(Layer):
    kind = "wrongtanh"

    def build(self, x):
        return _TanhWithWrongSign()(x)


def test_a_wrong_gradient_in_a_custom_layer_is_reported():
    model = Sequential([Dense(64, 32, "linear", seed=0), _WrongTanh(), Dense(32, 10, "linear", seed=1)])
    check = overfit_check(model, X_TRAIN, Y_TRAIN, n=50, steps=60)
    assert not check.passed
    assert "wrong gradients" in check.suspect_names()


# ---------------------------------------------------------------- the monitor
PROBE_X, PROBE_Y = DIGITS.valid[0][:64], DIGITS.valid[1][:64]


def _layer_outputs(model, X):
    return dict(report.layer_outputs(model, X))


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
def test_activation_statistics_match_numpy_on_the_layer_outputs(activation):
    model = mlp([64, 16, 16, 10], activation=activation, seed=3)
    record = Monitor(model, PROBE_X, PROBE_Y, training=False, backend="reference").record()
    outputs = _layer_outputs(model, PROBE_X)
    assert set(record["layers"]) == {"dense0", "dense1"}
    for name, stats in record["layers"].items():
        h = outputs[name].astype(np.float64)
        assert stats["mean"] == pytest.approx(h.mean(), abs=1e-5)
        assert stats["std"] == pytest.approx(h.std(), rel=1e-4)
        counts, _ = np.histogram(h, bins=stats["edges"])
        assert stats["histogram"].sum() == h.size
        assert np.abs(stats["histogram"] - counts).sum() <= 2   # float32 edges vs float64 edges
        if activation == "tanh":
            assert stats["saturated"] == pytest.approx(np.mean(np.abs(h) > 0.99))
        if activation == "sigmoid":
            assert stats["saturated"] == pytest.approx(np.mean((h < 0.01) | (h > 0.99)))
        if activation == "relu":
            assert stats["dead"] == pytest.approx(np.mean(h.max(axis=0) <= 0))


def test_dead_relus_are_counted_and_warned_about():
    model = mlp([64, 16, 10], activation="relu", seed=0)
    model.layers[0].b.set_value(np.full(16, -100.0, "float32"))
    monitor = Monitor(model, PROBE_X, PROBE_Y, backend="reference")
    record = monitor.record()
    assert record["layers"]["dense0"]["dead"] == 1.0
    assert any("dead" in w for w in monitor.warnings())


@pytest.mark.parametrize("make_optimizer", [lambda: optim.SGD(0.05), lambda: optim.Adam(1e-3)])
def test_update_ratio_is_the_change_the_next_training_step_makes(make_optimizer):
    model = mlp([64, 16, 10], activation="tanh", dropout=0.2, seed=1)
    optimizer = make_optimizer()
    step = model.train_function(optimizer, backend="reference")
    step(PROBE_X, PROBE_Y)                                   # the optimizer has state now
    record = Monitor(model, PROBE_X, PROBE_Y, optimizer=optimizer, backend="reference").record()
    before = {p.name: p.get_value().astype(np.float64) for p in model.params}
    step(PROBE_X, PROBE_Y)
    for p in model.params:
        change = np.linalg.norm(p.get_value() - before[p.name]) / np.linalg.norm(before[p.name])
        assert record["params"][p.name]["update_ratio"] == pytest.approx(change, rel=1e-3), p.name


def test_gradient_norms_match_the_symbolic_gradient():
    model = mlp([64, 16, 10], activation="relu", seed=2)
    record = Monitor(model, PROBE_X, PROBE_Y, weight_decay=1e-3, backend="reference").record()
    g = model.classifier()
    grads = gn.function([g.x, g.y], gn.grad(model.training_objective(1e-3), model.params),
                        training=True, backend="reference")(PROBE_X, PROBE_Y)
    for p, dp in zip(model.params, grads):
        assert record["params"][p.name]["grad_norm"] == pytest.approx(np.linalg.norm(dp), rel=1e-4)


def test_recording_changes_no_state():
    model = mlp([64, 16, 10], activation="relu", batch_norm=True, dropout=0.3, seed=0)
    optimizer = optim.Adam(1e-3)
    model.train_function(optimizer, backend="reference")(PROBE_X, PROBE_Y)
    before = model.state_dict()
    monitor = Monitor(model, PROBE_X, PROBE_Y, optimizer=optimizer, backend="reference")
    monitor.record()
    monitor.record()
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


def test_monitor_as_fit_callback_records_every_n_epochs_and_plots(tmp_path):
    model = mlp([64, 16, 10], activation="tanh", seed=0)
    optimizer = optim.Adam(1e-3)
    monitor = Monitor(model, PROBE_X, PROBE_Y, optimizer=optimizer, every=2, backend="reference")
    small = (X_TRAIN[:256], Y_TRAIN[:256])
    history = fit(model, small, DIGITS.valid, optimizer=optimizer, epochs=4, batch_size=64,
                  backend="reference", quiet=True, callback=monitor)
    assert [r["step"] for r in monitor.records] == [2, 4]
    assert all("update_ratio" in s for s in monitor.records[-1]["params"].values())
    assert "dense0" in monitor.summary()
    files = diagnostics.write_report(tmp_path, history, model, DIGITS.valid[0][:100], monitor=monitor)
    for name in ("training_curves", "activations", "monitor_layers", "monitor_histograms", "monitor_updates"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000, name
    assert set(files) >= {"monitor_layers", "summary"}


def test_the_statistics_compile_into_fused_kernels_with_the_same_values(backend):
    model = mlp([64, 16, 16, 10], activation="tanh", seed=5)
    optimizer = optim.Momentum(0.01)
    model.train_function(optimizer, backend="reference")(PROBE_X, PROBE_Y)
    reference = Monitor(model, PROBE_X, PROBE_Y, optimizer=optimizer, backend="reference").record()
    monitor = Monitor(model, PROBE_X, PROBE_Y, optimizer=optimizer, backend=backend)
    record = monitor.record()
    for name, stats in reference["layers"].items():
        for stat in ("mean", "std", "saturated"):
            assert record["layers"][name][stat] == pytest.approx(stats[stat], rel=1e-4, abs=1e-6), (name, stat)
        np.testing.assert_array_equal(record["layers"][name]["histogram"], stats["histogram"])
    for name, stats in reference["params"].items():
        assert record["params"][name]["update_ratio"] == pytest.approx(stats["update_ratio"], rel=1e-4)
    if backend == "cpu":   # the reductions ride along in the forward kernels: far fewer kernels than nodes
        assert len(monitor.statistics().function.kernels) < len(monitor.statistics().function.fgraph.nodes()) / 2
