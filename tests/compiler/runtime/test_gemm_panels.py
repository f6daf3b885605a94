"""A product with a shallow inner dimension and an elementwise epilogue may run in panels of
rows, each taken by the epilogue while in cache; both ways give NumPy's values."""
import numpy as np
import pytest

import graphnet as gn
from graphnet.compiler.runtime import steps
from graphnet.compiler.runtime.steps import PANEL_ROWS, GemmStep

ROWS = 4 * PANEL_ROWS + 7      # whole panels and a shorter last one


@pytest.fixture(scope="module")
def momentum_step():
    """A layer's weight update through momentum: W += v, v = 0.9 v - 0.1 x.T @ g (x: a batch of 16)."""
    rng = np.random.default_rng(0)
    W = gn.shared(rng.standard_normal((ROWS, 24)).astype(np.float32), name="W")
    v = gn.shared(np.zeros((ROWS, 24), np.float32), name="v")
    x = gn.placeholder("x", (16, ROWS))
    g = gn.placeholder("g", (16, 24))
    new_v = 0.9 * v - 0.1 * gn.dot(x.T, g)
    return W, v, gn.function([x, g], [], updates=[(v, new_v), (W, W + new_v)])


def numpy_updates(W, v, x, g):
    new_v = np.float32(0.9) * v - np.float32(0.1) * (x.T @ g)
    return W + new_v, new_v


def test_the_update_product_takes_panels(momentum_step):
    W, v, step = momentum_step
    rng = np.random.default_rng(1)
    step(rng.standard_normal((16, ROWS)).astype(np.float32), rng.standard_normal((16, 24)).astype(np.float32))
    [gemm] = [s for s in step.program.steps if isinstance(s, GemmStep)]
    frame = next(iter(step.program._frames.values()))[0]
    assert gemm.takes_panels(frame, gemm.epilogue.calls(frame))


def test_every_call_matches_numpy_whichever_way_the_product_runs(momentum_step):
    W, v, step = momentum_step
    rng = np.random.default_rng(2)
    w_ref, v_ref = W.get_value(), v.get_value()
    for _ in range(40):     # the measured choice runs both ways, then keeps one
        x = rng.standard_normal((16, ROWS)).astype(np.float32)
        g = rng.standard_normal((16, 24)).astype(np.float32)
        step(x, g)
        w_ref, v_ref = numpy_updates(w_ref, v_ref, x, g)
        np.testing.assert_allclose(v.get_value(), v_ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(W.get_value(), w_ref, rtol=1e-5, atol=1e-5)


def test_a_product_with_a_deep_inner_dimension_runs_whole():
    W = gn.shared(np.zeros((ROWS, 8), np.float32), name="W")
    x = gn.placeholder("x", (steps.PANEL_MAX_K + 1, ROWS))
    g = gn.placeholder("g", (steps.PANEL_MAX_K + 1, 8))
    step = gn.function([x, g], [], updates=[(W, W - 0.1 * gn.dot(x.T, g))])
    step(np.ones((steps.PANEL_MAX_K + 1, ROWS), np.float32), np.ones((steps.PANEL_MAX_K + 1, 8), np.float32))
    [gemm] = [s for s in step.program.steps if isinstance(s, GemmStep)]
    frame = next(iter(step.program._frames.values()))[0]
    assert not gemm.takes_panels(frame, gemm.epilogue.calls(frame))
    np.testing.assert_allclose(W.get_value(), np.full((ROWS, 8), -0.1 * (steps.PANEL_MAX_K + 1)), rtol=1e-6)



def test_with_tiering_on_the_product_is_right_while_the_epilogue_kernels_load(monkeypatch):
    """The first calls run on NumPy, then whichever way the product runs (the panels only once
    the epilogue's serial kernel is loaded): every call's update is NumPy's."""
    from graphnet.compiler.runtime import tiered
    monkeypatch.setenv(tiered.TIERED_ENV, "1")
    W = gn.shared(np.zeros((ROWS, 24), np.float32), name="W")
    x = gn.placeholder("x", (16, ROWS))
    g = gn.placeholder("g", (16, 24))
    step = gn.function([x, g], [], updates=[(W, W - 0.5 * gn.dot(x.T, g))])
    ones_x, ones_g = np.ones((16, ROWS), np.float32), np.ones((16, 24), np.float32)
    for calls in range(1, 41):
        step(ones_x, ones_g)
        if calls == 20:
            step.wait_compiled()
        np.testing.assert_allclose(W.get_value(), np.full((ROWS, 24), -0.5 * 16 * calls), rtol=1e-6)


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_products_run_from_python_match_numpy_for_every_transpose(trans_a, trans_b):
    # From Python a transposed left operand goes to np.matmul (np.dot makes an extra pass over
    # its output there), the others to np.dot: both must give NumPy's product
    rng = np.random.default_rng(7)
    a = gn.placeholder("a", (9, 6) if trans_a else (6, 9))
    b = gn.placeholder("b", (5, 9) if trans_b else (9, 5))
    product = gn.dot(a.T if trans_a else a, b.T if trans_b else b)
    fn = gn.function([a, b], gn.tanh(product) + 1.0)
    av, bv = (rng.standard_normal(v.shape).astype("float32") for v in (a, b))
    want = np.tanh((av.T if trans_a else av) @ (bv.T if trans_b else bv)) + 1.0
    np.testing.assert_allclose(fn(av, bv), want, rtol=1e-5, atol=1e-6)
    assert steps.python_product(trans_a) is (np.matmul if trans_a else np.dot)
