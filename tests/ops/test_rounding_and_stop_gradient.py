"""rbm.py's and convolutional_mlp.py's extra needs: round, %, //, flatten(ndim), consider_constant, disconnected_grad."""
import numpy as np
import pytest

import graphnet as gn
import graphnet.tensor as T

A = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.2, -3.7], np.float32)
B = np.array([3.0, -2.0, 0.75, -1.25, 2.0, 4.0, -0.3, 1.5], np.float32)
a, b = T.vector("a"), T.vector("b")


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_round_defaults_to_half_away_from_zero_as_theano(backend):
    got = gn.function([a], T.round(a), backend=backend)(A)
    np.testing.assert_array_equal(got, np.sign(A) * np.floor(np.abs(A) + 0.5))


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_round_half_to_even_matches_numpy_round(backend):
    np.testing.assert_array_equal(gn.function([a], T.round(a, mode="half_to_even"), backend=backend)(A), np.round(A))


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_mod_and_floor_div_follow_python_with_the_divisors_sign(backend):
    rem, quo = gn.function([a, b], [a % b, a // b], backend=backend)(A, B)
    np.testing.assert_allclose(rem, np.mod(A, B), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(quo, np.floor_divide(A, B))
    i = T.lvector("i")
    np.testing.assert_array_equal(gn.function([i], [i % 3, 7 % (i + 10)], backend=backend)(np.arange(-4, 4))[0],
                                  np.arange(-4, 4) % 3)


def test_the_gradient_of_mod_matches_finite_differences():
    A64, B64 = A.astype(np.float64) + 0.01, B.astype(np.float64)
    x, y = T.dvector("x"), T.dvector("y")
    gx, gy = gn.function([x, y], T.grad(T.sum((x % y) ** 2), [x, y]), backend="reference")(A64, B64)
    f = lambda u, v: np.sum(np.mod(u, v) ** 2)  # noqa: E731
    eps = 1e-6
    for k in range(len(A64)):
        e = np.zeros_like(A64); e[k] = eps
        assert gx[k] == pytest.approx((f(A64 + e, B64) - f(A64 - e, B64)) / (2 * eps), rel=1e-4, abs=1e-6)
        assert gy[k] == pytest.approx((f(A64, B64 + e) - f(A64, B64 - e)) / (2 * eps), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_flatten_with_ndim_keeps_the_leading_axes_even_when_they_are_runtime_sizes(backend):
    x = T.tensor4("x")
    X = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    flat2, flat3 = gn.function([x], [x.flatten(2), T.flatten(x, 3)], backend=backend)(X)
    np.testing.assert_array_equal(flat2, X.reshape(2, -1))
    np.testing.assert_array_equal(flat3, X.reshape(2, 3, -1))
    assert x.flatten(2).ndim == 2 and x.flatten().ndim == 1


def test_the_gradient_through_flatten_has_the_input_shape():
    x = T.tensor3("x")
    g = gn.function([x], T.grad(T.sum(x.flatten(2) ** 2), x), backend="reference")(np.ones((2, 3, 4), np.float32))
    np.testing.assert_array_equal(g, 2 * np.ones((2, 3, 4)))


def test_flatten_refuses_an_ndim_beyond_the_input():
    with pytest.raises(gn.ShapeError, match="ndim=3"):
        T.matrix("m").flatten(3)


def _rbm_like_cost():
    """rbm.py's pattern: the cost reads a sample (``chain_end``) that must not be differentiated through."""
    w = gn.shared(np.array([0.5, -1.0, 2.0]), name="w")
    v = T.dvector("v")
    chain_end = T.tanh(v * w)
    cost = T.sum(w * v) - T.sum(w * chain_end)
    return w, v, chain_end, cost


def test_consider_constant_treats_the_listed_variable_as_a_constant():
    w, v, chain_end, cost = _rbm_like_cost()
    V = np.array([1.0, 2.0, -1.0])
    got = gn.function([v], T.grad(cost, w, consider_constant=[chain_end]), backend="reference")(V)
    np.testing.assert_allclose(got, V - np.tanh(V * w.get_value()))


def test_disconnected_grad_and_zero_grad_stop_the_gradient_in_the_graph():
    w, v, chain_end, _ = _rbm_like_cost()
    V = np.array([1.0, 2.0, -1.0])
    for stop in (T.disconnected_grad, T.zero_grad, gn.stop_gradient):
        cost = T.sum(w * v) - T.sum(w * stop(chain_end))
        value, grad = gn.function([v], [stop(chain_end), T.grad(cost, w)], backend="reference")(V)
        np.testing.assert_allclose(value, np.tanh(V * w.get_value()))
        np.testing.assert_allclose(grad, V - np.tanh(V * w.get_value()))


def test_without_consider_constant_the_gradient_flows_through_the_sample():
    w, v, chain_end, cost = _rbm_like_cost()
    V = np.array([1.0, 2.0, -1.0])
    W = w.get_value()
    t = np.tanh(V * W)
    got = gn.function([v], T.grad(cost, w), backend="reference")(V)
    np.testing.assert_allclose(got, V - t - W * (1 - t ** 2) * V)
