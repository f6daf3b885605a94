"""Joining tensors along an axis: ``concatenate`` and ``stack`` (Theano's ``T.concatenate``, ``T.stack``).

``Concatenate`` runs NumPy's ``concatenate`` (a host step on every backend).
Its gradient hands each input the slice of the output gradient that it
filled, with ``ConcatenatePiece``, which reads the inputs' run-time sizes so a
run-time (``None``) length along the axis needs no symbolic arithmetic.
"""
from __future__ import annotations

import numpy as np

from graphnet.errors import ShapeError
from graphnet.graph.ir import Apply, Op, TensorType, as_variable, shape_str


def _normalized_axis(axis, ndim, what, hint):
    if not -ndim <= axis < ndim:
        raise ShapeError(f"{what}: axis {axis} is out of range for {ndim}-d inputs{hint}")
    return axis % ndim


class Concatenate(Op):
    __props__ = ("axis",)

    def __init__(self, axis):
        self.axis = int(axis)

    def make_node(self, *tensors):
        tensors = [as_variable(t) for t in tensors]
        hint = self.error_hint()
        if not tensors:
            raise ShapeError(f"concatenate: needs at least one tensor{hint}")
        ndim = tensors[0].ndim
        if ndim == 0 or any(t.ndim != ndim for t in tensors):
            raise ShapeError(f"concatenate: inputs must have the same number (>= 1) of dimensions, got "
                             f"{', '.join(shape_str(t.type.shape) for t in tensors)}{hint}")
        axis = _normalized_axis(self.axis, ndim, "concatenate", hint)
        shape = []
        for a in range(ndim):
            dims = [t.type.shape[a] for t in tensors]
            if a == axis:
                shape.append(None if None in dims else int(np.sum(dims)))
                continue
            known = {d for d in dims if d is not None}
            if len(known) > 1:
                raise ShapeError(f"concatenate: along axis {a} the inputs' sizes differ "
                                 f"({', '.join(shape_str(t.type.shape) for t in tensors)}){hint}")
            shape.append(known.pop() if known else None)
        dtype = np.result_type(*[t.dtype for t in tensors])
        return Apply(Concatenate(axis), tensors, [TensorType(dtype, tuple(shape))])

    def infer_shape(self, node, shapes):
        others = {tuple(s[:self.axis]) + tuple(s[self.axis + 1:]) for s in shapes}
        if len(others) > 1:
            raise ShapeError(f"concatenate: run-time shapes {', '.join(map(str, shapes))} differ off axis "
                             f"{self.axis} (node built at {node.source})")
        out = list(shapes[0])
        out[self.axis] = int(sum(s[self.axis] for s in shapes))
        return [tuple(out)]

    def perform(self, inputs):
        dtype = np.result_type(*[np.asarray(a).dtype for a in inputs])
        return [np.concatenate([np.asarray(a, dtype) for a in inputs], axis=self.axis)]

    def grad(self, inputs, outputs, g):
        return [ConcatenatePiece(self.axis, i)(g[0], *inputs) if inputs[i].dtype.kind == "f" else None
                for i in range(len(inputs))]


class ConcatenatePiece(Op):
    """The part of ``whole`` that input ``index`` of a concatenation filled: ``(whole, *inputs)``."""

    kind = "view"
    __props__ = ("axis", "index")

    def __init__(self, axis, index):
        self.axis, self.index = int(axis), int(index)

    def make_node(self, whole, *inputs):
        return Apply(self, [whole, *inputs], [TensorType(whole.dtype, inputs[self.index].type.shape)])

    def infer_shape(self, node, shapes):
        return [tuple(shapes[1 + self.index])]

    def perform(self, inputs):
        whole, pieces = inputs[0], inputs[1:]
        start = int(sum(np.shape(p)[self.axis] for p in pieces[:self.index]))
        stop = start + np.shape(pieces[self.index])[self.axis]
        key = (slice(None),) * self.axis + (slice(start, stop),)
        return [np.asarray(whole)[key]]

    def grad(self, inputs, outputs, g):
        return [None] * len(inputs)


def concatenate(tensors, axis=0):
    """The tensors joined along ``axis`` (the other sizes must agree)."""
    return Concatenate(axis)(*list(tensors))


def stack(tensors, axis=0):
    """The tensors (of one shape) joined along a new axis ``axis``."""
    from graphnet.ops.shape import expand_dims
    tensors = [as_variable(t) for t in tensors]
    if not tensors:
        raise ShapeError("stack: needs at least one tensor")
    axis = _normalized_axis(axis, tensors[0].ndim + 1, "stack", "")
    return concatenate([expand_dims(t, axis) for t in tensors], axis=axis)
