"""``unit_activity``: per-unit activation rates over a whole data set, against a NumPy forward pass."""
import math

import numpy as np
import pytest

from graphnet.errors import GraphnetError
from graphnet.nn import mlp
from graphnet.training.unit_activity import unit_activity

RNG = np.random.default_rng(0)
X = RNG.standard_normal((300, 6)).astype("float32")


def numpy_hidden_outputs(model, X):
    """The hidden ReLU outputs of a Dense-only MLP, computed independently with NumPy."""
    outputs, h = [], X.astype(np.float64)
    for layer in model.layers[:-1]:
        h = np.maximum(h @ layer.W.get_value() + layer.b.get_value(), 0.0)
        outputs.append(h)
    return outputs


@pytest.fixture(scope="module")
def model_with_dead_units():
    """A ReLU MLP whose units 0 and 3 of the first layer can never fire (bias -1e3)."""
    model = mlp([6, 8, 5, 3], activation="relu", seed=1)
    bias = model.layers[0].b.get_value()
    bias[[0, 3]] = -1e3
    model.layers[0].b.set_value(bias)
    return model


def test_rates_are_the_fraction_of_examples_with_a_positive_output(model_with_dead_units):
    activity = unit_activity(model_with_dead_units, X, batch_size=64)   # several batches, one partial
    for (name, rate), h in zip(activity.rates.items(), numpy_hidden_outputs(model_with_dead_units, X)):
        np.testing.assert_allclose(rate, np.mean(h > 0, axis=0), atol=1e-12, err_msg=name)
    assert activity.examples == len(X)


def test_planted_dead_units_are_counted_per_layer_and_overall(model_with_dead_units):
    activity = unit_activity(model_with_dead_units, X)
    first, second = activity.rates
    assert activity.dead(first) == 2
    expected_second = int(np.sum(np.all(numpy_hidden_outputs(model_with_dead_units, X)[1] <= 0, axis=0)))
    assert activity.dead(second) == expected_second
    assert activity.dead_fraction() == pytest.approx((2 + expected_second) / 13)
    assert activity.dead_fractions()[first] == pytest.approx(2 / 8)
    assert "2 of 8 units dead" in str(activity)


def test_a_unit_active_on_one_example_is_alive():
    model = mlp([6, 4, 3], activation="relu", seed=2)
    W = np.zeros((6, 4), "float32")
    W[0, 0] = 1.0                       # unit 0 fires only where x0 > 2.5 (a handful of examples)
    model.layers[0].W.set_value(W)
    model.layers[0].b.set_value(np.array([-2.5, -1, -1, -1], "float32"))
    activity = unit_activity(model, X)
    rare = int(np.sum(X[:, 0] > 2.5))
    assert rare >= 1
    assert activity.rates["dense0"][0] == pytest.approx(rare / len(X))
    assert activity.dead("dense0") == 3


def test_a_diverged_network_has_no_dead_fraction():
    model = mlp([6, 4, 3], activation="relu", seed=3)
    model.layers[0].W.set_value(np.full((6, 4), np.nan, "float32"))
    activity = unit_activity(model, X)
    assert not activity.finite
    assert math.isnan(activity.dead_fraction())


def test_a_network_without_rectifiers_is_refused_by_name():
    with pytest.raises(GraphnetError, match="no rectifier layer.*tanh"):
        unit_activity(mlp([6, 4, 3], activation="tanh"), X)


def test_input_that_is_not_a_matrix_is_refused():
    with pytest.raises(GraphnetError, match=r"shape \(6,\)"):
        unit_activity(mlp([6, 4, 3]), X[0])
