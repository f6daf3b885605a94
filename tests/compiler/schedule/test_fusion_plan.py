"""The kernel plan: which nodes fuse, what users see in ``fn.kernels``, and why nodes stay apart."""
import numpy as np
import pytest

import graphnet as gn


def non_blas(fn):
    return [k for k in fn.kernels if not k.is_blas and k.kind != "view"]


@pytest.fixture(scope="module")
def dense_relu():
    x = gn.placeholder("x", (None, 6))
    W = gn.shared(np.random.default_rng(0).standard_normal((6, 5)).astype("float32"), name="W")
    b = gn.shared(np.linspace(-1, 1, 5).astype("float32"), name="b")
    return x, W, b, gn.relu(gn.dot(x, W) + b)


def test_dense_relu_is_one_gemm_kernel_with_bias_and_relu_as_its_epilogue(dense_relu):
    x, W, b, h = dense_relu
    fn = gn.function([x], h, backend="cpu")
    (gemm,) = fn.kernels
    assert gemm.is_blas and gemm.ops == ["dot", "add", "relu"]
    assert "np.dot" in gemm.source and "def kernel" in gemm.source and "relu" in gemm.source
    product = gemm.nodes[0].outputs[0]
    assert any(var is product and "epilogue" in how for var, _, how in fn.program.plan.fusions)
    assert not any(var is product for var, _, _ in fn.refusals)
    xb = np.random.default_rng(1).standard_normal((4, 6)).astype("float32")
    expected = np.maximum(xb @ W.get_value() + b.get_value(), 0)
    np.testing.assert_allclose(fn(xb), expected, rtol=1e-5, atol=1e-6)


def test_backward_epilogue_fuses_relu_mask_with_bias_gradient(dense_relu):
    x, W, b, h = dense_relu
    gW, gb = gn.grad(gn.sum(h * h), [W, b])
    fn = gn.function([x], [gW, gb], backend="cpu")
    fused_with_sum = [k for k in non_blas(fn) if "sum" in k.ops and "where" in k.ops]
    assert fused_with_sum, [k.ops for k in fn.kernels]


def test_batch_norm_relu_forward_is_at_most_two_kernels():
    x = gn.placeholder("x", (None, 8))
    gamma = gn.shared(np.ones(8, "float32"), name="gamma")
    beta = gn.shared(np.zeros(8, "float32"), name="beta")
    y = gn.relu(gn.nn.batch_norm(x, gamma, beta))
    fn = gn.function([x], y, backend="cpu", training=True)
    assert len(non_blas(fn)) <= 2, [k.ops for k in fn.kernels]
    xb = np.random.default_rng(2).standard_normal((16, 8)).astype("float32") * 3 + 1
    ref = gn.function([x], y, backend="reference", training=True)
    np.testing.assert_allclose(fn(xb), ref(xb), rtol=1e-4, atol=1e-5)


def test_momentum_update_is_one_kernel_per_parameter():
    x = gn.placeholder("x", (None, 3))
    W = gn.shared(np.ones((3, 2), "float32"), name="W")
    v = gn.shared(np.zeros((3, 2), "float32"), name="v")
    loss = gn.sum(gn.dot(x, W) ** 2)
    v_new = 0.9 * v - 0.1 * gn.grad(loss, W)
    fn = gn.function([x], loss, updates=[(v, v_new), (W, W + v_new)], backend="cpu")
    writers = [k for k in fn.kernels if any(o in (fn.fgraph.updates[0][1], fn.fgraph.updates[1][1])
                                            for o in k.outputs)]
    assert len(writers) == 1


def test_unfused_plan_has_one_kernel_per_op(dense_relu):
    x, W, b, h = dense_relu
    fn = gn.function([x], h, backend="cpu", fuse=False)
    assert all(len(k.ops) == 1 for k in fn.kernels)
    assert any("fusion is off" in reason for _, _, reason in fn.refusals)


def test_refusals_name_a_readable_reason():
    x = gn.placeholder("x", (None, 4))
    s = gn.softmax(x)
    y = gn.exp(s) + gn.sum(x, axis=1, keepdims=True)
    fn = gn.function([x], y, backend="cpu")
    reasons = [reason for _, _, reason in fn.refusals]
    assert reasons and all(isinstance(r, str) and len(r) > 10 for r in reasons)


def test_structurally_identical_kernels_share_one_compiled_function():
    x1, x2 = gn.placeholder("x1", (None, 4)), gn.placeholder("x2", (None, 4))
    a = gn.shared(np.ones(4, "float32"), name="a")
    c = gn.shared(np.ones(4, "float32"), name="c")
    fn = gn.function([x1, x2], [gn.tanh(x1 * 2.0 + a), gn.tanh(x2 * 2.0 + c)], backend="cpu")
    compiled = [k.compiled for k in non_blas(fn)]
    assert len(compiled) == 2 and compiled[0] is compiled[1]


def test_weight_decay_reads_each_weight_once_for_both_penalties_and_their_gradients():
    # The Theano MLP tutorial's cost: L1 and L2 of two weight matrices. Each matrix's two sums
    # share one loop over W (horizontal fusion), their additions its epilogue; the gradient
    # terms sign(W) and 2 W read W's shape, not W ** 2, so they are free to join the weight
    # gradient's GEMM epilogue, which reads W anyway.
    rng = np.random.default_rng(1)
    x = gn.placeholder("x_decay", (None, 6))
    W1 = gn.shared(rng.standard_normal((6, 7)).astype("float32"), name="W1_decay")
    W2 = gn.shared(rng.standard_normal((7, 3)).astype("float32"), name="W2_decay")
    cost = gn.sum(gn.tanh(gn.dot(gn.tanh(gn.dot(x, W1)), W2))) \
        + 0.01 * (gn.sum(abs(W1)) + gn.sum(abs(W2))) + 0.001 * (gn.sum(W1 ** 2) + gn.sum(W2 ** 2))
    grads = gn.grad(cost, [W1, W2])
    fn = gn.function([x], [cost, *grads], backend="cpu")
    reference = gn.function([x], [cost, *grads], backend="reference")
    readers = [k for k in fn.kernels if any(v is W1 for v in k.inputs)]
    assert len([k for k in readers if not k.is_blas]) == 1
    assert {"abs", "sign"} <= {op for k in readers for op in k.ops}   # (W ** 2 is W * W: canonicalize)
    xb = rng.standard_normal((4, 6)).astype("float32")
    for got, want in zip(fn(xb), reference(xb)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_penalty_sums_and_the_weight_update_share_one_loop_over_the_weights():
    # The tutorial's SGD step: W <- W - lr * (x.T @ dh + l1 sign(W) + 2 l2 W) beside the cost's
    # sum(abs(W)) and sum(W ** 2). Merged (horizontal fusion), one loop reads W for both sums and
    # the update; the product x.T @ dh goes to memory (measured faster than the update as its
    # epilogue beside a loop of its own for the sums: fuse.py, _merge_siblings).
    rng = np.random.default_rng(2)
    x, y = gn.placeholder("x_step", (None, 6)), gn.placeholder("y_step", (None,), "int64")
    W = gn.shared(rng.standard_normal((6, 7)).astype("float32"), name="W_step")
    V = gn.shared(rng.standard_normal((7, 3)).astype("float32"), name="V_step")
    W0, V0 = W.get_value().copy(), V.get_value().copy()
    nll = gn.nn.cross_entropy(gn.dot(gn.tanh(gn.dot(x, W)), V), y)
    cost = nll + 0.01 * gn.sum(abs(W)) + 0.001 * gn.sum(W ** 2)
    gW, gV = gn.grad(cost, [W, V])
    fn = gn.function([x, y], cost, updates=[(W, W - 0.1 * gW), (V, V - 0.1 * gV)], backend="cpu")
    update = next(k for k in fn.kernels if "sub" in k.ops and "sign" in k.ops)
    assert not update.is_blas and {"abs", "sum"} <= set(update.ops)
    assert len([k for k in non_blas(fn) if "abs" in k.ops]) == 1
    xb, yb = rng.standard_normal((4, 6)).astype("float32"), np.array([0, 2, 1, 2])
    h = np.tanh(xb.astype(np.float64) @ W0)
    logits = h @ V0
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    want_cost = -np.log(p[np.arange(4), yb]).mean() + 0.01 * np.abs(W0).sum() + 0.001 * (W0 ** 2).sum()
    dlogits = p.copy()
    dlogits[np.arange(4), yb] -= 1
    dlogits /= 4
    dh = dlogits @ V0.T * (1 - h * h)
    want_W = W0 - 0.1 * (xb.T @ dh + 0.01 * np.sign(W0) + 0.002 * W0)
    np.testing.assert_allclose(fn(xb, yb), want_cost, rtol=1e-5)
    np.testing.assert_allclose(W.get_value(), want_W, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(V.get_value(), V0 - 0.1 * h.T @ dlogits, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------- convolutions and per-channel vectors
def conv_plan(build, training=False):
    """The plan of ``build(x)`` on an NCHW placeholder, and the refusals' reasons by consumer op."""
    from graphnet.compiler.pipeline import optimize
    from graphnet.compiler.rewrite.mode import specialize_mode
    from graphnet.compiler.schedule.plan import plan_kernels
    from graphnet.graph.fgraph import FunctionGraph
    x = gn.placeholder("x", (None, 3, 6, 6))
    graph = optimize(specialize_mode(FunctionGraph((x,), tuple(build(x))), training))
    plan = plan_kernels(graph)
    return plan, {(var.owner.op.name if var.owner else None, node.op.name): why for var, node, why in plan.refusals}


def conv_with(x, bias=True):
    W = gn.shared(np.ones((4, 3, 3, 3), "float32"), name="W")
    a = gn.nn.conv2d(x, W, border_mode="half")
    return gn.ops.add(a, gn.expand_dims(gn.shared(np.zeros(4, "float32"), name="b"), (0, 2, 3))) if bias else a


def test_a_per_channel_vector_makes_the_kernel_run_once_per_image():
    from graphnet.compiler.schedule.plan import ImageLoopKernel
    plan, _ = conv_plan(lambda x: [gn.relu(gn.ops.add(x, gn.expand_dims(gn.shared(np.ones(3, "float32")), (0, 2, 3))))])
    (loop,) = [k for k in plan.kernels if isinstance(k, ImageLoopKernel)]
    assert loop.ops == ["add", "relu"] and ("rows" in {view for _, view in loop.inputs})


def test_batch_norm_statistics_in_training_are_the_convolutions_epilogue_and_normalize_says_why_not():
    from graphnet.compiler.schedule.plan import ChannelReduceKernel, ConvKernel
    gamma, beta = gn.shared(np.ones(4, "float32")), gn.shared(np.zeros(4, "float32"))
    plan, reasons = conv_plan(lambda x: [gn.relu(gn.nn.batch_norm(conv_with(x, bias=False), gamma, beta))],
                              training=True)
    conv = next(k for k in plan.kernels if isinstance(k, ConvKernel))
    assert conv.epilogue is None and conv.statistics.op.name == "moments" and conv.write_product
    assert conv.ops == ["conv2d", "moments"]
    assert not any(isinstance(k, ChannelReduceKernel) and k.node.op.name == "moments" for k in plan.kernels)
    assert ("conv2d", "moments") not in reasons
    assert "first reader took its epilogue" in reasons[("conv2d", "sub")]


def test_dropout_after_a_convolution_is_not_its_per_image_epilogue():
    from graphnet.compiler.schedule.plan import ConvKernel
    plan, reasons = conv_plan(lambda x: [gn.nn.dropout(gn.relu(conv_with(x)), 0.5, seed=3)], training=True)
    conv = next(k for k in plan.kernels if isinstance(k, ConvKernel))
    assert "dropout" not in " ".join(conv.ops)
    assert any("flat index" in why for why in reasons.values()), reasons
