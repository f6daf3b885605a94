"""gn.grad: the reverse sweep equals hand-derived backprop and refuses what it cannot differentiate."""
import numpy as np
import pytest

import graphnet as gn
from graphnet.graph import ancestors_toposort

RNG = np.random.default_rng(1)
BATCH, SIZES, CLASSES = 5, [4, 6, 5], 3
X = RNG.normal(size=(BATCH, SIZES[0]))
Y = np.array([0, 2, 1, 1, 2], np.int64)


def _layer_values():
    sizes = SIZES + [CLASSES]
    return [(RNG.normal(size=(n_in, n_out)) * 0.7, RNG.normal(size=(n_out,)) * 0.3)
            for n_in, n_out in zip(sizes[:-1], sizes[1:])]


LAYERS = _layer_values()
# g and g' of each hidden layer, then None for the softmax output layer.
ACTIVATIONS = [
    (np.tanh, lambda a: 1 - np.tanh(a) ** 2),
    (lambda a: np.maximum(a, 0), lambda a: (a > 0).astype(np.float64)),
    None,
]


def numpy_backprop(x, y, layers):
    """The lecture's loop: forward keeping a_k and h_k, then backward from da_L = (f - onehot) / B."""
    hs, As = [x], []
    for (W, b), act in zip(layers, ACTIVATIONS):
        a = hs[-1] @ W + b
        As.append(a)
        hs.append(act[0](a) if act else a)
    logits = As[-1]
    f = np.exp(logits - logits.max(axis=1, keepdims=True))
    f /= f.sum(axis=1, keepdims=True)
    da = (f - np.eye(CLASSES)[y]) / len(y)
    grads = [None] * len(layers)
    for k in reversed(range(len(layers))):
        W, _ = layers[k]
        grads[k] = (hs[k].T @ da, da.sum(axis=0))      # dW_k = h_{k-1}^T da_k, db_k = sum da_k
        if k > 0:
            dh = da @ W.T                                # dh_{k-1} = da_k W_k^T
            da = dh * ACTIVATIONS[k - 1][1](As[k - 1])   # da_{k-1} = dh_{k-1} * g'(a_{k-1})
    return grads


def test_mlp_gradient_equals_hand_derived_backprop(backend, run):
    x = gn.placeholder("x", (None, SIZES[0]), "float64")
    y = gn.placeholder("y", (None,), "int64")
    params = [(gn.shared(W, name=f"W{k}"), gn.shared(b, name=f"b{k}")) for k, (W, b) in enumerate(LAYERS, 1)]
    (W1, b1), (W2, b2), (W3, b3) = params
    h1 = gn.tanh(gn.dot(x, W1) + b1)
    h2 = gn.relu(gn.dot(h1, W2) + b2)
    loss = gn.nn.cross_entropy(gn.dot(h2, W3) + b3, y)
    flat = [p for pair in params for p in pair]
    ours = run(gn.grad(loss, flat), {x: X, y: Y}, backend)
    expected = [g for pair in numpy_backprop(X, Y, LAYERS) for g in pair]
    for param, got, want in zip(flat, ours, expected):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14, err_msg=param.name)


def test_disconnected_wrt_gets_zeros(backend, run):
    x = gn.placeholder("x", (3, 4), "float64")
    unused = gn.shared(np.ones((2, 5)), name="unused")
    dx, dunused = gn.grad(gn.sum(x * x), [x, unused])
    got_dx, got_dunused = run([dx, dunused], {x: X[:3]}, backend)
    np.testing.assert_allclose(got_dx, 2 * X[:3], rtol=1e-15)
    np.testing.assert_array_equal(got_dunused, np.zeros((2, 5)))


def test_grad_wrt_integer_placeholder_raises_gradient_error():
    x = gn.placeholder("x", (3, 4), "float64")
    labels = gn.placeholder("labels", (3,), "int64")
    loss = gn.nn.cross_entropy(x, labels)
    with pytest.raises(gn.GradientError, match="labels"):
        gn.grad(loss, labels)


def test_grad_of_non_scalar_cost_raises_gradient_error():
    x = gn.placeholder("x", (3, 4), "float64")
    with pytest.raises(gn.GradientError, match="scalar"):
        gn.grad(x * 2.0, x)


def test_variable_used_twice_sums_both_contributions(backend, run):
    x = gn.placeholder("x", (3, 4), "float64")
    dx = gn.grad(gn.sum(gn.tanh(x) * x), x)         # d/dx [tanh(x) x] = (1 - tanh^2) x + tanh
    t = np.tanh(X[:3])
    np.testing.assert_allclose(run(dx, {x: X[:3]}, backend), (1 - t ** 2) * X[:3] + t, rtol=1e-12)


def test_shared_variable_in_two_terms_sums_both_contributions(backend, run):
    W = gn.shared(LAYERS[0][0], name="W")
    x = gn.placeholder("x", (None, SIZES[0]), "float64")
    cost = gn.sum(gn.dot(x, W)) + 0.5 * gn.nn.l2(W)
    expected = X.T @ np.ones((BATCH, SIZES[1])) + LAYERS[0][0]
    np.testing.assert_allclose(run(gn.grad(cost, W), {x: X}, backend), expected, rtol=1e-12)


def test_grad_of_one_variable_returns_a_variable_and_of_a_list_returns_a_list():
    x = gn.placeholder("x", (3,), "float64")
    cost = gn.sum(x * x)
    assert isinstance(gn.grad(cost, x), gn.Variable)
    grads = gn.grad(cost, [x])
    assert isinstance(grads, list) and len(grads) == 1


def test_backward_nodes_have_role_backward_and_forward_nodes_keep_forward():
    x = gn.placeholder("x", (3, 4), "float64")
    W = gn.shared(np.ones((4, 2)), name="W")
    cost = gn.mean(gn.tanh(gn.dot(x, W)))
    forward = {out for node in ancestors_toposort([cost]) for out in node.outputs}
    dW = gn.grad(cost, W)
    backward = {out for node in ancestors_toposort([dW]) for out in node.outputs} - forward
    assert dW.role == "backward"
    assert backward and all(v.role == "backward" for v in backward)
    assert all(v.role == "forward" for v in forward)
