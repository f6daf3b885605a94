"""The convolutional pieces of graphnet.nn: batch norm per channel for 4-D input,
``flatten(ndim)``, the Conv2D / MaxPool2D / Flatten / Reshape layers, and a
small ConvNet training step, each against NumPy.
"""
import numpy as np
import pytest

import graphnet as gn
from graphnet.nn import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D, Reshape, Sequential, optim
from graphnet.ops.conv import Conv2D as Conv2DOp

RNG = np.random.default_rng(22)
X4 = RNG.normal(2.0, 3.0, size=(4, 3, 5, 6))
GAMMA, BETA = np.array([0.5, 1.0, 2.0]), np.array([-1.0, 0.0, 1.0])


def numpy_batch_norm_4d(x, gamma, beta, eps):
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma[None, :, None, None] + beta[None, :, None, None]


# ------------------------------------------------------------------ batch norm, 4-D
_x4 = gn.placeholder("x4", (None, 3, 5, 6), "float64")
_gamma, _beta = gn.shared(GAMMA, name="gamma"), gn.shared(BETA, name="beta")
_mean, _var = gn.shared(np.zeros(3), name="rmean"), gn.shared(np.ones(3), name="rvar")
BN4 = gn.nn.batch_norm(_x4, _gamma, _beta, eps=1e-3, momentum=0.25, running_mean=_mean, running_var=_var)


def test_batch_norm_4d_training_normalizes_each_channel_over_batch_rows_and_cols(backend, run):
    out = run(BN4, {_x4: X4}, backend, training=True)
    np.testing.assert_allclose(out, numpy_batch_norm_4d(X4, GAMMA, BETA, 1e-3), rtol=1e-10, atol=1e-12)


def test_batch_norm_4d_updates_running_statistics_per_channel(backend, compiled):
    _mean.set_value(np.zeros(3))
    _var.set_value(np.ones(3))
    compiled(BN4, [_x4], backend, training=True)(X4)
    count = X4.size // 3
    np.testing.assert_allclose(_mean.get_value(), 0.25 * X4.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(_var.get_value(), 0.75 + 0.25 * X4.var(axis=(0, 2, 3)) * count / (count - 1),
                               rtol=1e-12)


def test_batch_norm_4d_evaluation_uses_the_running_statistics(backend, run):
    _mean.set_value(np.array([1.0, 2.0, 3.0]))
    _var.set_value(np.array([4.0, 1.0, 0.25]))
    out = run(BN4, {_x4: X4}, backend, training=False)
    shape = (1, 3, 1, 1)
    expected = ((X4 - _mean.get_value().reshape(shape)) / np.sqrt(_var.get_value().reshape(shape) + 1e-3)
                * GAMMA.reshape(shape) + BETA.reshape(shape))
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_batch_norm_4d_gradients_match_finite_differences():
    x = gn.placeholder("x", (2, 3, 3, 2), "float64")
    gamma, beta = gn.shared(GAMMA, name="g"), gn.shared(BETA, name="b")
    out = gn.nn.batch_norm(x, gamma, beta)
    cost = gn.sum(out * RNG.normal(size=(2, 3, 3, 2)))
    report = gn.check_grad(cost, [x, gamma, beta], feed={x: X4[:2, :, :3, :2]}, training=True)
    assert report.passed, report


def test_batch_norm_layer_takes_a_convolutions_output_and_refuses_a_channel_mismatch():
    layer = BatchNorm(3)
    assert layer(gn.placeholder("x", (None, 3, 4, 4))).shape == (None, 3, 4, 4)
    with pytest.raises(gn.ShapeError, match=r"\(\?, 3, rows, cols\); got \(\?, 5, 4, 4\)"):
        layer(gn.placeholder("x", (None, 5, 4, 4)))


# ------------------------------------------------------------------ flatten
def test_flatten_keeps_ndim_minus_one_leading_axes(backend, run):
    x = gn.placeholder("x", (None, None, None, None), "float64")
    value = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    for ndim in (1, 2, 3):
        np.testing.assert_array_equal(run(x.flatten(ndim), {x: value}, backend),
                                      value.reshape(value.shape[:ndim - 1] + (-1,)))


def test_flatten_infers_the_collapsed_size_when_it_is_known():
    assert gn.placeholder("x", (None, 3, 4, 5)).flatten(2).shape == (None, 60)
    assert gn.placeholder("x", (None, 3, None, 5)).flatten(2).shape == (None, None)
    with pytest.raises(gn.ShapeError, match="flatten: ndim=5"):
        gn.placeholder("x", (None, 3, 4, 5)).flatten(5)


def test_flatten_gradient_restores_the_input_shape():
    x = gn.placeholder("x", (2, 3, 2, 2), "float64")
    cost = gn.sum(x.flatten(2) * RNG.normal(size=(2, 12)))
    assert gn.check_grad(cost, x, feed={x: X4[:2, :, :2, :2]}).passed


# ------------------------------------------------------------------ layers
def test_conv2d_layer_adds_one_bias_per_channel_and_activates(backend, run):
    layer = Conv2D(3, 2, (3, 2), activation="relu", border_mode="half", seed=0, dtype="float64")
    layer.b.set_value(np.array([0.5, -0.5]))
    x = gn.placeholder("x", (None, 3, 5, 6), "float64")
    out = run(layer(x), {x: X4}, backend)
    conv = Conv2DOp("half").perform([X4, layer.W.get_value()])[0]
    np.testing.assert_allclose(out, np.maximum(conv + np.array([0.5, -0.5])[None, :, None, None], 0), rtol=1e-12)


def test_conv2d_layer_draws_he_filters_with_the_convolutions_fan_in():
    layer = Conv2D(16, 64, 5, activation="relu", seed=0)
    filters = layer.W.get_value()
    assert filters.shape == (64, 16, 5, 5) and layer.b.get_value().shape == (64,)
    assert filters.std() == pytest.approx(np.sqrt(2 / (16 * 25)), rel=0.05)
    glorot = Conv2D(16, 64, 5, activation="tanh", seed=0).W.get_value()
    bound = np.sqrt(6 / (16 * 25 + 64 * 25))
    assert glorot.max() <= bound and glorot.max() > 0.95 * bound


def test_conv2d_layer_refuses_wrong_channels_and_per_unit_activations():
    with pytest.raises(gn.ShapeError, match=r"expected input of shape \(\?, 3, rows, cols\)"):
        Conv2D(3, 2, 3)(gn.placeholder("x", (None, 4, 5, 5)))
    with pytest.raises(gn.GraphnetError, match="activation 'maxout' is not supported"):
        Conv2D(3, 2, 3, activation="maxout")


def test_max_pool_layer_checks_its_parameters_when_built():
    with pytest.raises(gn.GraphnetError, match="smaller than the window"):
        MaxPool2D(2, pad=2)
    assert MaxPool2D(2)(gn.placeholder("x", (None, 3, 5, 6))).shape == (None, 3, 2, 3)


def convnet(seed=0):
    return Sequential([Reshape((1, 6, 6)), Conv2D(1, 4, 3, "linear", border_mode="half", bias=False, seed=seed),
                       BatchNorm(4), gn.nn.Activation("relu"), MaxPool2D(2), Flatten(),
                       Dense(4 * 9, 3, "linear", seed=seed + 1)])


def test_a_small_convnet_classifier_trains_on_flat_rows(backend):
    model = convnet()
    assert model.n_in == 36 and model.classifier().logits.shape == (None, 3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 36)).astype("float32")
    y = np.arange(12) % 3
    x[np.arange(12), y] += 3.0   # a pixel per class: learnable in a few steps
    step = model.train_function(optim.Adam(0.05), backend=backend)
    losses = [float(step(x, y)[0]) for _ in range(15)]
    assert losses[-1] < 0.5 * losses[0]


def test_convnet_parameter_gradients_match_finite_differences():
    model = convnet(seed=3)
    g = model.classifier("float64")
    x = np.random.default_rng(1).normal(size=(4, 36))
    report = gn.check_grad(g.loss, model.params, feed={g.x: x, g.y: np.array([0, 1, 2, 0])}, training=True,
                           max_entries=12)
    assert report.passed, report


def test_graphnet_tensor_exposes_theanos_conv_and_pool_names():
    import graphnet.tensor as T
    from graphnet.tensor.nnet import conv2d
    from graphnet.tensor.signal import pool
    x, w = T.tensor4("x"), T.tensor4("w")
    out = pool.pool_2d(input=conv2d(input=x, filters=w, border_mode="half"), ws=(2, 2), ignore_border=True)
    assert out.owner.op.ws == (2, 2) and out.owner.inputs[0].owner.op.border_mode == "half"
    assert pool.pool_2d(x, ds=(3, 3), st=(1, 1)).owner.op.stride == (1, 1)  # Theano's pre-0.9 names
    assert out.flatten(2).ndim == 2
