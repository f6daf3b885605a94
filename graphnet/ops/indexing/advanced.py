"""Integer-array indexing (a gather), its scatter-add, and the label check of the NLL rewrite."""
from __future__ import annotations

import numpy as np

from graphnet.errors import DTypeError, GraphnetError, ShapeError
from graphnet.graph.ir import Apply, Constant, Op, TensorType, as_variable, broadcast_shapes
from graphnet.ops import elementwise as ew
from graphnet.ops.indexing.common import OutOfBoundsError


def check_index_array(idx, n, describe_index="index array", describe_x="the indexed variable", axis=0):
    """Raise OutOfBoundsError unless every value of ``idx`` lies in ``[0, n)``."""
    idx = np.asarray(idx)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        flat = idx.reshape(-1)
        pos = int(np.flatnonzero((flat < 0) | (flat >= n))[0])
        where = np.unravel_index(pos, idx.shape) if idx.ndim > 1 else pos
        raise OutOfBoundsError(f"{describe_index} holds {flat[pos]} at position {where}, outside [0, {n}) "
                               f"for axis {axis} of {describe_x}")


def _check_index_array_var(var, hint):
    var = as_variable(var)
    if var.dtype.kind == "b":
        raise DTypeError(f"indexing: boolean masks ({var.describe()}) are not supported; "
                         f"use gn.where(mask, x, 0) or gather the positions first{hint}")
    if var.dtype.kind not in "iu":
        raise DTypeError(f"indexing: index arrays must be integers, got {var.describe()} of type {var.type}{hint}")
    return var


class _AdvancedIndexOp(Op):
    """``entries``: "array" or "slice" (a full ``:``) per leading axis; arrays are consecutive."""

    __props__ = ("entries",)
    infer_shape_needs_values = True

    def shape_value_inputs(self, node):
        return ()   # the index arrays' values are checked; their shapes make the output's

    def __init__(self, entries):
        self.entries = tuple(entries)
        arrays = [k for k, e in enumerate(self.entries) if e == "array"]
        if not arrays or arrays != list(range(arrays[0], arrays[-1] + 1)):
            raise GraphnetError(f"{self.name}: index arrays must sit on consecutive axes, got {self.entries}")
        self.first, self.last = arrays[0], arrays[-1]

    def indexed_shape(self, x_shape, index_shapes, broadcast):
        return tuple(x_shape[:self.first]) + tuple(broadcast(*index_shapes)) + tuple(x_shape[self.last + 1:])

    def _key(self, indices):
        it = iter(indices)
        return tuple(next(it) if e == "array" else slice(None) for e in self.entries)

    def check_values(self, x_shape, indices, node=None, first_index=1):
        for k, idx in zip(range(self.first, self.last + 1), indices):
            if node is not None:
                var = node.inputs[first_index + k - self.first]
                check_index_array(idx, x_shape[k], f"index {var.describe()}", node.inputs[0].describe(), k)
            else:
                check_index_array(idx, x_shape[k], axis=k)

    def _run_shape(self, node, shapes, values, first_index):
        x_shape, index_shapes = shapes[0], shapes[first_index:]
        try:
            out = self.indexed_shape(x_shape, index_shapes, np.broadcast_shapes)
        except ValueError:
            names = ", ".join(f"{v.describe()} {s}" for v, s in zip(node.inputs[first_index:], index_shapes))
            raise ShapeError(f"{self.name}: index arrays {names} do not broadcast together") from None
        if values is not None:
            self.check_values(x_shape, values[first_index:], node, first_index)
        return out


class AdvancedSubtensor(_AdvancedIndexOp):
    """``x[i0, i1, ...]`` with integer arrays (NumPy's integer-array indexing): a gather."""

    def make_node(self, x, *indices):
        x = as_variable(x)
        hint = self.error_hint()
        indices = [_check_index_array_var(i, hint) for i in indices]
        if len(self.entries) > x.ndim:
            raise OutOfBoundsError(f"{x.describe()}: too many indices ({len(self.entries)}) for a "
                                   f"{x.ndim}-d variable{hint}")
        for k, idx in zip(range(self.first, self.last + 1), indices):
            if isinstance(idx, Constant) and x.shape[k] is not None:
                try:
                    check_index_array(idx.data, x.shape[k], f"index {idx.describe()}", x.describe(), k)
                except OutOfBoundsError as exc:
                    raise OutOfBoundsError(f"{exc}{hint}") from None
        shape = self.indexed_shape(x.shape, [i.shape for i in indices],
                                   lambda *s: broadcast_shapes(*s, op_name="integer-array indexing", node_hint=hint))
        return Apply(self, [x, *indices], [TensorType(x.dtype, shape)])

    def infer_shape(self, node, shapes, values=None):
        return [self._run_shape(node, shapes, values, 1)]

    def perform(self, inputs):
        x, indices = np.asarray(inputs[0]), [np.asarray(i) for i in inputs[1:]]
        self.check_values(x.shape, indices)
        return [x[self._key(indices)]]

    def grad(self, inputs, outputs, g):
        x, indices = inputs[0], inputs[1:]
        return [AdvancedIncSubtensor(self.entries)(ew.zeros_like(x), g[0], *indices)] + [None] * len(indices)


class AdvancedIncSubtensor(_AdvancedIndexOp):
    """A copy of ``x`` with ``y`` scatter-added at ``x[i0, i1, ...]``; repeated indices accumulate."""

    def make_node(self, x, y, *indices):
        x = as_variable(x)
        y = ew.cast(as_variable(y, like=x), x.dtype)
        hint = self.error_hint()
        indices = [_check_index_array_var(i, hint) for i in indices]
        target = self.indexed_shape(x.shape, [i.shape for i in indices],
                                    lambda *s: broadcast_shapes(*s, op_name="integer-array indexing", node_hint=hint))
        broadcast_shapes(target, y.shape, op_name="advanced_inc_subtensor", node_hint=hint)
        return Apply(self, [x, y, *indices], [x.type])

    def infer_shape(self, node, shapes, values=None):
        self._run_shape(node, [shapes[0]] + list(shapes[2:]), None if values is None
                        else [values[0]] + list(values[2:]), 1)
        return [shapes[0]]

    def perform(self, inputs):
        x, y, indices = np.asarray(inputs[0]), np.asarray(inputs[1]), [np.asarray(i) for i in inputs[2:]]
        self.check_values(x.shape, indices)
        out = x.copy()
        # The values go in at the full shape of x[indices]. NumPy 2.4's ufunc.at gets
        # a value broadcast over *new leading* axes wrong, and reads past its end:
        # np.add.at(np.zeros(4), (np.array([[0, 1], [2, 3]]),), [1., 2.]) gives NaNs.
        target = self.indexed_shape(x.shape, [i.shape for i in indices], np.broadcast_shapes)
        np.add.at(out, self._key(indices), np.ascontiguousarray(np.broadcast_to(y, target)))
        return [out]

    def grad(self, inputs, outputs, g):
        indices = inputs[2:]
        return [g[0], AdvancedSubtensor(self.entries)(g[0], *indices)] + [None] * len(indices)


class CheckIndexBounds(Op):
    """``indices`` unchanged, after checking them against axis ``axis`` of ``x``.

    The NLL rewrite puts it in front of the fused cross-entropy, so a bad label
    is still reported naming the label variable and the indexed one.
    """

    kind = "view"
    __props__ = ("axis",)
    infer_shape_needs_values = True

    def shape_value_inputs(self, node):
        return ()   # a check: the output is the input

    def __init__(self, axis):
        self.axis = int(axis)

    def make_node(self, indices, x):
        return Apply(self, [indices, x], [indices.type])

    def infer_shape(self, node, shapes, values=None):
        if values is not None:
            check_index_array(values[0], shapes[1][self.axis], f"index {node.inputs[0].describe()}",
                              node.inputs[1].describe(), self.axis)
        return [shapes[0]]

    def perform(self, inputs):
        check_index_array(inputs[0], np.shape(inputs[1])[self.axis], axis=self.axis)
        return [inputs[0]]

    def grad(self, inputs, outputs, g):
        return [None, None]
