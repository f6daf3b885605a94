"""The convolution family on the device (direct convolutions, pooling, their gradients, the
per-channel reductions and per-image loops) against the CPU backend's compiled kernels.

Shapes are tiny: the simulator runs a few thousand threads a second.
"""
import numpy as np
import pytest

import graphnet as gn
from graphnet import ops

RNG = np.random.default_rng(77)


def conv_layer(conv, pool, bias=True):
    """pool(relu(conv(x, w) + b)) and the gradients of sum(y * r) w.r.t. x, w and b."""
    x = gn.placeholder("x", (None, 2, 5, 4))
    r = gn.placeholder("r", (None,) * 4)
    w = gn.shared(RNG.normal(size=(3, 2, 3, 2)).astype("float32"), name="w")
    b = gn.shared(RNG.normal(size=3).astype("float32"), name="b")
    a = gn.nn.conv2d(x, w, **conv)
    a = ops.add(a, gn.expand_dims(b, (0, 2, 3))) if bias else a
    y = gn.relu(a)
    if pool is not None:
        y = gn.nn.pool_2d(y, **pool)
    return [x, r], [y] + gn.grad(gn.sum(ops.mul(y, r)), [x, w, b] if bias else [x, w])


def run_both(inputs, outputs, feeds):
    cuda_fn = gn.function(inputs, outputs, backend="cuda")
    return cuda_fn, cuda_fn(*feeds), gn.function(inputs, outputs, backend="cpu")(*feeds)


@pytest.mark.parametrize("conv, pool", [
    (dict(border_mode="half"), dict(ws=(2, 2), ignore_border=False)),
    (dict(border_mode=(1, 0), subsample=(2, 1), filter_flip=False, filter_dilation=(1, 2)), None),
    (dict(border_mode="full"), dict(ws=(3, 2), stride=(2, 1), pad=(1, 1), mode="average_exc_pad")),
], ids=["half-maxpool", "strided-dilated", "full-avgpool"])
def test_conv_layer_on_the_device_matches_the_cpu_backend(conv, pool, assert_close):
    inputs, outputs = conv_layer(conv, pool)
    x = RNG.normal(size=(2, 2, 5, 4)).astype("float32")
    y_shape = gn.function(inputs[:1], outputs[:1], backend="reference")(x)[0].shape
    fn, got, want = run_both(inputs, outputs, (x, RNG.normal(size=y_shape).astype("float32")))
    assert_close(got, want, rtol=1e-4, atol=1e-5)
    kinds = {s.kernel.kind for s in fn.program.steps}
    assert {"conv", "reduce"} <= kinds and all(s.kernel.device == "gpu" or s.kernel.kind == "view"
                                               or "averagepool2dgrad" in s.kernel.ops for s in fn.program.steps)


def test_conv_batch_norm_relu_training_on_the_device_matches_the_cpu_backend(assert_close):
    x = gn.placeholder("x", (None, 2, 4, 4))
    conv = gn.nn.Conv2D(2, 3, 3, activation="linear", border_mode="half", bias=False, seed=3)
    bn = gn.nn.BatchNorm(3)
    y = gn.relu(bn.build(conv.build(x)))
    outputs = [y] + gn.grad(gn.sum(ops.mul(y, y)), [x, conv.W, bn.gamma])
    feed = RNG.normal(size=(2, 2, 4, 4)).astype("float32")
    got = gn.function([x], outputs, backend="cuda", training=True, no_default_updates=True)(feed)
    want = gn.function([x], outputs, backend="cpu", training=True, no_default_updates=True)(feed)
    assert_close(got, want, rtol=1e-4, atol=1e-5)
