"""Errors that name the node, its shapes and the user's line; checks every backend shares."""
from __future__ import annotations

import numpy as np

from graphnet.errors import GraphnetError, NumericsError, ShapeError


def node_error(node, exc):
    """Re-raise ``exc`` naming the node, its input shapes and its source line."""
    kind = type(exc) if isinstance(exc, GraphnetError) else (ShapeError if isinstance(exc, ValueError) else GraphnetError)
    message = f"{exc}\n  in {node.op} -> {node.outputs[0].describe()}, built at {node.source}"
    try:
        err = kind(message)
    except TypeError:
        err = GraphnetError(message)
    raise err from exc


def infer_output_shapes(node, args):
    """``node``'s output shapes for its input arrays ``args``, checked by its op.

    An op whose output shape depends on input values (a slice with symbolic
    bounds, ``arange(n)``) sets ``infer_shape_needs_values`` and is given the
    arrays too, so it can also check index bounds before anything reads them.
    """
    shapes = [np.shape(a) for a in args]
    if node.op.infer_shape_needs_values:
        return node.op.infer_shape(node, shapes, values=args)
    return node.op.infer_shape(node, shapes)


def check_finite(node, var, value):
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        bad = "NaN" if np.isnan(value).any() else "Inf"
        raise NumericsError(f"check_numerics: {bad} in the output of {node.op} ({var.describe()}), "
                            f"built at {node.source}")
