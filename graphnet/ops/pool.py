"""2-D pooling over the last two axes (Theano's ``pool_2d``) and its gradient ops.

Modes, as Theano: ``max``, ``sum``, ``average_inc_pad`` (the zero padding
counts in the divisor) and ``average_exc_pad`` (only real pixels count).
``pad`` adds zeros on both sides of each spatial axis; padding never wins a
max and never adds to a sum. With ``ignore_border=False`` the windows that
run past the bottom or right edge are kept, truncated (their averages divide
by the pixels they hold).

The NumPy reference loops over the window's taps, not over pixels: each tap
is one strided slice of the (padded) input, combined with ``np.maximum`` or
``+``. The gradients do the same in reverse (one strided add per tap). Max
pooling's gradient goes to every element equal to its window's maximum, as
Theano's (and graphnet's ``max``): ties share it.
"""
from __future__ import annotations

import numpy as np

from graphnet.errors import DTypeError, GraphnetError, ShapeError
from graphnet.graph.ir import Apply, Op, TensorType, as_variable, shape_str
from graphnet.ops.conv import pair

MODES = ("max", "sum", "average_inc_pad", "average_exc_pad")


def pooled_size(size, window, stride, pad, ignore_border):
    """Output rows (or cols) of pooling ``size`` pixels, as Theano's ``Pool.out_shape``."""
    if size is None:
        return None
    if ignore_border:
        return max(0, (size + 2 * pad - window) // stride + 1)
    if stride >= window:
        return (size - 1) // stride + 1
    return max(0, (size - 1 - window + stride) // stride) + 1


class PoolParams(Op):
    """What pooling and its gradients share: the parameters, the shapes and the window taps."""

    kind = "pool"
    __props__ = ("ws", "ignore_border", "stride", "pad", "mode")

    def __init__(self, ws, ignore_border=True, stride=None, pad=(0, 0), mode="max"):
        self.ws = pair(ws, "pool_2d: ws", 1)
        self.stride = self.ws if stride is None else pair(stride, "pool_2d: stride", 1)
        self.pad = pair(pad, "pool_2d: pad", 0)
        self.ignore_border = bool(ignore_border)
        if mode not in MODES:
            raise GraphnetError(f"pool_2d: mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        if self.pad != (0, 0) and not self.ignore_border:
            raise GraphnetError(f"pool_2d: pad={self.pad} needs ignore_border=True (as in Theano)")
        if self.pad[0] >= self.ws[0] or self.pad[1] >= self.ws[1]:
            raise GraphnetError(f"pool_2d: pad={self.pad} must be smaller than the window ws={self.ws}, "
                                "or some windows would hold padding only")

    def describe_params(self):
        return f"ws={self.ws}, stride={self.stride}, pad={self.pad}, ignore_border={self.ignore_border}"

    def pooled_shape(self, shape, hint=""):
        if len(shape) < 2:
            raise ShapeError(f"pool_2d: the input must have at least 2 dimensions (pooling the last two), "
                             f"got {shape_str(shape)}{hint}")
        out = [pooled_size(s, w, st, p, self.ignore_border)
               for s, w, st, p in zip(shape[-2:], self.ws, self.stride, self.pad)]
        if any(n == 0 for n in out):
            raise ShapeError(f"pool_2d: the window {self.ws} is larger than the padded input {shape_str(shape)} "
                             f"({self.describe_params()}): the output would be empty{hint}")
        return tuple(shape[:-2]) + tuple(out)

    # --- the NumPy reference
    def layout(self, in_hw, out_hw):
        """(rows, cols) of the padded canvas every full window fits in, and the real image's offset."""
        canvas = tuple(max(s + 2 * p, (n - 1) * st + w)
                       for s, p, n, st, w in zip(in_hw, self.pad, out_hw, self.stride, self.ws))
        return canvas, self.pad

    def taps(self, out_hw):
        """``(a, b, slice rows, slice cols)``: where each window tap reads on the canvas."""
        (sh, sw), (oh, ow) = self.stride, out_hw
        for a in range(self.ws[0]):
            for b in range(self.ws[1]):
                yield slice(a, a + sh * (oh - 1) + 1, sh), slice(b, b + sw * (ow - 1) + 1, sw)

    def canvas(self, x, out_hw, fill):
        """``x`` placed on its padded canvas, the rest ``fill``."""
        (rows, cols), (pr, pc) = self.layout(x.shape[-2:], out_hw)
        canvas = np.full(x.shape[:-2] + (rows, cols), fill, x.dtype)
        canvas[..., pr:pr + x.shape[-2], pc:pc + x.shape[-1]] = x
        return canvas

    def window_counts(self, in_hw, out_hw, dtype):
        """How many pixels each window averages: the padded image (inc_pad) or the real one (exc_pad)."""
        (rows, cols), (pr, pc) = self.layout(in_hw, out_hw)
        counted = np.zeros((rows, cols), dtype)
        if self.mode == "average_inc_pad":
            counted[:in_hw[0] + 2 * pr, :in_hw[1] + 2 * pc] = 1
        else:
            counted[pr:pr + in_hw[0], pc:pc + in_hw[1]] = 1
        total = np.zeros(out_hw, dtype)
        for rs, cs in self.taps(out_hw):
            total += counted[rs, cs]
        return total

    def check_float(self, x):
        if x.dtype.kind != "f":
            raise DTypeError(f"pool_2d: the input must be floating point, got {x.dtype}{self.error_hint()}")


class Pool2D(PoolParams):
    """``pool_2d(x)``: pooling over the last two axes of ``x``."""

    def make_node(self, x):
        x = as_variable(x)
        self.check_float(x)
        return Apply(self, [x], [TensorType(x.dtype, self.pooled_shape(x.shape, self.error_hint()))])

    def infer_shape(self, node, shapes):
        return [self.pooled_shape(shapes[0])]

    def perform(self, inputs):
        x = np.asarray(inputs[0])
        out_hw = self.pooled_shape(x.shape)[-2:]
        if self.mode == "max":
            canvas = self.canvas(x, out_hw, -np.inf)
            out = None
            for rs, cs in self.taps(out_hw):
                out = canvas[..., rs, cs].copy() if out is None else np.maximum(out, canvas[..., rs, cs], out=out)
            return [out]
        canvas = self.canvas(x, out_hw, 0)
        out = np.zeros(x.shape[:-2] + tuple(out_hw), x.dtype)
        for rs, cs in self.taps(out_hw):
            out += canvas[..., rs, cs]
        if self.mode != "sum":
            out /= self.window_counts(x.shape[-2:], out_hw, x.dtype)
        return [out]

    def grad(self, inputs, outputs, g):
        params = self._props()
        if self.mode == "max":
            return [MaxPool2DGrad(*params)(inputs[0], outputs[0], g[0])]
        return [AveragePool2DGrad(*params)(inputs[0], g[0])]


class PoolGradParams(PoolParams):
    def check_output_grad(self, x_shape, g_shape, hint=""):
        expected = self.pooled_shape(x_shape, hint)
        if len(g_shape) != len(expected) or any(a is not None and b is not None and a != b
                                                for a, b in zip(expected, g_shape)):
            raise ShapeError(f"{self.name}: the output gradient {shape_str(g_shape)} does not match the pooled "
                             f"shape {shape_str(expected)} of input {shape_str(x_shape)}{hint}")

    def scatter(self, x_shape, per_tap, dtype):
        """Sum ``per_tap(rows, cols)`` (the gradient each tap sends back) onto the input's pixels."""
        out_hw = self.pooled_shape(x_shape)[-2:]
        (rows, cols), (pr, pc) = self.layout(x_shape[-2:], out_hw)
        canvas = np.zeros(tuple(x_shape[:-2]) + (rows, cols), dtype)
        for rs, cs in self.taps(out_hw):
            canvas[..., rs, cs] += per_tap(rs, cs)
        return np.ascontiguousarray(canvas[..., pr:pr + x_shape[-2], pc:pc + x_shape[-1]])


class MaxPool2DGrad(PoolGradParams):
    """Max pooling's gradient: inputs ``(x, pooled, output_grad)``."""

    def make_node(self, x, out, g):
        x, out, g = as_variable(x), as_variable(out), as_variable(g)
        self.check_output_grad(x.shape, g.shape, self.error_hint())
        return Apply(self, [x, out, g], [TensorType(g.dtype, x.shape)])

    def infer_shape(self, node, shapes):
        self.check_output_grad(shapes[0], shapes[2])
        return [tuple(shapes[0])]

    def perform(self, inputs):
        x, out, g = (np.asarray(a) for a in inputs)
        self.check_output_grad(x.shape, g.shape)
        canvas = self.canvas(x, out.shape[-2:], -np.inf)
        return [self.scatter(x.shape, lambda rs, cs: np.where(canvas[..., rs, cs] == out, g, 0), g.dtype)]

    def grad(self, inputs, outputs, g):
        raise GraphnetError("second derivatives of max pooling are not implemented")


class AveragePool2DGrad(PoolGradParams):
    """The gradient of sum and average pooling: inputs ``(x, output_grad)``; only ``x``'s shape is read.

    It is linear in the output gradient and its adjoint is the pooling itself,
    so its own gradient is one more ``Pool2D``.
    """

    def make_node(self, x, g):
        x, g = as_variable(x), as_variable(g)
        self.check_output_grad(x.shape, g.shape, self.error_hint())
        return Apply(self, [x, g], [TensorType(g.dtype, x.shape)])

    def infer_shape(self, node, shapes):
        self.check_output_grad(shapes[0], shapes[1])
        return [tuple(shapes[0])]

    def perform(self, inputs):
        x, g = (np.asarray(a) for a in inputs)
        self.check_output_grad(x.shape, g.shape)
        if self.mode != "sum":
            g = g / self.window_counts(x.shape[-2:], g.shape[-2:], g.dtype)
        return [self.scatter(x.shape, lambda rs, cs: g, g.dtype)]

    def grad(self, inputs, outputs, g):
        return [None, Pool2D(*self._props())(g[0])]


def pool_2d(input, ws, ignore_border=True, stride=None, pad=(0, 0), mode="max"):
    """Theano's ``pool_2d``: pool windows ``ws`` over the last two axes of ``input``.

    ``stride`` defaults to ``ws`` (no overlap); ``pad`` adds zeros on both sides
    (needs ``ignore_border=True``, and must be smaller than ``ws``); ``mode`` is
    ``max``, ``sum``, ``average_inc_pad`` or ``average_exc_pad``.
    """
    return Pool2D(ws, ignore_border, stride, pad, mode)(input)
