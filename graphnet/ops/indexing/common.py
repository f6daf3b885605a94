"""What every indexing op shares: the error, the marker of symbolic bounds, static values."""
from __future__ import annotations

import numpy as np

from graphnet.errors import DTypeError, GraphnetError
from graphnet.graph.ir import Constant, Variable, as_variable
from graphnet.ops import elementwise as ew
from graphnet.ops.reduce import SizeOf


class OutOfBoundsError(GraphnetError, IndexError):
    """An index or slice bound lies outside the axis it indexes."""


class _Symbolic:
    """Marks an index entry whose value is a symbolic input of the node."""

    def __repr__(self):
        return "?"

    def __reduce__(self):
        return "SYMBOLIC"


SYMBOLIC = _Symbolic()


# ------------------------------------------------------------- static values
def static_int(var):
    """The int value of ``var`` if known when the graph is built, else None.

    Known: Python ints, 0-d integer constants, and element counts of axes whose
    size is static (``y.shape[0]`` after ``givens`` replaced ``y`` by a slice of
    known length).
    """
    if isinstance(var, (int, np.integer)) and not isinstance(var, (bool, np.bool_)):
        return int(var)
    if isinstance(var, Constant) and var.ndim == 0 and var.dtype.kind in "iu":
        return int(var.data)
    if isinstance(var, Variable) and var.owner is not None and isinstance(var.owner.op, SizeOf):
        return var.owner.op.static_value(var.owner.inputs[0])
    return None


def _static_difference(start, stop):
    """``stop - start`` when it is a constant however the scalars vary, else None.

    Recognizes ``a:a + k`` and the tutorial's ``i * bs:(i + 1) * bs``.
    """
    def operands(var, op_type):
        if isinstance(var, Variable) and var.owner is not None and isinstance(var.owner.op, op_type):
            a, b = var.owner.inputs
            return [(a, b), (b, a)]
        return []

    for a, k in operands(stop, ew.Add):
        if a is start and static_int(k) is not None:
            return static_int(k)
    for i_plus_one, scale in operands(stop, ew.Mul):
        width = static_int(scale)
        for i, one in operands(i_plus_one, ew.Add):
            if width is not None and static_int(one) is not None and any(
                    a is i and static_int(b) == width for a, b in operands(start, ew.Mul)):
                return static_int(one) * width
    return None


def _check_index_scalar(var, what, hint):
    var = as_variable(var)
    if var.ndim != 0 or var.dtype.kind not in "iu":
        raise DTypeError(f"indexing: {what} must be an integer scalar, got {var.describe()} of type {var.type}{hint}")
    return var
