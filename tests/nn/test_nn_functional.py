"""gn.nn's building blocks: argument checks, seeds, and batch norm's initial statistics."""
import numpy as np
import pytest

import graphnet as gn

X = gn.placeholder("x", (8, 5), "float64")
ONES = np.ones((8, 5))


def test_l2_without_parameters_raises():
    with pytest.raises(gn.GraphnetError, match="l2"):
        gn.nn.l2()


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5])
def test_dropout_rate_outside_zero_one_raises(rate):
    with pytest.raises(gn.GraphnetError, match="rate"):
        gn.nn.dropout(X, rate)


def test_dropout_with_rate_zero_is_the_input_itself():
    assert gn.nn.dropout(X, 0.0) is X


def test_dropout_with_the_same_seed_draws_the_same_masks(backend, run):
    first, second = gn.nn.dropout(X, 0.5, seed=17), gn.nn.dropout(X, 0.5, seed=17)
    for _ in range(2):  # each has its own step counter, advancing in step
        np.testing.assert_array_equal(run(first, {X: ONES}, backend, training=True),
                                      run(second, {X: ONES}, backend, training=True))


def test_dropout_with_different_seeds_draws_different_masks(backend, run):
    a = run(gn.nn.dropout(X, 0.5, seed=1), {X: ONES}, backend, training=True)
    b = run(gn.nn.dropout(X, 0.5, seed=2), {X: ONES}, backend, training=True)
    assert not np.array_equal(a, b)


def test_batch_norm_needs_known_feature_dimensions():
    with pytest.raises(gn.ShapeError, match="batch_norm"):
        gn.nn.batch_norm(gn.placeholder("u", (None, None)), 1.0, 0.0)


def test_batch_norm_eval_mode_starts_from_mean_zero_and_variance_one(backend, run):
    gamma, beta = np.linspace(0.5, 1.5, 5), np.linspace(-1.0, 1.0, 5)
    out = gn.nn.batch_norm(X, gn.shared(gamma, name="gamma"), gn.shared(beta, name="beta"), eps=1e-3)
    values = np.arange(40.0).reshape(8, 5)
    np.testing.assert_allclose(run(out, {X: values}, backend), values / np.sqrt(1 + 1e-3) * gamma + beta,
                               rtol=1e-12)


def test_cross_entropy_of_uniform_logits_is_log_of_the_number_of_classes(backend, run):
    labels = gn.placeholder("labels", (8,), "int64")
    loss = gn.nn.cross_entropy(X * 0.0, labels)
    np.testing.assert_allclose(run(loss, {X: ONES, labels: np.arange(8) % 5}, backend), np.log(5), rtol=1e-12)
