"""graphnet's product for few rows (runtime/small_gemm.py): against float64 NumPy, and inside a
compiled loop against the same loop on BLAS and a NumPy recurrence."""
import numpy as np
import pytest

import graphnet as gn
from graphnet.compiler.runtime import small_gemm
from graphnet.compiler.runtime.small_gemm import fits, small_gemm_into


@pytest.mark.parametrize("m, k, n", [(1, 5, 1), (8, 16, 32), (9, 33, 47), (20, 40, 500), (32, 128, 512)])
def test_the_product_matches_numpy_on_short_row_blocks_and_column_rests(m, k, n):
    # 8-row blocks and a shorter last one; 32-column blocks, a 16-column one, then a rest
    rng = np.random.default_rng(m * n)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    out = np.full((m, n), np.nan, np.float32)
    assert fits(a, b, out)
    small_gemm_into(a, b, out)
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)


def test_any_strides_of_the_left_operand_and_strided_rows_of_the_others():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((40, 12), dtype=np.float32).T           # a .T view
    b = rng.standard_normal((40, 100), dtype=np.float32)[:, ::1][:, 10:90]   # rows of stride 100
    out = np.zeros((12, 200), np.float32)[:, 50:130]
    small_gemm_into(a, b, out)
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)
    columns_apart = rng.standard_normal((80, 40), dtype=np.float32).T   # b's columns not adjacent
    assert not fits(a, columns_apart, out)
    small_gemm_into(a, columns_apart, out)                            # still right: a plain loop
    np.testing.assert_allclose(out, a.astype(np.float64) @ columns_apart, rtol=1e-5, atol=1e-5)


def test_only_float32_products_with_few_rows_and_enough_work_are_its():
    assert small_gemm.wanted(32, 512, 128, np.float32, False)
    assert not small_gemm.wanted(33, 512, 128, np.float32, False)    # BLAS blocks deeper products
    assert not small_gemm.wanted(32, 512, 128, np.float64, False)
    assert not small_gemm.wanted(32, 512, 128, np.float32, True)     # b read as a .T
    assert not small_gemm.wanted(4, 10, 10, np.float32, False)       # a call outweighs the work


def rnn_step_function():
    rng = np.random.default_rng(0)
    batch, inputs, hidden, steps = 16, 8, 64, 5    # h @ U: 16x64 @ 64x64, 65536 multiply-adds
    x, h0 = gn.placeholder("x_sg", (steps, batch, inputs)), gn.placeholder("h0_sg", (batch, hidden))
    W = rng.standard_normal((inputs, hidden)).astype("float32") * 0.3
    U = rng.standard_normal((hidden, hidden)).astype("float32") * 0.3
    w, u = gn.shared(W, name="W_sg"), gn.shared(U, name="U_sg")
    hs, _ = gn.scan(lambda x_t, h: gn.tanh(gn.dot(x_t, w) + gn.dot(h, u)), sequences=x, outputs_info=[h0],
                    name="rnn_sg")
    loss = gn.sum(hs * hs)
    fn = gn.function([x, h0], [loss, hs] + list(gn.grad(loss, [w, u])))
    feeds = (rng.standard_normal((steps, batch, inputs)).astype("float32"),
             rng.standard_normal((batch, hidden)).astype("float32"))
    fn(*feeds)
    fn.wait_compiled()
    return fn, feeds, W, U


def test_a_compiled_loops_per_step_products_run_on_it_and_match_blas_and_numpy(monkeypatch):
    fn, feeds, W, U = rnn_step_function()
    loops = [k for k in fn.kernels if k.kind == "loop"]
    assert len(loops) == 2 and all(k.runs == "compiled loop" and "small_gemm_into" in k.source for k in loops)
    got = fn(*feeds)
    monkeypatch.setattr(small_gemm, "ENABLED", False)
    blas, _, _, _ = rnn_step_function()
    assert not any("small_gemm_into" in k.source for k in blas.kernels if k.kind == "loop")
    for g, want in zip(got, blas(*feeds)):   # float32 both, summed in another order (5 steps back)
        np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    x, h = feeds[0].astype(np.float64), feeds[1].astype(np.float64)
    states = []
    for x_t in x:
        h = np.tanh(x_t @ W + h @ U)
        states.append(h)
    np.testing.assert_allclose(got[1], np.array(states), rtol=1e-5, atol=1e-5)
