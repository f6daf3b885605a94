"""The seed lecture's derivative formulas, read off the graphs gn.grad builds.

Network notation: pre-activation ``a = h W + b``, activation ``h = g(a)``,
softmax output ``f = softmax(a)``, loss the mean negative log-likelihood.
"""
import numpy as np

import graphnet as gn

RNG = np.random.default_rng(42)
BATCH, FEATURES, CLASSES = 5, 4, 3
H = RNG.normal(size=(BATCH, FEATURES))
LABELS = np.array([0, 2, 1, 2, 0], np.int64)
W_VALUE = RNG.normal(size=(FEATURES, CLASSES))
B_VALUE = RNG.normal(size=(CLASSES,))
A = RNG.choice([-1.0, 1.0], size=(BATCH, FEATURES)) * RNG.uniform(0.1, 2.0, (BATCH, FEATURES))


def softmax(a):
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def onehot(labels, classes):
    return np.eye(classes)[labels]


def test_softmax_nll_gradient_wrt_output_preactivation_is_softmax_minus_onehot_over_batch(backend, run):
    h = gn.placeholder("h", (None, FEATURES), "float64")
    y = gn.placeholder("y", (None,), "int64")
    W, b = gn.shared(W_VALUE, name="W"), gn.shared(B_VALUE, name="b")
    a = gn.dot(h, W) + b
    loss = gn.nn.cross_entropy(a, y)
    da = gn.grad(loss, a)
    expected = (softmax(H @ W_VALUE + B_VALUE) - onehot(LABELS, CLASSES)) / BATCH
    np.testing.assert_allclose(run(da, {h: H, y: LABELS}, backend), expected, rtol=1e-10, atol=1e-14)


def test_explicit_mean_log_softmax_nll_has_the_same_gradient(backend, run):
    a = gn.placeholder("a", (BATCH, CLASSES), "float64")
    targets = gn.constant(onehot(LABELS, CLASSES))
    loss = -gn.mean(gn.sum(gn.log_softmax(a) * targets, axis=1))
    logits = H @ W_VALUE
    expected = (softmax(logits) - onehot(LABELS, CLASSES)) / BATCH
    np.testing.assert_allclose(run(gn.grad(loss, a), {a: logits}, backend), expected, rtol=1e-10, atol=1e-14)


def test_relu_derivative_is_the_mask_a_greater_than_zero(backend, run):
    a = gn.placeholder("a", A.shape, "float64")
    mask = run(gn.grad(gn.sum(gn.relu(a)), a), {a: A}, backend)
    np.testing.assert_array_equal(mask, (A > 0).astype(np.float64))


def test_sigmoid_derivative_is_s_times_one_minus_s(backend, run):
    a = gn.placeholder("a", A.shape, "float64")
    s = gn.sigmoid(a)
    derivative, s_value = run([gn.grad(gn.sum(s), a), s], {a: A}, backend)
    np.testing.assert_allclose(derivative, s_value * (1 - s_value), rtol=1e-12)


def test_tanh_derivative_is_one_minus_t_squared(backend, run):
    a = gn.placeholder("a", A.shape, "float64")
    t = gn.tanh(a)
    derivative, t_value = run([gn.grad(gn.sum(t), a), t], {a: A}, backend)
    np.testing.assert_allclose(derivative, 1 - t_value ** 2, rtol=1e-12)


def test_l2_penalty_gradient_is_two_lambda_w(backend, run):
    lam = 1e-3
    W = gn.shared(W_VALUE, name="W")
    dW = gn.grad(lam * gn.nn.l2(W), W)
    np.testing.assert_allclose(run(dW, {}, backend), 2 * lam * W_VALUE, rtol=1e-12)
