"""Greedy layer-wise denoising autoencoders, then fine-tuning.

Oracles: the autoencoder's loss against the formula computed with NumPy; the
reconstruction loss falls with training; pre-training writes into the MLP's own
parameters; with ``pretrain=False`` the call is exactly ``fit`` of the same MLP.
"""
import numpy as np
import pytest

import graphnet as gn
from graphnet import data, optim
from graphnet.errors import GraphnetError
from graphnet.nn import mlp
from graphnet.training.pretrain import denoising_autoencoder, pretrain_and_finetune, pretrain_layerwise

X_BLOBS, Y_BLOBS = data.synthetic_classification(240, 12, 3, seed=0, separation=3.0)
UNIT = 1.0 / (1.0 + np.exp(-X_BLOBS))            # inputs in (0, 1): the cross-entropy reconstruction


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


@pytest.mark.parametrize("tied", [True, False])
def test_autoencoder_loss_is_the_cross_entropy_of_the_reconstruction_without_noise(tied):
    model = mlp([12, 5, 3], activation="sigmoid", seed=0)
    dense = model.layers[0]
    x, loss, params = denoising_autoencoder(dense, noise=0.0, tied=tied, inputs_in_unit_interval=True)
    assert len(params) == (3 if tied else 4)
    value = gn.function([x], loss, backend="reference")(UNIT[:7])
    W, b, c = dense.W.get_value(), dense.b.get_value(), params[2].get_value()
    decoder = W.T if tied else params[3].get_value()
    r = _sigmoid(_sigmoid(UNIT[:7] @ W + b) @ decoder + c)
    expected = -np.mean(np.sum(UNIT[:7] * np.log(r) + (1 - UNIT[:7]) * np.log(1 - r), axis=1))
    assert float(value) == pytest.approx(expected, rel=1e-4)


def test_squared_error_for_inputs_outside_the_unit_interval():
    dense = mlp([12, 5, 3], activation="tanh", seed=0).layers[0]
    x, loss, _ = denoising_autoencoder(dense, noise=0.0, tied=True, inputs_in_unit_interval=False)
    W, b = dense.W.get_value(), dense.b.get_value()
    r = np.tanh(X_BLOBS[:5] @ W + b) @ W.T
    expected = np.mean(0.5 * np.sum((r - X_BLOBS[:5]) ** 2, axis=1))
    assert float(gn.function([x], loss, backend="reference")(X_BLOBS[:5])) == pytest.approx(expected, rel=1e-4)


def test_masking_noise_zeroes_about_the_given_fraction_of_inputs_without_rescaling():
    dense = mlp([12, 5, 3], activation="relu", seed=0).layers[0]
    x, loss, _ = denoising_autoencoder(dense, noise=0.3)
    # The corrupted input is the first argument of the encoder's dot product.
    dot = next(node for node in gn.graph.ancestors_toposort([loss]) if node.op.name == "dot")
    corrupted = dot.inputs[0]
    ones = np.ones((200, 12), "float32")
    out = gn.function([x], corrupted, training=True, backend="reference")(ones)
    assert set(np.unique(out)) == {0.0, 1.0}
    assert np.mean(out == 0) == pytest.approx(0.3, abs=0.03)


@pytest.mark.parametrize("activation, tied", [("sigmoid", True), ("tanh", False), ("relu", True)])
def test_layerwise_pretraining_lowers_each_reconstruction_loss_in_the_mlps_own_weights(activation, tied):
    model = mlp([12, 8, 6, 3], activation=activation, seed=1)
    before = model.state_dict()
    inputs = UNIT if activation == "sigmoid" else X_BLOBS
    losses = pretrain_layerwise(model, inputs, noise=0.2, tied=tied, epochs=8, lr=1e-2, batch_size=32)
    assert list(losses) == ["dense0", "dense1"]
    for name, curve in losses.items():
        assert len(curve) == 8 and curve[-1] < curve[0], (name, curve)
    after = model.state_dict()
    for name in ("dense0.W", "dense0.b", "dense1.W", "dense1.b"):
        assert not np.array_equal(before[name], after[name]), name
    for name in ("dense2.W", "dense2.b"):   # the classifier layer is left for fine-tuning
        np.testing.assert_array_equal(before[name], after[name])


def test_pretrain_and_finetune_learns_the_labels_and_reports_both_stages():
    train, valid = (UNIT[:180], Y_BLOBS[:180]), (UNIT[180:], Y_BLOBS[180:])
    result = pretrain_and_finetune(train, valid, hidden=(16, 8), activation="sigmoid", pretrain_epochs=3,
                                   epochs=15, batch_size=16, optimizer=optim.Adam(1e-2))
    assert set(result.pretrain_loss) == {"dense0", "dense1"}
    assert result.history.best()["val_accuracy"] > 0.9


def test_without_pretraining_it_is_fit_on_the_same_mlp():
    from graphnet.training.fit import fit
    train = (X_BLOBS[:180], Y_BLOBS[:180])
    result = pretrain_and_finetune(train, hidden=(8,), activation="relu", pretrain=False, epochs=3, seed=4)
    model = mlp([12, 8, 3], activation="relu", seed=4)
    history = fit(model, train, epochs=3, batch_size=32, seed=4, backend="reference", quiet=True)
    assert result.pretrain_loss == {}
    assert result.history.train_loss == history.train_loss


def test_batch_norm_models_are_refused():
    with pytest.raises(GraphnetError, match="Dense"):
        pretrain_layerwise(mlp([12, 8, 3], batch_norm=True), X_BLOBS)
