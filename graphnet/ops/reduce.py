"""Reductions: sum, max, argmax, the moments (mean and variance) and element counts.

A reduction's ``axis`` is always a sorted tuple of non-negative ints (``None``
means every axis), so equal reductions compare equal for CSE.
"""
from __future__ import annotations

import builtins

import numpy as np

from graphnet.errors import GraphnetError, ShapeError
from graphnet.graph.ir import Apply, Op, TensorType, as_variable
from graphnet.ops import elementwise as ew


def normalize_axis(axis, ndim, op_name):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not isinstance(a, (int, np.integer)) or not -ndim <= a < builtins.max(ndim, 1):
            raise ShapeError(f"{op_name}: axis {axis!r} is out of range for a {ndim}-d input")
        out.append(int(a) % builtins.max(ndim, 1))
    if len(set(out)) != len(out):
        raise ShapeError(f"{op_name}: axis {axis!r} repeats an axis")
    return tuple(sorted(out))


def reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


class Reduce(Op):
    kind = "reduce"
    __props__ = ("axis", "keepdims")

    def __init__(self, axis, keepdims=False):
        self.axis, self.keepdims = tuple(axis), bool(keepdims)

    def output_dtype(self, dtype):
        return dtype

    def make_node(self, x):
        x = as_variable(x)
        if any(x.shape[a] == 0 for a in self.axis) and self.identity is None:
            raise ShapeError(f"{self.name}: cannot reduce an empty axis{self.error_hint()}")
        return Apply(self, [x], [TensorType(self.output_dtype(x.dtype), reduced_shape(x.shape, self.axis, self.keepdims))])

    identity = 0

    def infer_shape(self, node, shapes):
        shape = shapes[0]
        if self.identity is None and any(shape[a] == 0 for a in self.axis):
            raise ShapeError(f"{self.name}: cannot reduce an empty axis of an array of shape {shape}")
        return [reduced_shape(shape, self.axis, self.keepdims)] * len(node.outputs)

    def expand(self, g, x):
        """``g`` with the reduced axes put back as size 1, ready to broadcast against ``x``."""
        if self.keepdims or not self.axis or self.axis == tuple(range(len(self.axis))):
            # Reduced leading axes come back by broadcasting alone (right-aligned).
            return g
        return ExpandDims(self.axis)(g)


class Sum(Reduce):
    def output_dtype(self, dtype):
        # As NumPy: small ints and bools accumulate in int64.
        return np.dtype(np.int64) if dtype.kind in "bi" and dtype.itemsize < 8 else dtype

    def perform(self, inputs):
        x = np.asarray(inputs[0])
        return [np.asarray(np.sum(x, axis=self.axis, keepdims=self.keepdims), dtype=self.output_dtype(x.dtype))]

    def grad(self, inputs, outputs, g):
        return [ew.second(inputs[0], self.expand(g[0], inputs[0]))]


class Max(Reduce):
    identity = None

    def perform(self, inputs):
        x = np.asarray(inputs[0])
        return [np.asarray(np.max(x, axis=self.axis, keepdims=self.keepdims), dtype=x.dtype)]

    def grad(self, inputs, outputs, g):
        # Ties share the gradient: each maximal element receives it in full.
        x = inputs[0]
        hit = ew.eq(x, self.expand(outputs[0], x))
        return [ew.where(hit, self.expand(g[0], x), 0)]


class ArgMax(Reduce):
    identity = None

    def __init__(self, axis, keepdims=False):
        if len(axis) != 1:
            raise GraphnetError("argmax: reduce over exactly one axis")
        super().__init__(axis, keepdims)

    def output_dtype(self, dtype):
        return np.dtype(np.int64)

    def perform(self, inputs):
        return [np.asarray(np.argmax(inputs[0], axis=self.axis[0], keepdims=self.keepdims), dtype=np.int64)]

    def grad(self, inputs, outputs, g):
        return [None]


class Moments(Reduce):
    """Mean and biased variance over ``axis`` in one pass: batch norm's statistics."""

    def make_node(self, x):
        x = as_variable(x)
        if x.dtype.kind != "f":
            x = ew.cast(x, np.float64)
        out = TensorType(x.dtype, reduced_shape(x.shape, self.axis, self.keepdims))
        return Apply(self, [x], [out, out])

    def perform(self, inputs):
        x = np.asarray(inputs[0])
        mean = np.mean(x, axis=self.axis, keepdims=True)
        var = np.mean(np.square(x - mean), axis=self.axis, keepdims=self.keepdims)
        if not self.keepdims:
            mean = np.squeeze(mean, axis=self.axis)
        return [np.asarray(mean, x.dtype), np.asarray(var, x.dtype)]

    def grad(self, inputs, outputs, g):
        x = inputs[0]
        mean, _ = outputs
        count = ew.cast(size_of(x, self.axis), x.dtype)
        dx = None
        if g[0] is not None:
            dx = ew.second(x, ew.true_div(self.expand(g[0], x), count))
        if g[1] is not None:
            centered = ew.sub(x, self.expand(mean, x))
            dvar = ew.mul(ew.true_div(ew.mul(self.expand(g[1], x), 2.0), count), centered)
            dx = dvar if dx is None else ew.add(dx, dvar)
        return [dx]


class SizeOf(Op):
    """The number of elements of ``x`` along ``axis`` (an int64 scalar)."""

    __props__ = ("axis",)
    reads_only_shapes = True

    def __init__(self, axis):
        self.axis = tuple(axis)

    def make_node(self, x):
        return Apply(self, [x], [TensorType(np.int64, ())])

    def infer_shape(self, node, shapes):
        return [()]

    def static_value(self, x):
        dims = [x.shape[a] for a in self.axis]
        return None if any(d is None for d in dims) else int(np.prod(dims, dtype=np.int64))

    def perform(self, inputs):
        shape = np.shape(inputs[0])
        return [np.asarray(np.prod([shape[a] for a in self.axis], dtype=np.int64), dtype=np.int64)]

    def grad(self, inputs, outputs, g):
        return [None]


# --------------------------------------------------------------- constructors
def sum(x, axis=None, keepdims=False):
    """Sum over ``axis`` (None: all axes; an int or a tuple)."""
    x = as_variable(x)
    return Sum(normalize_axis(axis, x.ndim, "sum"), keepdims)(x)


def max(x, axis=None, keepdims=False):
    x = as_variable(x)
    return Max(normalize_axis(axis, x.ndim, "max"), keepdims)(x)


def min(x, axis=None, keepdims=False):
    return ew.neg(max(ew.neg(x), axis, keepdims))


def argmax(x, axis=-1, keepdims=False):
    x = as_variable(x)
    return ArgMax(normalize_axis(axis, x.ndim, "argmax"), keepdims)(x)


def size_of(x, axis=None):
    """Symbolic element count of ``x`` along ``axis``; folds to a constant when known."""
    x = as_variable(x)
    axes = normalize_axis(axis, x.ndim, "size_of")
    return SizeOf(axes)(x)


def mean(x, axis=None, keepdims=False):
    """Mean over ``axis``; integer and bool inputs average in float64 as in NumPy."""
    x = as_variable(x)
    if x.dtype.kind != "f":
        x = ew.cast(x, np.float64)
    axes = normalize_axis(axis, x.ndim, "mean")
    return ew.true_div(Sum(axes, keepdims)(x), ew.cast(SizeOf(axes)(x), x.dtype))


def moments(x, axis=None, keepdims=False):
    """(mean, biased variance) over ``axis``, computed together."""
    x = as_variable(x)
    return Moments(normalize_axis(axis, x.ndim, "moments"), keepdims)(x)


def var(x, axis=None, keepdims=False):
    """Biased variance (NumPy's ``ddof=0``)."""
    return moments(x, axis, keepdims)[1]


from graphnet.ops.shape import ExpandDims  # noqa: E402  (shape ops import reductions too)
