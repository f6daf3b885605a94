"""Specification of graphnet.nn.init: the initializers' scales, reproducibility and lookup."""

import numpy as np
import pytest

from graphnet import init
from graphnet.errors import DTypeError, GraphnetError, ShapeError

SHAPE = (500, 400)  # 200,000 draws: empirical std within about 0.3 % of the formula
FAN_IN, FAN_OUT = SHAPE


# --------------------------------------------------------------------------- fans

@pytest.mark.parametrize("shape, fans", [
    ((7,), (7, 7)),
    ((64, 10), (64, 10)),
    ((64, 10, 3), (64, 10)),  # maxout: (n_in, n_out, pieces)
    ((20, 3, 5, 4), (3 * 20, 20 * 20)),  # conv filters (out, in, rows, cols): in*rows*cols, out*rows*cols
    (5, (5, 5)),
])
def test_compute_fans(shape, fans):
    assert init.compute_fans(shape) == fans


@pytest.mark.parametrize("shape", [(), (2, 3, 4, 5, 6)])
def test_compute_fans_rejects_unsupported_ranks(shape):
    with pytest.raises(ShapeError, match="shape|compute_fans"):
        init.compute_fans(shape)


# --------------------------------------------------------------------------- scales

def test_glorot_uniform_stays_within_its_bound_and_has_its_variance():
    bound = np.sqrt(6.0 / (FAN_IN + FAN_OUT))
    W = init.glorot_uniform(SHAPE, rng=0)
    assert W.shape == SHAPE and W.dtype == np.float32
    assert np.abs(W).max() <= np.float32(bound)  # float32 rounding is monotone
    assert np.abs(W).max() > 0.99 * bound  # the bound is actually reached
    # U[-b, b] has std b / sqrt(3).
    assert W.std() == pytest.approx(bound / np.sqrt(3.0), rel=0.02)
    assert abs(W.mean()) < 0.01 * bound


def test_glorot_normal_std():
    W = init.glorot_normal(SHAPE, rng=0)
    assert W.std() == pytest.approx(np.sqrt(2.0 / (FAN_IN + FAN_OUT)), rel=0.02)


def test_he_normal_std_uses_fan_in():
    W = init.he_normal(SHAPE, rng=0)
    assert W.std() == pytest.approx(np.sqrt(2.0 / FAN_IN), rel=0.02)
    assert abs(W.mean()) < 0.01 * W.std()


def test_he_uniform_bound_uses_fan_in():
    bound = np.sqrt(6.0 / FAN_IN)
    W = init.he_uniform(SHAPE, rng=0)
    assert np.abs(W).max() <= np.float32(bound)
    assert W.std() == pytest.approx(bound / np.sqrt(3.0), rel=0.02)


def test_normal_and_uniform_use_their_parameters():
    W = init.normal(std=0.1, mean=0.5)(SHAPE, rng=0)
    assert W.std() == pytest.approx(0.1, rel=0.02) and W.mean() == pytest.approx(0.5, abs=1e-3)
    U = init.uniform(scale=0.2)(SHAPE, rng=0)
    assert np.abs(U).max() <= np.float32(0.2) and U.std() == pytest.approx(0.2 / np.sqrt(3.0), rel=0.02)


def test_default_normal_is_the_lectures_small_std():
    assert init.normal()(SHAPE, rng=0).std() == pytest.approx(0.01, rel=0.02)


def test_maxout_weights_use_n_in_and_n_out():
    W = init.glorot_uniform((100, 50, 4), rng=0)
    assert W.shape == (100, 50, 4)
    assert np.abs(W).max() <= np.float32(np.sqrt(6.0 / 150))


def test_orthogonal_has_orthonormal_columns_times_gain():
    W = init.orthogonal(gain=2.0)((30, 20), rng=0)
    np.testing.assert_allclose(W.T @ W, 4.0 * np.eye(20), atol=1e-5)
    wide = init.orthogonal()((20, 30), rng=0, dtype="float64")
    np.testing.assert_allclose(wide @ wide.T, np.eye(20), atol=1e-12)


# --------------------------------------------------------------------------- constants

def test_zeros_ones_and_constant():
    assert np.array_equal(init.zeros((3, 4)), np.zeros((3, 4), np.float32))
    assert init.zeros(5).dtype == np.float32
    assert np.array_equal(init.ones(3, dtype="float64"), np.ones(3))
    assert np.all(init.constant(0.1)((2, 2)) == np.float32(0.1))


# --------------------------------------------------------------------------- rng and dtype

@pytest.mark.parametrize("initializer", [
    init.glorot_uniform, init.glorot_normal, init.he_normal, init.he_uniform,
    init.normal(), init.uniform(), init.orthogonal(),
])
def test_same_seed_same_weights_different_seed_different_weights(initializer):
    a = initializer((40, 30), rng=123)
    b = initializer((40, 30), rng=123)
    c = initializer((40, 30), rng=124)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    # Never all equal: symmetric weights would stay symmetric.
    assert len(np.unique(a)) > 1


def test_a_generator_is_consumed_so_successive_draws_differ():
    rng = np.random.default_rng(0)
    assert not np.array_equal(init.he_normal((5, 5), rng=rng), init.he_normal((5, 5), rng=rng))


def test_unseeded_calls_differ():
    assert not np.array_equal(init.he_normal((10, 10)), init.he_normal((10, 10)))


def test_dtype_is_respected_and_must_be_floating_for_random_draws():
    assert init.he_normal((3, 3), rng=0, dtype="float64").dtype == np.float64
    with pytest.raises(DTypeError, match="dtype"):
        init.he_normal((3, 3), dtype="int32")


def test_bad_rng_and_bad_parameters_are_named():
    with pytest.raises(GraphnetError, match="rng"):
        init.he_normal((3, 3), rng="seed")
    with pytest.raises(GraphnetError, match="std"):
        init.normal((3, 3))  # a shape passed where the std belongs
    with pytest.raises(ShapeError, match="shape"):
        init.zeros((3, -1))


# --------------------------------------------------------------------------- get

@pytest.mark.parametrize("name, function", [
    ("glorot_uniform", init.glorot_uniform),
    ("xavier_uniform", init.glorot_uniform),
    ("he_normal", init.he_normal),
    ("zeros", init.zeros),
    ("He_Normal", init.he_normal),
])
def test_get_maps_names_to_initializers(name, function):
    assert init.get(name) is function


def test_get_builds_parameterized_initializers_with_defaults():
    assert init.get("normal")((1000,), rng=0).std() == pytest.approx(0.01, rel=0.1)
    assert isinstance(init.get(init.uniform), init.Uniform)


def test_get_passes_callables_through():
    def mine(shape, rng=None, dtype="float32"):
        return np.full(shape, 3.0, dtype)

    assert init.get(mine) is mine


def test_get_unknown_name_lists_the_valid_names():
    with pytest.raises(GraphnetError, match="glorot_uniform") as info:
        init.get("glorot_unifrom")
    message = str(info.value)
    assert "glorot_unifrom" in message
    for name in ("he_normal", "xavier_uniform", "zeros"):
        assert name in message
