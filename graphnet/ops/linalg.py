"""The matrix product: a BLAS call on every backend."""
from __future__ import annotations

import numpy as np

from graphnet.errors import DTypeError, ShapeError
from graphnet.graph.ir import Apply, Op, TensorType, as_variable, shape_str
from graphnet.ops import shape as shape_ops


class Dot(Op):
    """``dot(a, b)`` for 1-d and 2-d operands, as ``np.dot``."""

    kind = "blas"

    def make_node(self, a, b):
        a, b = as_variable(a), as_variable(b)
        hint = self.error_hint()
        if a.ndim not in (1, 2) or b.ndim not in (1, 2):
            raise ShapeError(f"dot: operands must be 1-d or 2-d, got {shape_str(a.shape)} and {shape_str(b.shape)}{hint}")
        inner_a, inner_b = a.shape[-1], b.shape[0]
        if inner_a is not None and inner_b is not None and inner_a != inner_b:
            raise ShapeError(f"dot: shapes {shape_str(a.shape)} and {shape_str(b.shape)} are not aligned "
                             f"({inner_a} != {inner_b}){hint}")
        if a.dtype.kind not in "fiu" or b.dtype.kind not in "fiu":
            raise DTypeError(f"dot: operands must be numeric, got {a.dtype} and {b.dtype}{hint}")
        shape = a.shape[:-1] + b.shape[1:]
        return Apply(self, [a, b], [TensorType(np.result_type(a.dtype, b.dtype), shape)])

    def infer_shape(self, node, shapes):
        a, b = shapes
        if a[-1] != b[0]:
            raise ShapeError(f"dot: run-time shapes {a} and {b} are not aligned ({a[-1]} != {b[0]})")
        return [tuple(a[:-1]) + tuple(b[1:])]

    def perform(self, inputs):
        a, b = inputs
        self.infer_shape(None, [np.shape(a), np.shape(b)])
        return [np.asarray(np.dot(a, b))]

    def grad(self, inputs, outputs, g):
        a, b = inputs
        gz = g[0]
        # Lift vectors to matrices so one rule covers every case:
        # dA = g B^T, dB = A^T g (the lecture's dW = h^T da, dh = da W^T).
        a2 = a if a.ndim == 2 else shape_ops.expand_dims(a, 0)
        b2 = b if b.ndim == 2 else shape_ops.expand_dims(b, 1)
        g2 = gz
        if a.ndim == 1:
            g2 = shape_ops.expand_dims(g2, 0)
        if b.ndim == 1:
            g2 = shape_ops.expand_dims(g2, -1)
        da = dot(g2, shape_ops.transpose(b2))
        db = dot(shape_ops.transpose(a2), g2)
        if a.ndim == 1:
            da = shape_ops.squeeze(da, 0)
        if b.ndim == 1:
            db = shape_ops.squeeze(db, 1)
        return [da, db]


_dot = Dot()


def dot(a, b):
    """Matrix product; ``a @ b`` builds the same node."""
    return _dot(a, b)
