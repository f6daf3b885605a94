"""Fusion rule 8: a cheap elementwise chain is recomputed by the kernel reading it instead of
being stored and read back, when that moves fewer bytes; otherwise the report says why not."""
import numpy as np

import graphnet as gn

ROWS, COLS = 64, 16


def full_size_writes(kernel):
    return [v for v in kernel.outputs if tuple(v.shape)[-1:] == (COLS,) and v.ndim == 2]


def bn_relu_backward():
    x = gn.placeholder("x", (None, COLS))
    gamma = gn.shared(np.linspace(0.5, 1.5, COLS).astype("float32"), name="gamma")
    beta = gn.shared(np.linspace(-0.2, 0.2, COLS).astype("float32"), name="beta")
    dy = gn.placeholder("dy", (None, COLS))
    y = gn.relu(gn.nn.batch_norm(x, gamma, beta, eps=1e-5))
    return [x, dy], gn.grad(gn.sum(y * dy), [x, gamma, beta]), gamma, beta


def numpy_bn_relu_backward(x, dy, gamma, beta, eps=1e-5):
    """The textbook batch-norm backward in float64 (an oracle independent of graphnet's graph)."""
    x, dy = x.astype(np.float64), dy.astype(np.float64)
    mean, var = x.mean(0), x.var(0)
    inv_std = 1 / np.sqrt(var + eps)
    xhat = (x - mean) * inv_std
    g = dy * (gamma * xhat + beta > 0)
    dgamma, dbeta = (g * xhat).sum(0), g.sum(0)
    dxhat = g * gamma
    dx = inv_std * (dxhat - dxhat.mean(0) - xhat * (dxhat * xhat).mean(0))
    return dx, dgamma, dbeta


def test_batch_norm_backward_recomputes_the_centred_input_and_masked_gradient_in_the_dx_kernel():
    inputs, grads, gamma, beta = bn_relu_backward()
    fn = gn.function(inputs, grads, training=True, backend="cpu")
    recomputed = [r for r in fn.program.plan.recomputes if r.reason is None]
    assert {r.var.owner.op.name for r in recomputed} == {"sub", "mul"}, fn.program.plan.recomputes
    sums, dx = [k for k in fn.kernels if "sum" in k.ops], fn.kernels[-1]
    # The kernel of the four sums stores no full-size value: dx computes what it read back before.
    assert sums and all(not full_size_writes(k) for k in sums), [(k.ops, k.outputs) for k in sums]
    assert "where" in dx.ops and "sub" in dx.ops
    assert any("rule 8" in how for _, _, how in fn.program.plan.fusions)
    assert "recomputed by their reader" in fn.report()
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((ROWS, COLS)) * 2 + 0.5).astype("float32")
    dy = rng.standard_normal((ROWS, COLS)).astype("float32")
    for got, want in zip(fn(x, dy), numpy_bn_relu_backward(x, dy, gamma.get_value(), beta.get_value())):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_a_chain_needing_more_reads_than_it_saves_is_stored_and_the_refusal_says_why():
    a, b, c = (gn.placeholder(n, (None, COLS)) for n in "abc")
    t = a * b * c          # recomputing reads a, b and c: 12 bytes per element for 8 saved
    s = gn.sum(t, axis=0)
    out = t * s            # broadcasts the sum back: a second kernel (rule 2) reading t
    fn = gn.function([a, b, c], out, backend="cpu")
    (refused,) = [r for r in fn.program.plan.recomputes if r.var is t]
    assert refused.reason and "saves 8 bytes per element but reads 12" in refused.reason
    assert any(var is t and "not recomputed in the reader (rule 8)" in why for var, _, why in fn.refusals)
    rng = np.random.default_rng(1)
    va, vb, vc = (rng.standard_normal((ROWS, COLS)).astype("float32") for _ in range(3))
    expected = va * vb * vc * (va * vb * vc).sum(0)
    np.testing.assert_allclose(fn(va, vb, vc), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_a_chain_longer_than_the_limit_is_not_recomputed():
    from graphnet.compiler.schedule.recompute import MAX_CHAIN_NODES
    x = gn.placeholder("x", (None, COLS))
    t = x
    for k in range(MAX_CHAIN_NODES + 1):
        t = t * 1.5 + float(k) if k % 2 else gn.relu(t)
    s = gn.sum(t, axis=0)
    fn = gn.function([x], t * s + x, backend="cpu")
    (considered,) = fn.program.plan.recomputes   # the rewritten graph's t: the one pair
    assert considered.reason and f"more than {MAX_CHAIN_NODES}" in considered.reason
    v = np.random.default_rng(2).standard_normal((ROWS, COLS)).astype("float32")
    ref = gn.function([x], t * s + x, backend="cpu", fuse=False)
    np.testing.assert_allclose(fn(v), ref(v), rtol=1e-5, atol=1e-5)


def test_a_chain_reading_a_value_its_kernel_stores_for_another_reader_still_saves_the_read():
    x = gn.placeholder("x", (None, COLS))
    t = gn.relu(x - 0.25)
    s = gn.sum(t, axis=0)
    fn = gn.function([x], [t * s + x, t], backend="cpu")   # t is an output: stored anyway
    (done,) = [r for r in fn.program.plan.recomputes if r.var is t]
    assert done.reason is None and done.saved == 4   # the read, not the store: an output needs it
    v = np.random.default_rng(3).standard_normal((ROWS, COLS)).astype("float32")
    got_product, got_t = fn(v)
    want_t = np.maximum(v - 0.25, 0)
    np.testing.assert_allclose(got_t, want_t, rtol=1e-6)
    np.testing.assert_allclose(got_product, want_t * want_t.sum(0) + v, rtol=1e-5, atol=1e-5)


def test_a_gemm_epilogue_recomputing_a_chain_keeps_the_product_unstored():
    x, a = gn.placeholder("x", (None, 8)), gn.placeholder("a", (None, COLS))
    W = gn.shared(np.random.default_rng(4).standard_normal((8, COLS)).astype("float32"), name="W")
    t = a * 2.0 - 1.0
    s = gn.sum(t, axis=0)
    out = gn.dot(x, W) * (t + s)    # the product's epilogue recomputes t from a
    fn = gn.function([x, a], out, backend="cpu")
    (gemm,) = [k for k in fn.program.plan.kernels if getattr(k, "epilogue", None) is not None]
    (sums,) = [k for k in fn.program.plan.kernels if "sum" in k.ops]
    assert not gemm.write_product and a in gemm.reads, (gemm.ops, gemm.reads)
    assert len(gemm.epilogue.outputs) == 1 and sums.writes == sums.reduced   # t is never stored
    assert [r.reason for r in fn.program.plan.recomputes] == [None]
    rng = np.random.default_rng(5)
    vx, va = rng.standard_normal((ROWS, 8)).astype("float32"), rng.standard_normal((ROWS, COLS)).astype("float32")
    vt = va * 2 - 1
    expected = (vx @ W.get_value()) * (vt + vt.sum(0))
    np.testing.assert_allclose(fn(vx, va), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
