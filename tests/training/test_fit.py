"""The training loop: learning, early stopping that restores the best network,
the plateau schedule inside fit, checkpoints, and the backend fallback.

To make validation get worse on purpose, the validation set is the training
inputs with the wrong labels: the better the model fits the training labels,
the worse its validation loss.
"""
import importlib.util

import numpy as np
import pytest

import graphnet as gn
from graphnet import data, optim, train
from graphnet.nn import mlp
from graphnet.nn.schedules import HalveOnPlateau
from graphnet.training.fit import evaluate, fit

X, Y = data.synthetic_classification(240, 6, 3, seed=0, separation=3.0)
TRAIN, VALID = (X[:180], Y[:180]), (X[180:], Y[180:])
MISLEADING_VALID = (X[:60], (Y[:60] + 1) % 3)


def small_model(seed=0):
    return mlp([6, 16, 3], batch_norm=True, seed=seed)


def test_fit_learns_separable_blobs_and_records_every_epoch():
    history = fit(small_model(), TRAIN, VALID, optimizer=optim.Adam(0.01), epochs=5, batch_size=32,
                  backend="reference", quiet=True)
    assert history.epoch == [1, 2, 3, 4, 5]
    for series in (history.train_loss, history.train_accuracy, history.val_loss, history.val_accuracy,
                   history.learning_rate, history.seconds):
        assert len(series) == 5
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.val_accuracy[history.best_epoch - 1] > 0.9
    assert history.backend == "reference"


def test_fit_accepts_splits_and_is_reproducible_with_a_seed():
    splits = data.Splits(TRAIN, VALID, VALID)
    runs = [fit(small_model(), splits, optimizer=optim.SGD(0.1), epochs=2, batch_size=32, seed=5,
                backend="reference", quiet=True) for _ in range(2)]
    assert runs[0].train_loss == runs[1].train_loss
    assert runs[0].val_loss == runs[1].val_loss


def test_early_stopping_restores_the_best_validation_parameters():
    model = small_model()
    snapshots = {}
    history = fit(model, TRAIN, MISLEADING_VALID, optimizer=optim.Adam(0.02), epochs=30, batch_size=32,
                  patience=2, backend="reference", quiet=True,
                  callback=lambda h: snapshots.__setitem__(h.epoch[-1], model.state_dict()))
    best = history.best_epoch
    assert best == int(np.argmin(history.val_loss)) + 1
    assert history.stopped_early and history.epoch[-1] == best + 2   # the look-ahead of 2 epochs
    assert history.val_loss[-1] > history.val_loss[best - 1]          # the last network is worse
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, snapshots[best][name], err_msg=name)
    val_loss, _ = evaluate(model.eval_function(), *MISLEADING_VALID)
    assert val_loss == pytest.approx(history.val_loss[best - 1], rel=1e-5)


def test_early_stopping_can_monitor_validation_accuracy():
    history = fit(small_model(), TRAIN, VALID, optimizer=optim.Adam(0.01), epochs=4, batch_size=32,
                  monitor="val_accuracy", backend="reference", quiet=True)
    assert history.val_accuracy[history.best_epoch - 1] == max(history.val_accuracy)


def test_plateau_schedule_halves_the_rate_when_validation_stops_improving():
    history = fit(small_model(), TRAIN, MISLEADING_VALID, optimizer=optim.SGD(0.2), epochs=5, batch_size=32,
                  schedule=HalveOnPlateau(patience=0), backend="reference", quiet=True)
    expected, best = [0.2], np.inf
    for loss in history.val_loss[:-1]:
        improved, best = loss < best, min(best, loss)
        expected.append(expected[-1] if improved else expected[-1] / 2)
    assert history.learning_rate == pytest.approx(expected)
    assert history.learning_rate[-1] < 0.2   # validation got worse, so the rate was halved


def test_checkpoint_of_fit_round_trips_exactly(tmp_path):
    path = tmp_path / "best.npz"
    model = small_model(seed=0)
    history = fit(model, TRAIN, VALID, optimizer=optim.Adam(0.01), epochs=3, batch_size=32,
                  checkpoint_path=path, backend="reference", quiet=True)
    restored = small_model(seed=1)
    metadata = restored.load(path)
    assert metadata["epoch"] == history.best_epoch
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(restored.state_dict()[name], value, err_msg=name)
    np.testing.assert_array_equal(restored.predict_function()(X), model.predict_function()(X))


def test_a_truncated_checkpoint_is_refused(tmp_path):
    path = tmp_path / "model.npz"
    model = small_model()
    model.save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(gn.CheckpointError):
        model.load(path)


def test_patience_without_validation_data_is_an_error():
    with pytest.raises(gn.GraphnetError, match="validation"):
        fit(small_model(), TRAIN, patience=2, backend="reference", quiet=True)


def test_without_validation_the_last_epoch_is_kept():
    history = fit(small_model(), TRAIN, epochs=2, batch_size=32, backend="reference", quiet=True)
    assert history.best_epoch == 2 and np.isnan(history.val_loss).all()


def test_weight_decay_shrinks_the_weights():
    norms = []
    for decay in (0.0, 0.1):
        model = small_model()
        fit(model, TRAIN, VALID, optimizer=optim.SGD(0.1), epochs=3, batch_size=32, weight_decay=decay,
            backend="reference", quiet=True)
        norms.append(sum(float((w.get_value() ** 2).sum()) for w in model.regularized_params))
    assert norms[1] < norms[0]


def test_cpu_backend_falls_back_to_reference_until_it_is_built(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "graphnet.compiler.pipeline" else real(name, *a))
    assert train.resolve_backend("cpu") == "reference"
    assert train.resolve_backend("reference") == "reference"


_DIGITS_RUNS = {}


def digits_history(backend):
    """Two epochs of a small digits MLP with batch norm and dropout (cached per backend)."""
    if backend not in _DIGITS_RUNS:
        splits = data.split(*data.load_digits(), seed=0)
        scaler = data.Standardizer().fit(splits.train[0])
        train_set = (scaler.transform(splits.train[0][:256]), splits.train[1][:256])
        model = mlp([64, 32, 10], batch_norm=True, dropout=0.2, seed=0)
        _DIGITS_RUNS[backend] = fit(model, train_set, epochs=2, batch_size=64, backend=backend, quiet=True)
    return _DIGITS_RUNS[backend]


def test_every_backend_trains_like_the_reference(backend):
    """The compiled training step learns what the NumPy oracle learns (dropout masks included)."""
    history, oracle = digits_history(backend), digits_history("reference")
    assert history.backend == backend
    assert history.train_loss[1] < history.train_loss[0]
    np.testing.assert_allclose(history.train_loss, oracle.train_loss, rtol=1e-3)
    np.testing.assert_allclose(history.train_accuracy, oracle.train_accuracy, atol=1 / 256 + 1e-9)


# --------------------------------------------------------------------------- a non-finite loss stops training

def fit_on_data_that_turns_nan(after_epoch, **kwargs):
    """fit on a copy of TRAIN whose inputs all become NaN after epoch ``after_epoch`` (0: from the start).

    Returns the model, the history, the warnings, and each epoch's parameters as the callback saw them.
    """
    X_train = TRAIN[0].copy()
    if after_epoch == 0:
        X_train[:] = np.nan
    states = {0: None}
    model = small_model()
    states[0] = model.state_dict()

    def spoil_the_data(history):
        states[history.epoch[-1]] = model.state_dict()
        if history.epoch[-1] == after_epoch:
            X_train[:] = np.nan        # fit reads this array (np.asarray does not copy it)

    with pytest.warns(RuntimeWarning) as caught:
        history = fit(model, (X_train, TRAIN[1]), VALID, optimizer=optim.Adam(0.01), epochs=6, batch_size=32,
                      backend="reference", quiet=True, callback=spoil_the_data, **kwargs)
    return model, history, [str(w.message) for w in caught], states


def test_a_nan_in_the_data_stops_fit_at_the_first_batch_with_a_message_saying_what_to_try():
    _, history, messages, _ = fit_on_data_that_turns_nan(after_epoch=0)
    assert history.stopped_early and history.epoch == []
    assert history.stop_reason == "the loss was nan in epoch 1, batch 1"
    (message,) = messages
    assert message.startswith("fit: the training loss was nan in epoch 1, batch 1; stopped and restored "
                              "the initial parameters.")
    assert "inputs hold NaN or Inf" in message and "check_numerics=True" in message


def test_a_nan_before_any_epoch_ends_restores_the_initial_parameters():
    model, _, _, states = fit_on_data_that_turns_nan(after_epoch=0)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, states[0][name], err_msg=name)


def test_a_nan_later_stops_in_that_epoch_and_restores_the_best_epoch():
    model, history, messages, states = fit_on_data_that_turns_nan(after_epoch=2)
    assert history.epoch == [1, 2] and history.stop_reason == "the loss was nan in epoch 3, batch 1"
    assert f"restored the parameters of epoch {history.best_epoch}" in messages[0]
    for name, value in model.state_dict().items():
        assert np.isfinite(value).all(), name
        np.testing.assert_array_equal(value, states[history.best_epoch][name], err_msg=name)


def test_a_rate_too_high_with_finite_data_suggests_a_lower_rate():
    model = mlp([6, 16, 3], seed=0)
    with pytest.warns(RuntimeWarning, match=r"try a lower learning rate \(it was 1e\+30\)"):
        history = fit(model, TRAIN, VALID, optimizer=optim.SGD(1e30), epochs=3, batch_size=32,
                      backend="reference", quiet=True)
    assert history.stopped_early and history.stop_reason.startswith("the loss was")


def test_check_numerics_names_the_node_that_makes_the_nan():
    X_train = np.full_like(TRAIN[0], np.nan)
    with pytest.raises(gn.NumericsError, match=r"check_numerics: NaN in the output of dot"):
        fit(small_model(), (X_train, TRAIN[1]), VALID, epochs=1, batch_size=32, backend="reference",
            quiet=True, check_numerics=True)
