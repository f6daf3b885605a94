"""Reductions in shared memory: by row, by column (batch-norm statistics, bias
gradients), over everything (the loss), with their prologues and epilogues."""
import numpy as np
import pytest

import graphnet as gn

RNG = np.random.default_rng(1)


@pytest.mark.parametrize("dtype,rtol", [("float32", 1e-5), ("float64", 1e-12)])
def test_sums_maxima_means_and_variances_over_every_axis_pattern(matches_reference, dtype, rtol):
    x = gn.placeholder("x", (None, 3, 5), dtype)
    outputs = [gn.sum(x), gn.sum(x, axis=0), gn.sum(x, axis=-1, keepdims=True), gn.max(x, axis=(0, 1)),
               gn.max(x, axis=-1), gn.max(x), gn.mean(x, axis=1), gn.var(x, axis=0),
               gn.sum(gn.exp(x) * 2.0, axis=(0, 1))]
    fn = matches_reference(outputs, {x: RNG.standard_normal((4, 3, 5)).astype(dtype)}, rtol=rtol, atol=rtol)
    templates = {k.name.split("_reduce_")[-1] for k in fn.kernels if "_reduce_" in k.name}
    assert templates == {"row", "col", "all"}
    # Reducing some but not all leading axes has no 2-D kernel (as on the CPU):
    # sum(axis=0), mean(axis=1) and var(axis=0) of a 3-d array run on the host.
    host = sorted(tuple(k.ops) for k in fn.kernels if k.device == "host")
    assert host == [("moments",), ("sum",), ("sum",)]


def test_batch_norm_statistics_and_normalize_match_reference(matches_reference):
    x = gn.placeholder("x", (None, 6))
    gamma = gn.shared(RNG.uniform(0.5, 1.5, 6).astype("float32"), name="gamma")
    beta = gn.shared(RNG.standard_normal(6).astype("float32"), name="beta")
    mean, var = gn.moments(x, axis=0)
    normalized = gn.nn.normalize(x, mean, var, gamma, beta, 1e-5)
    fn = matches_reference([mean, var, gn.relu(normalized)], {x: RNG.standard_normal((9, 6)).astype("float32") * 3 + 1})
    assert any("moments" in k.ops and k.name.endswith("_reduce_col") for k in fn.kernels)


def test_bias_gradient_is_a_column_reduction(matches_reference):
    x = gn.placeholder("x", (None, 4))
    W = gn.shared(RNG.standard_normal((4, 3)).astype("float32"), name="W")
    b = gn.shared(np.zeros(3, "float32"), name="b")
    loss = gn.sum(gn.tanh(gn.dot(x, W) + b) ** 2)
    matches_reference(gn.grad(loss, [W, b]), {x: RNG.standard_normal((7, 4)).astype("float32")})


def test_integer_and_boolean_sums_accumulate_exactly(matches_reference):
    i = gn.placeholder("i", (None, 4), "int32")
    matches_reference([gn.sum(i, axis=0), gn.sum(i), gn.max(i, axis=1), gn.sum(i > 0, axis=1)],
                      {i: RNG.integers(-1000, 1000, (5, 4)).astype("int32")})


def test_argmax_falls_back_to_the_host(matches_reference):
    x = gn.placeholder("x", (None, 5))
    fn = matches_reference([gn.argmax(x, axis=1)], {x: RNG.standard_normal((6, 5)).astype("float32")})
    assert [k.device for k in fn.kernels] == ["host"]


def test_sums_over_an_empty_batch_are_zero(matches_reference):
    x = gn.placeholder("x", (None, 3))
    matches_reference([gn.sum(x, axis=0), gn.sum(x)], {x: np.zeros((0, 3), "float32")})


def test_a_reduction_over_an_axis_of_one_reads_its_input_in_both_stages(matches_reference):
    # (R, 1) summed over its last axis keeps its shape: the prologue reads x as
    # (R, C) and the epilogue as (R,), each from its own argument (as on the CPU).
    x = gn.placeholder("x", (None, 1), "float64")
    total = gn.sum(gn.exp(x), axis=1, keepdims=True)
    matches_reference([total * gn.exp(x) + x], {x: np.array([[0.3], [1.0], [-2.0], [0.5]])}, rtol=1e-12, atol=1e-12)


def test_moments_of_an_empty_batch_are_nan_as_in_numpy():
    x = gn.placeholder("x", (None, 3), "float64")
    outputs = [*gn.moments(x, 0), *gn.moments(x, None)]
    got = gn.function([x], outputs, backend="cuda")(np.zeros((0, 3)))
    assert all(np.isnan(value).all() for value in got)
