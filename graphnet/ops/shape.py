"""Shape ops: transpose, reshape, inserting and dropping unit axes, and ``sum_to``.

These move no arithmetic; the code generator turns most of them into NumPy
views, so they cost nothing at run time.
"""
from __future__ import annotations

import math

import numpy as np

from graphnet.errors import ShapeError
from graphnet.graph.ir import Apply, Op, TensorType, as_variable, shape_str


class Transpose(Op):
    kind = "view"
    __props__ = ("perm",)

    def __init__(self, perm):
        self.perm = tuple(int(p) for p in perm)

    def make_node(self, x):
        x = as_variable(x)
        if sorted(self.perm) != list(range(x.ndim)):
            raise ShapeError(f"transpose: axes {self.perm} are not a permutation of a {x.ndim}-d input"
                             f"{self.error_hint()}")
        return Apply(self, [x], [TensorType(x.dtype, tuple(x.shape[p] for p in self.perm))])

    def infer_shape(self, node, shapes):
        return [tuple(shapes[0][p] for p in self.perm)]

    def perform(self, inputs):
        return [np.transpose(inputs[0], self.perm)]

    def grad(self, inputs, outputs, g):
        return [Transpose(np.argsort(self.perm))(g[0])]


class Reshape(Op):
    """Reshape to a static target; one ``-1`` entry takes the remaining size."""

    kind = "view"
    __props__ = ("newshape",)

    def __init__(self, newshape):
        self.newshape = tuple(int(d) for d in newshape)

    def make_node(self, x):
        x = as_variable(x)
        hint = self.error_hint()
        if sum(d == -1 for d in self.newshape) > 1 or any(d < -1 for d in self.newshape):
            raise ShapeError(f"reshape: target {self.newshape} may hold one -1 and no other negative size{hint}")
        known = [d for d in x.shape]
        target = list(self.newshape)
        if -1 in target:
            rest = int(np.prod([d for d in target if d != -1], dtype=np.int64))
            if None in known:
                target[target.index(-1)] = None
            else:
                total = int(np.prod(known, dtype=np.int64))
                if rest == 0 or total % rest:
                    raise ShapeError(f"reshape: cannot reshape {shape_str(x.shape)} into {self.newshape}{hint}")
                target[target.index(-1)] = total // rest
        elif None not in known and int(np.prod(known, dtype=np.int64)) != int(np.prod(target, dtype=np.int64)):
            raise ShapeError(f"reshape: cannot reshape {shape_str(x.shape)} ({int(np.prod(known))} elements) "
                             f"into {self.newshape}{hint}")
        return Apply(self, [x], [TensorType(x.dtype, tuple(target))])

    def infer_shape(self, node, shapes):
        # math.prod, not np.prod (~3 us a call on a short tuple): a host step reshaping runs this
        # on every call (W7's step has seven)
        size = math.prod(shapes[0])
        target = list(self.newshape)
        rest = math.prod(d for d in target if d != -1)
        if -1 in target and rest and size % rest == 0:
            target[target.index(-1)] = size // rest
        if -1 in target or math.prod(target) != size:
            raise ShapeError(f"reshape: cannot reshape an array of shape {shapes[0]} into {self.newshape}")
        return [tuple(target)]

    def perform(self, inputs):
        return [np.asarray(inputs[0]).reshape(self.infer_shape(None, [np.shape(inputs[0])])[0])]

    def grad(self, inputs, outputs, g):
        return [reshape_like(g[0], inputs[0])]


class ReshapeLike(Op):
    """Reshape ``x`` to the run-time shape of ``like`` (reshape's gradient)."""

    kind = "view"

    def make_node(self, x, like):
        return Apply(self, [x, like], [TensorType(x.dtype, like.shape)])

    def infer_shape(self, node, shapes):
        if int(np.prod(shapes[0], dtype=np.int64)) != int(np.prod(shapes[1], dtype=np.int64)):
            raise ShapeError(f"reshape_like: cannot reshape {shapes[0]} into {shapes[1]}")
        return [shapes[1]]

    def perform(self, inputs):
        return [np.asarray(inputs[0]).reshape(np.shape(inputs[1]))]

    def grad(self, inputs, outputs, g):
        return [reshape_like(g[0], inputs[0]), None]


class ExpandDims(Op):
    """Insert unit axes so that they land at positions ``axis`` of the result."""

    kind = "view"
    __props__ = ("axis",)

    def __init__(self, axis):
        self.axis = tuple(sorted(int(a) for a in axis))

    def make_node(self, x):
        shape = list(x.shape)
        for a in self.axis:
            shape.insert(a, 1)
        return Apply(self, [x], [TensorType(x.dtype, tuple(shape))])

    def infer_shape(self, node, shapes):
        shape = list(shapes[0])
        for a in self.axis:
            shape.insert(a, 1)
        return [tuple(shape)]

    def perform(self, inputs):
        return [np.expand_dims(inputs[0], self.axis)]

    def grad(self, inputs, outputs, g):
        return [Squeeze(self.axis)(g[0])]


class Squeeze(Op):
    """Drop axes that are statically of size 1."""

    kind = "view"
    __props__ = ("axis",)

    def __init__(self, axis):
        self.axis = tuple(sorted(int(a) for a in axis))

    def make_node(self, x):
        if any(x.shape[a] != 1 for a in self.axis):
            raise ShapeError(f"squeeze: axes {self.axis} of {shape_str(x.shape)} are not all of size 1"
                             f"{self.error_hint()}")
        return Apply(self, [x], [TensorType(x.dtype, tuple(d for i, d in enumerate(x.shape) if i not in self.axis))])

    def infer_shape(self, node, shapes):
        return [tuple(d for i, d in enumerate(shapes[0]) if i not in self.axis)]

    def perform(self, inputs):
        return [np.squeeze(inputs[0], self.axis)]

    def grad(self, inputs, outputs, g):
        return [ExpandDims(self.axis)(g[0])]


class Flatten(Op):
    """Keep the first ``ndim - 1`` axes and collapse the rest into one (Theano's ``flatten(ndim)``).

    An op of its own, not a ``Reshape``, because the collapsed size need not be
    known when the graph is built (``T.tensor4`` has no static dimensions).
    """

    kind = "view"
    __props__ = ("ndim",)

    def __init__(self, ndim):
        self.ndim = int(ndim)

    def make_node(self, x):
        x = as_variable(x)
        if not 1 <= self.ndim <= max(x.ndim, 1):
            raise ShapeError(f"flatten: ndim={self.ndim} must be between 1 and the input's {x.ndim} dimensions"
                             f"{self.error_hint()}")
        return Apply(self, [x], [TensorType(x.dtype, self.flattened(x.shape))])

    def flattened(self, shape):
        rest = shape[self.ndim - 1:]
        size = None if None in rest else int(np.prod(rest, dtype=np.int64))
        return tuple(shape[:self.ndim - 1]) + (size,)

    def infer_shape(self, node, shapes):
        return [self.flattened(tuple(shapes[0]))]

    def perform(self, inputs):
        x = np.asarray(inputs[0])
        return [x.reshape(self.flattened(x.shape))]

    def grad(self, inputs, outputs, g):
        return [reshape_like(g[0], inputs[0])]


# --------------------------------------------------------------- constructors
def transpose(x, axes=None):
    """Permute axes (reverse them by default, as ``.T``)."""
    x = as_variable(x)
    return Transpose(tuple(reversed(range(x.ndim))) if axes is None else axes)(x)


def reshape(x, shape):
    x = as_variable(x)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    return x if shape == x.shape else Reshape(shape)(x)


def reshape_like(x, like):
    return x if x.shape == like.shape and None not in x.shape else ReshapeLike()(x, like)


def flatten(x, ndim=1):
    """``x`` with its trailing axes collapsed so that ``ndim`` axes remain (C order)."""
    x = as_variable(x)
    if ndim == x.ndim:
        return x
    if ndim == 1:
        return reshape(x, (-1,))
    return Flatten(ndim)(x)


def expand_dims(x, axis):
    axis = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    ndim = as_variable(x).ndim + len(axis)
    return ExpandDims(tuple(a % ndim for a in axis))(x)


def squeeze(x, axis):
    axis = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    return Squeeze(tuple(a % x.ndim for a in axis))(x)


def sum_to(g, shape):
    """Sum ``g`` over the axes that broadcasting added or stretched to get ``shape``.

    How an elementwise op's gradient returns to a broadcast input (a bias).
    """
    from graphnet.ops.reduce import Sum
    lead = g.ndim - len(shape)
    stretched = tuple(lead + i for i, d in enumerate(shape) if d == 1 and g.shape[lead + i] != 1)
    if not stretched:
        # Summing the leading axes away: a "col" reduction, no reshape needed.
        return Sum(tuple(range(lead)), keepdims=False)(g) if lead else g
    g = Sum(tuple(range(lead)) + stretched, keepdims=True)(g)
    return Squeeze(tuple(range(lead)))(g) if lead else g
