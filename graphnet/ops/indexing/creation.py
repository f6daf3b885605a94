"""Arrays made from symbolic sizes: ``arange`` and ``alloc``."""
from __future__ import annotations

import numpy as np

from graphnet.errors import DTypeError, GraphnetError, ShapeError
from graphnet.graph.ir import Apply, Constant, Op, TensorType, Variable, as_variable, shape_str
from graphnet.ops.indexing.common import _check_index_scalar, static_int
from graphnet.ops import reduce as reduce_ops
from graphnet.ops.reduce import SizeOf


class ARange(Op):
    """``arange(start, stop, step)`` with integer-scalar inputs."""

    __props__ = ("dtype",)
    infer_shape_needs_values = True

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)

    def __str__(self):
        return f"arange{{{self.dtype.name}}}"

    def make_node(self, start, stop, step):
        hint = self.error_hint()
        start, stop, step = (_check_index_scalar(v, "an arange bound", hint) for v in (start, stop, step))
        if static_int(step) == 0:
            raise GraphnetError(f"arange: step must not be zero{hint}")
        bounds = [static_int(v) for v in (start, stop, step)]
        length = None if None in bounds else self._length(*bounds)
        return Apply(self, [start, stop, step], [TensorType(self.dtype, (length,))])

    @staticmethod
    def _length(start, stop, step):
        if step == 0:
            raise GraphnetError("arange: step must not be zero")
        return max(0, -(-(int(stop) - int(start)) // int(step)))

    def infer_shape(self, node, shapes, values=None):
        if values is None:
            static = node.outputs[0].shape[0]
            if static is None:
                raise GraphnetError("arange: the length depends on the values of its bounds; the backend must "
                                    "call infer_shape(node, shapes, values=...)")
            return [(static,)]
        return [(self._length(*values),)]

    def perform(self, inputs):
        start, stop, step = (int(v) for v in inputs)
        self._length(start, stop, step)
        return [np.arange(start, stop, step, dtype=self.dtype)]

    def grad(self, inputs, outputs, g):
        return [None, None, None]


class AxisRange(Op):
    """``arange(x.shape[axis])``: its length comes from ``x``'s shape, so no values are needed."""

    __props__ = ("axis",)

    def __init__(self, axis):
        self.axis = int(axis)

    def make_node(self, x):
        return Apply(self, [x], [TensorType(np.int64, (x.type.shape[self.axis],))])

    def infer_shape(self, node, shapes):
        return [(shapes[0][self.axis],)]

    def perform(self, inputs):
        return [np.arange(np.shape(inputs[0])[self.axis], dtype=np.int64)]

    def grad(self, inputs, outputs, g):
        return [None]


class Alloc(Op):
    """An array of shape ``dims`` (integer scalars) filled with the scalar ``value``."""

    infer_shape_needs_values = True

    def shape_value_inputs(self, node):
        return tuple(range(1, len(node.inputs)))   # the dimensions, not the fill value

    def make_node(self, value, *dims):
        value = as_variable(value)
        if value.ndim != 0:
            raise ShapeError(f"alloc: the fill value must be a scalar, got {shape_str(value.shape)}{self.error_hint()}")
        dims = [_check_index_scalar(d, "a dimension", self.error_hint()) for d in dims]
        return Apply(self, [value, *dims], [TensorType(value.dtype, tuple(static_int(d) for d in dims))])

    def infer_shape(self, node, shapes, values=None):
        if values is None:
            static = node.outputs[0].shape
            if None in static:
                raise GraphnetError("alloc: the shape depends on the values of its dimensions; the backend must "
                                    "call infer_shape(node, shapes, values=...)")
            return [static]
        dims = tuple(int(d) for d in values[1:])
        if any(d < 0 for d in dims):
            bad = next(v for v, d in zip(node.inputs[1:], dims) if d < 0)
            raise ShapeError(f"alloc: dimension {bad.describe()} is negative ({dims})")
        return [dims]

    def perform(self, inputs):
        dims = tuple(int(d) for d in inputs[1:])
        if any(d < 0 for d in dims):
            raise ShapeError(f"alloc: negative dimension in {dims}")
        return [np.full(dims, inputs[0], dtype=np.asarray(inputs[0]).dtype)]

    def grad(self, inputs, outputs, g):
        return [reduce_ops.sum(g[0])] + [None] * (len(inputs) - 1)




def arange(start, stop=None, step=1, dtype=None):
    """``[start, start + step, ...)`` below ``stop``; ``arange(n)`` is ``0..n-1``.

    Bounds may be symbolic integer scalars; ``arange(y.shape[0])`` becomes
    ``AxisRange`` (its length follows ``y``'s shape); with all bounds known the
    result is a constant.
    """
    if stop is None:
        start, stop = 0, start
    dtype = np.dtype(dtype if dtype is not None else np.int64)
    if any(isinstance(v, float) for v in (start, stop, step)):
        raise DTypeError(f"arange: bounds must be integers, got {(start, stop, step)}")
    values = [static_int(v) for v in (start, stop, step)]
    size = stop.owner if isinstance(stop, Variable) and stop.owner is not None else None
    if (values[0] == 0 and values[2] == 1 and dtype == np.int64 and values[1] is None
            and size is not None and isinstance(size.op, SizeOf) and len(size.op.axis) == 1):
        return AxisRange(size.op.axis[0])(size.inputs[0])
    if None not in values:
        ARange._length(*values)  # refuses a zero step
        return Constant(np.arange(*values, dtype=dtype))
    return ARange(dtype)(*(v if isinstance(v, Variable) else Constant(np.int64(v)) for v in (start, stop, step)))


def alloc(value, *shape):
    """An array of ``shape`` (ints or integer scalars) filled with ``value``."""
    value = as_variable(value)
    dims = [d if isinstance(d, Variable) else Constant(np.int64(d)) for d in shape]
    return Alloc()(value, *dims)
