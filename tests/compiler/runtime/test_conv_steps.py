"""The compiled convolution family on the CPU (im2col + GEMM with epilogues, pooling, per-channel
reductions, per-image loops) against the NumPy references of the ops (the reference backend),
and against PyTorch when it is installed.

Each graph is a conv layer's forward and backward, so every kernel kind of the family runs:
the convolution with its bias + ReLU epilogue, pooling and its gradient, the ReLU mask, the
input and filter gradients and the per-channel bias gradient. Shapes are tiny; the templates
take their parameters as arguments, so a new parameter set costs no compile.
"""
import numpy as np
import pytest

import graphnet as gn
from graphnet import ops
from graphnet.compiler.runtime.conv_steps import ConvStep, ImageLoopStep, PoolStep
from graphnet.compiler.schedule.plan import ChannelReduceKernel, ConvKernel, PoolKernel
from graphnet.errors import NumericsError

RNG = np.random.default_rng(2020)


def conv_layer_graph(x_shape, w_shape, dtype="float64", pool=None, **conv):
    """y = pool(relu(conv(x, w) + b)); loss = sum(y * r); outputs y and the gradients of x, w, b."""
    x = gn.placeholder("x", (None,) + x_shape[1:], dtype)
    r = gn.placeholder("r", (None,) * 4, dtype)
    w = gn.shared(RNG.normal(size=w_shape).astype(dtype), name="w")
    b = gn.shared(RNG.normal(size=w_shape[0]).astype(dtype), name="b")
    a = ops.add(gn.nn.conv2d(x, w, **conv), gn.expand_dims(b, (0, 2, 3)))
    y = gn.relu(a)
    if pool is not None:
        y = gn.nn.pool_2d(y, **pool)
    loss = gn.sum(ops.mul(y, r))
    return [x, r], [y] + gn.grad(loss, [x, w, b])


def run_both(inputs, outputs, feeds, **options):
    """(compiled cpu, reference) results of the same graph on the same feeds."""
    compiled = gn.function(inputs, outputs, **options)
    reference = gn.function(inputs, outputs, backend="reference", **options)
    return compiled, compiled(*feeds), reference(*feeds)




CONV_CASES = [
    dict(border_mode="valid"),
    dict(border_mode="half"),
    dict(border_mode="full", filter_flip=False),
    dict(border_mode=(1, 2), subsample=(2, 1)),
    dict(border_mode="valid", filter_dilation=(2, 1)),
    dict(border_mode=1, subsample=(2, 2), filter_flip=False),
]


@pytest.mark.parametrize("conv", CONV_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_conv_layer_forward_and_backward_match_the_numpy_references(conv):
    x_shape, w_shape = (2, 3, 7, 6), (4, 3, 3, 2)
    inputs, outputs = conv_layer_graph(x_shape, w_shape, **conv)
    x = RNG.normal(size=x_shape)
    y_shape = gn.function([inputs[0]], [outputs[0]], backend="reference")(x)[0].shape
    fn, got, want = run_both(inputs, outputs, (x, RNG.normal(size=y_shape)))
    for g, w_ in zip(got, want):
        np.testing.assert_allclose(g, w_, rtol=1e-10, atol=1e-10)
    assert any(isinstance(s, ConvStep) for s in fn.program.steps)


def test_pointwise_convolution_reads_the_image_as_its_columns():
    inputs, outputs = conv_layer_graph((2, 5, 4, 3), (6, 5, 1, 1))
    fn, got, want = run_both(inputs, outputs, (RNG.normal(size=(2, 5, 4, 3)), RNG.normal(size=(2, 6, 4, 3))))
    for g, w_ in zip(got, want):
        np.testing.assert_allclose(g, w_, rtol=1e-10, atol=1e-10)


POOL_CASES = [
    dict(ws=(2, 2)),
    dict(ws=(3, 2), stride=(2, 1), ignore_border=False),
    dict(ws=(3, 3), stride=(2, 2), pad=(1, 1), mode="max"),
    dict(ws=(2, 3), mode="sum"),
    dict(ws=(3, 3), stride=(2, 2), pad=(1, 2), mode="average_inc_pad"),
    dict(ws=(3, 3), stride=(2, 2), pad=(1, 1), mode="average_exc_pad"),
    dict(ws=(2, 2), ignore_border=False, mode="average_exc_pad"),
]


@pytest.mark.parametrize("pool", POOL_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_conv_pool_layer_matches_the_numpy_references(pool):
    x_shape = (2, 3, 7, 6)
    inputs, outputs = conv_layer_graph(x_shape, (4, 3, 3, 3), pool=pool, border_mode="half")
    x = RNG.normal(size=x_shape)
    y_shape = gn.function([inputs[0]], [outputs[0]], backend="reference")(x)[0].shape
    fn, got, want = run_both(inputs, outputs, (x, RNG.normal(size=y_shape)))
    for g, w_ in zip(got, want):
        np.testing.assert_allclose(g, w_, rtol=1e-10, atol=1e-10)
    assert any(isinstance(s, PoolStep) for s in fn.program.steps)


def test_max_pool_gradient_is_shared_by_tied_maxima_as_the_reference():
    x = gn.placeholder("x", (None, 1, 4, 4), "float64")
    y = gn.nn.pool_2d(x, (2, 2), stride=(1, 1))
    fn, got, want = run_both([x], [y, gn.grad(gn.sum(y), x)], (np.ones((1, 1, 4, 4)),))
    np.testing.assert_array_equal(got[1], want[1])
    assert got[1][0, 0, 1, 1] == 4   # four overlapping windows, every pixel a maximum


def test_conv_bias_relu_is_one_kernel_with_the_convolution():
    inputs, outputs = conv_layer_graph((2, 3, 6, 6), (4, 3, 3, 3), border_mode="half")
    fn = gn.function(inputs, outputs[:1])
    conv = [k for k in fn.program.plan.kernels if isinstance(k, ConvKernel)]
    assert len(conv) == 1 and [n.op.name for n in conv[0].nodes] == ["conv2d", "add", "relu"]
    assert not conv[0].write_product   # the pre-bias product never leaves the kernel
    assert "conv2d, add, relu" in fn.report()


def test_the_backward_uses_every_compiled_kernel_of_the_family():
    inputs, outputs = conv_layer_graph((2, 3, 6, 6), (4, 3, 3, 3), pool=dict(ws=(2, 2)), border_mode="half")
    plan = gn.function(inputs, outputs).program.plan
    kinds = {type(k) for k in plan.kernels}
    assert {ConvKernel, PoolKernel, ChannelReduceKernel} <= kinds
    ops = {n.op.name for k in plan.kernels if isinstance(k, ConvKernel) for n in k.nodes}
    assert {"conv2d", "conv2dgradinput", "conv2dgradfilters"} <= ops


def conv_bn_relu(training, dtype="float64"):
    x = gn.placeholder("x", (None, 3, 5, 5), dtype)
    conv = gn.nn.Conv2D(3, 4, 3, activation="linear", border_mode="half", bias=False, seed=1, dtype=dtype)
    bn = gn.nn.BatchNorm(4, dtype=dtype)
    bn.running_mean.set_value(RNG.normal(size=4).astype(dtype))
    bn.running_var.set_value(RNG.uniform(0.5, 2, size=4).astype(dtype))
    bn.gamma.set_value(RNG.uniform(0.5, 2, size=4).astype(dtype))
    y = gn.relu(bn.build(conv.build(x)))
    params = [conv.W, bn.gamma, bn.beta]
    outputs = [y] + (gn.grad(gn.sum(ops.mul(y, y)), [x] + params) if training else [])
    return x, outputs, bn


def test_conv_batch_norm_relu_in_evaluation_is_one_kernel_and_matches_the_reference():
    x, outputs, _ = conv_bn_relu(training=False)
    feed = RNG.normal(size=(2, 3, 5, 5))
    fn, got, want = run_both([x], outputs, (feed,))
    np.testing.assert_allclose(got[0], want[0], rtol=1e-10, atol=1e-12)
    conv = next(k for k in fn.program.plan.kernels if isinstance(k, ConvKernel))
    assert {"conv2d", "sub", "mul", "add", "relu"} <= {n.op.name for n in conv.nodes}


def test_conv_batch_norm_relu_training_step_matches_the_reference():
    x, outputs, bn = conv_bn_relu(training=True)
    feed = RNG.normal(size=(3, 3, 5, 5))
    start = bn.running_mean.get_value(), bn.running_var.get_value()
    fn = gn.function([x], outputs, training=True)
    got = fn(feed)
    after = bn.running_mean.get_value(), bn.running_var.get_value()
    bn.running_mean.set_value(start[0])
    bn.running_var.set_value(start[1])
    want = gn.function([x], outputs, training=True, backend="reference")(feed)
    for g, w_ in zip(got, want):
        np.testing.assert_allclose(g, w_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(after[0], bn.running_mean.get_value(), rtol=1e-10)
    np.testing.assert_allclose(after[1], bn.running_var.get_value(), rtol=1e-10)
    steps = fn.program.steps
    # the statistics accumulated by the convolution image by image; normalize + ReLU one loop per image
    conv = next(k for k in fn.program.plan.kernels if isinstance(k, ConvKernel) and k.node.op.name == "conv2d")
    assert conv.statistics is not None and conv.statistics.op.name == "moments" and conv.write_product
    assert any(isinstance(s, ImageLoopStep) and "relu" in s.kernel.ops for s in steps)


def test_a_nan_from_the_convolution_epilogue_names_its_node():
    inputs, outputs = conv_layer_graph((1, 3, 4, 4), (2, 3, 3, 3), border_mode="half")
    fn = gn.function(inputs[:1], outputs[:1], check_numerics=True)
    x = np.ones((1, 3, 4, 4))
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(NumericsError, match="conv2d"):
        fn(x)


def test_float32_conv_layer_matches_pytorch():
    torch = pytest.importorskip("torch")
    x = RNG.normal(size=(2, 3, 8, 8)).astype(np.float32)
    w = RNG.normal(size=(5, 3, 3, 3)).astype(np.float32)
    b = RNG.normal(size=5).astype(np.float32)
    xv = gn.placeholder("x", (None, 3, 8, 8))
    wv, bv = gn.shared(w, name="w"), gn.shared(b, name="b")
    y = gn.nn.pool_2d(gn.relu(ops.add(gn.nn.conv2d(xv, wv, border_mode=1, subsample=(2, 1), filter_flip=False),
                                       gn.expand_dims(bv, (0, 2, 3)))), (2, 2))
    got = gn.function([xv], [y] + gn.grad(gn.sum(ops.mul(y, y)), [xv, wv, bv]))(x)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.max_pool2d(torch.relu(torch.nn.functional.conv2d(tx, tw, tb, stride=(2, 1),
                                                                              padding=1)), 2)
    (ty * ty).sum().backward()
    for g, t in zip(got, [ty, tx.grad, tw.grad, tb.grad]):
        np.testing.assert_allclose(g, t.detach().numpy(), rtol=2e-4, atol=2e-4)


def test_images_run_side_by_side_in_lanes_and_give_the_same_values(monkeypatch):
    from graphnet.compiler.runtime import conv_steps, threads
    if threads.num_threads() < 2:
        pytest.skip("one thread: the images run in one lane")
    monkeypatch.setattr(conv_steps, "LANE_MIN_ELEMENTS", 1)
    monkeypatch.setattr(threads, "crowded", lambda: False)   # the test machine may be busy
    inputs, outputs = conv_layer_graph((5, 3, 6, 5), (4, 3, 3, 3), pool=dict(ws=(2, 2)), border_mode="half")
    x = RNG.normal(size=(5, 3, 6, 5))
    fn, got, want = run_both(inputs, outputs, (x, RNG.normal(size=(5, 4, 3, 2))))
    for g, w_ in zip(got, want):
        np.testing.assert_allclose(g, w_, rtol=1e-10, atol=1e-10)
    conv_steps = [s for s in fn.program.steps if isinstance(s, ConvStep)]
    assert len(conv_steps) == 3 and all(s.kernel.ran_parallel for s in conv_steps)
