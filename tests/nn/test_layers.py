"""Layers compute the lectures' formulas, own their parameters, and build both graph modes.

NumPy is the oracle for every forward rule; gradients of a whole model are
checked by central differences.
"""
import numpy as np
import pytest

import graphnet as gn
from graphnet import optim
from graphnet.nn import Activation, BatchNorm, Dense, Dropout, Sequential, mlp

RNG = np.random.default_rng(0)
H = RNG.normal(size=(5, 4)).astype("float32")


def numpy_activation(name, a, alpha=0.25, pieces=2):
    if name == "linear":
        return a
    if name == "sigmoid":
        return 1 / (1 + np.exp(-a))
    if name == "tanh":
        return np.tanh(a)
    if name == "relu":
        return np.maximum(a, 0)
    if name == "leaky_relu":
        return np.where(a > 0, a, 0.01 * a)
    if name == "prelu":
        return np.where(a > 0, a, alpha * a)
    if name == "elu":
        return np.where(a > 0, a, np.expm1(a))
    if name == "maxout":
        return a.reshape(a.shape[0], -1, pieces).max(axis=-1)
    raise AssertionError(name)


def forward(layer, X, training=False):
    x = gn.placeholder("x", (None, X.shape[1]))
    return gn.function([x], layer(x), training=training, backend="reference")(X)


@pytest.mark.parametrize("activation", gn.nn.ACTIVATIONS)
def test_dense_computes_g_of_h_W_plus_b(activation):
    layer = Dense(4, 3, activation, seed=1)
    layer.b.set_value(RNG.normal(size=layer.b.shape).astype("float32"))
    a = H.astype(np.float64) @ layer.W.get_value() + layer.b.get_value()
    np.testing.assert_allclose(forward(layer, H), numpy_activation(activation, a), rtol=1e-5, atol=1e-6)


def test_maxout_has_n_out_times_pieces_columns_grouped_consecutively():
    layer = Dense(4, 3, "maxout", pieces=3, seed=2)
    assert layer.W.shape == (4, 9) and layer.b.shape == (9,)
    a = H.astype(np.float64) @ layer.W.get_value()
    expected = np.stack([a[:, 3 * j:3 * j + 3].max(axis=1) for j in range(3)], axis=1)
    np.testing.assert_allclose(forward(layer, H), expected, rtol=1e-5, atol=1e-6)


def test_prelu_slope_is_a_learned_per_unit_parameter_starting_at_a_quarter():
    layer = Dense(4, 3, "prelu", seed=0)
    np.testing.assert_array_equal(layer.alpha.get_value(), [0.25, 0.25, 0.25])
    assert layer.alpha in layer.params and layer.alpha not in layer.regularized_params
    layer.alpha.set_value(np.array([0.0, 0.5, 1.0], "float32"))
    a = H.astype(np.float64) @ layer.W.get_value()
    np.testing.assert_allclose(forward(layer, H), np.where(a > 0, a, [0.0, 0.5, 1.0] * a), rtol=1e-5, atol=1e-6)


def test_dense_initialization_is_seeded_and_biases_start_at_zero():
    a, b = Dense(64, 32, seed=7), Dense(64, 32, seed=7)
    np.testing.assert_array_equal(a.W.get_value(), b.W.get_value())
    np.testing.assert_array_equal(a.b.get_value(), 0)
    assert not np.array_equal(a.W.get_value(), Dense(64, 32, seed=8).W.get_value())
    # He initialization for ReLU: std sqrt(2 / fan_in)
    assert a.W.get_value().std() == pytest.approx(np.sqrt(2 / 64), rel=0.1)


def test_dense_rejects_an_input_of_the_wrong_width():
    x = gn.placeholder("x", (None, 5))
    with pytest.raises(gn.ShapeError, match=r"expected input of shape \(\?, 4\)"):
        Dense(4, 3)(x)


def test_unknown_activation_is_refused_with_the_valid_names():
    with pytest.raises(gn.GraphnetError, match="relu"):
        Dense(4, 3, "swish")


def test_batch_norm_uses_batch_statistics_in_training_and_running_ones_in_evaluation():
    layer = BatchNorm(4, momentum=0.1)
    layer.gamma.set_value(np.array([1.0, 2.0, 0.5, 1.0], "float32"))
    layer.beta.set_value(np.array([0.0, 1.0, -1.0, 3.0], "float32"))
    x = gn.placeholder("x", (None, 4))
    out = layer(x)
    train = gn.function([x], out, training=True, backend="reference")
    evaluate = gn.function([x], out, training=False, backend="reference")
    gamma, beta = layer.gamma.get_value(), layer.beta.get_value()

    X = H.astype(np.float64)
    expected = gamma * (X - X.mean(0)) / np.sqrt(X.var(0) + 1e-5) + beta
    np.testing.assert_allclose(train(H), expected, rtol=1e-4, atol=1e-5)
    # one training call moved the running statistics 10% toward the batch's
    np.testing.assert_allclose(layer.running_mean.get_value(), 0.1 * X.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.running_var.get_value(), 0.9 + 0.1 * X.var(0, ddof=1), rtol=1e-5)

    mean, var = layer.running_mean.get_value(), layer.running_var.get_value()
    np.testing.assert_allclose(evaluate(H), gamma * (X - mean) / np.sqrt(var + 1e-5) + beta, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(layer.running_mean.get_value(), mean)  # evaluation leaves them alone


def test_dropout_drops_in_training_and_is_the_identity_in_evaluation():
    layer = Dropout(0.5, seed=3)
    X = np.ones((200, 50), "float32")
    train = forward(layer, X, training=True)
    assert set(np.unique(train)) <= {0.0, 2.0}           # inverted dropout: survivors scaled by 1/keep
    assert 0.45 < np.mean(train == 0) < 0.55
    np.testing.assert_array_equal(forward(layer, X), X)


def test_sequential_owns_params_weights_and_state_under_layer_names():
    model = Sequential([Dense(4, 8, "linear", bias=False), BatchNorm(8), Activation("prelu", n=8), Dropout(0.2),
                        Dense(8, 3, "linear")])
    names = [v.name for v in model.params]
    assert names == ["dense0.W", "batchnorm1.gamma", "batchnorm1.beta", "activation2.alpha", "dense4.W", "dense4.b"]
    assert [v.name for v in model.regularized_params] == ["dense0.W", "dense4.W"]
    assert [v.name for v in model.state] == ["batchnorm1.running_mean", "batchnorm1.running_var"]
    assert set(model.state_dict()) == {v.name for v in model.params + model.state}


def test_state_dict_round_trip_and_mismatch_is_refused():
    a, b = mlp([4, 6, 3], batch_norm=True, seed=0), mlp([4, 6, 3], batch_norm=True, seed=1)
    b.load_state_dict(a.state_dict())
    for name, value in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[name], value)
    with pytest.raises(gn.GraphnetError, match="missing"):
        b.load_state_dict({})


def test_forward_records_every_layers_activation():
    model = mlp([4, 6, 6, 3], batch_norm=True, dropout=0.5, seed=0)
    x = gn.placeholder("x", (None, 4))
    logits = model(x)
    assert [name for name, _ in model.activations] == [layer.name for layer in model.layers]
    assert model.activations[-1][1] is logits
    hidden = model.hidden_activations()
    assert [name for name, _ in hidden] == ["activation2", "activation6"]
    values = gn.function([x], [v for _, v in hidden], backend="reference")(H)
    assert all(v.shape == (5, 6) and (v >= 0).all() for v in values)


def test_train_and_eval_functions_share_one_graph():
    model = mlp([4, 8, 3], batch_norm=True, dropout=0.5, seed=0)
    step = model.train_function(optim.SGD(0.1))
    evaluate = model.eval_function()
    y = np.array([0, 1, 2, 0, 1])
    before = evaluate(H, y)[0]
    for _ in range(20):
        step(H, y)
    assert evaluate(H, y)[0] < before
    assert model.classifier() is model.classifier()


def test_model_gradients_match_central_differences():
    """The lecture's gradient check, on Dense+BatchNorm+PReLU+tanh+maxout in float64."""
    model = Sequential([Dense(4, 5, "linear", bias=False, dtype="float64", seed=0), BatchNorm(5, dtype="float64"),
                        Activation("prelu", n=5, dtype="float64"), Dense(5, 4, "tanh", dtype="float64", seed=1),
                        Dense(4, 3, "maxout", pieces=2, dtype="float64", seed=2)])
    g = model.classifier(dtype="float64")
    cost = model.training_objective(weight_decay=0.01)
    params = model.params
    loss_and_grads = gn.function([g.x, g.y], [cost] + gn.grad(cost, params), training=True, backend="reference")
    X, y = RNG.normal(size=(6, 4)), np.array([0, 1, 2, 0, 1, 2])
    _, *analytic = loss_and_grads(X, y)
    eps = 1e-6
    for p, dp in zip(params, analytic):
        value = p.get_value()
        numeric = np.zeros_like(value)
        for i in np.ndindex(value.shape):
            for sign in (1, -1):
                shifted = value.copy()
                shifted[i] += sign * eps
                p.set_value(shifted)
                numeric[i] += sign * loss_and_grads(X, y)[0] / (2 * eps)
            p.set_value(value)
        relative = np.abs(numeric - dp) / np.maximum(1e-8, np.abs(numeric) + np.abs(dp))
        assert relative.max() < 1e-5, p.name


def test_diagnostics_use_the_classifier_graph_even_after_another_forward_call():
    model = mlp([4, 6, 3], batch_norm=True, seed=0)
    model.classifier()
    model(gn.placeholder("other", (None, 4)))          # a second graph for the same parameters
    (hidden,) = model.activations_function()(H)
    assert hidden.shape == (5, 6) and (hidden >= 0).all()
