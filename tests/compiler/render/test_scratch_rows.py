"""Kernels that write a parameter in place, or sum along rows while they store outputs, go
through scratch rows so that their element loop vectorizes; the values stay exact."""
import re

import numpy as np
import pytest

import graphnet as gn

EPS32 = np.finfo(np.float32).eps


@pytest.fixture(scope="module")
def decay_step():
    """The Theano MLP tutorial's weight decay: both penalties reduced, W updated in place."""
    W = gn.shared(np.zeros((37, 29), np.float32), name="W")
    g = gn.placeholder("g", (37, 29))
    cost = 1e-3 * gn.sum(abs(W)) + 1e-4 * gn.sum(W * W)
    return W, gn.function([g], cost, updates=[(W, W - 0.1 * (g + 2e-4 * W))])


def fused_kernel(fn):
    return next(k for k in fn.kernels if k.kind == "fused" and "sum" in k.ops)


def test_an_update_written_in_place_is_computed_into_a_scratch_row_then_copied(decay_step):
    W, step = decay_step
    step(np.zeros((37, 29), np.float32))
    source = fused_kernel(step).source
    assert re.search(r"w0 = np\.empty\(C, ", source) and "w0[j] = " in source


def test_a_sum_along_rows_in_a_kernel_that_stores_adds_its_scratch_row(decay_step):
    _, step = decay_step
    source = fused_kernel(step).source
    assert "scratch_sum(" in source and "+= t" not in source
    assert re.search(r"s_a\d = np\.empty\(C, np\.float32\)", source)   # float32 terms as float32


def test_the_in_place_update_and_the_penalties_match_numpy(decay_step):
    W, step = decay_step
    rng = np.random.default_rng(3)
    w0 = (100 + rng.standard_normal((37, 29))).astype(np.float32)   # a large mean: the sums' accuracy
    g = rng.standard_normal((37, 29)).astype(np.float32)
    W.set_value(w0)
    cost = step(g)
    w64 = w0.astype(np.float64)
    np.testing.assert_allclose(cost, 1e-3 * np.abs(w64).sum() + 1e-4 * (w64 * w64).sum(), rtol=4 * EPS32)
    expected = w0 - np.float32(0.1) * (g + np.float32(2e-4) * w0)
    np.testing.assert_allclose(W.get_value(), expected, rtol=2 * EPS32, atol=1e-6)
    before = W.get_value(borrow=True)
    step(g)
    assert W.get_value(borrow=True) is before, "the update was not written in place"
