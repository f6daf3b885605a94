"""The gradient of slices that tile an axis: one concatenation, not a sum of padded copies.

The gradient of ``z[:, a:b]`` is ``inc_subtensor(zeros_like(z), g, [:, a:b])``: a copy of
``z``'s shape, zero but for ``g``. A value cut into pieces along one axis (an LSTM's four
gates ``z[:, :H]`` ... ``z[:, 3H:]``) gets one such copy per piece, and ``grad`` sums them:
four zero-filled ``(B, 4H)`` arrays, each added into, then added together, at every step of
the backward loop (3 of its 8.5 ms in W7). When the pieces tile the axis exactly, the sum is
the pieces' gradients side by side::

    add(inc(zeros, g1, [:, 0:H]), inc(zeros, g2, [:, H:2H]), ...)  ->  concatenate(g1, g2, ..., axis=1)

The rule fires only on a tree of ``add`` whose leaves are all such increments of zeros of
one shape, their slices constant, disjoint and covering the axis (the last one), each
gradient of the slice's static shape (no broadcasting).
"""
from __future__ import annotations

from graphnet.compiler.rewrite import apply_local_rules
from graphnet.compiler.rewrite.canonicalize import constant_value
from graphnet.ops import elementwise as ew
from graphnet.ops.indexing import IncSubtensor
from graphnet.ops.join import Concatenate

FULL = ("slice", None, None, None)


def _leaves(var, out):
    """The terms of the tree of ``add`` that computes ``var``, appended to ``out``."""
    node = var.owner
    if node is not None and isinstance(node.op, ew.Add) and node.outputs[0].shape == var.shape:
        for term in node.inputs:
            _leaves(term, out)
    else:
        out.append(var)
    return out


def _piece(var, shape):
    """(axis, start, stop, gradient) of ``var = inc_subtensor(zeros, g, [:, ..., start:stop])``, or None."""
    node = var.owner
    if node is None or not isinstance(node.op, IncSubtensor) or node.op.n_symbolic:
        return None
    zeros, g = node.inputs[0], node.inputs[1]
    if constant_value(zeros) != 0 or zeros.shape != shape or g.dtype != var.dtype:
        return None
    entries = node.op.entries
    axis = len(entries) - 1
    if axis < 0 or any(e != FULL for e in entries[:-1]) or entries[-1][0] != "slice":
        return None
    _, start, stop, step = entries[-1]
    size = shape[axis]
    start, stop = 0 if start is None else start, size if stop is None else stop
    if step not in (None, 1) or size is None or not 0 <= start < stop <= size:
        return None
    # Of the slice's static shape exactly (a static 1 would broadcast). A length known only at
    # run time is the same on both sides for a slice's gradient; where it is not, concatenate
    # raises a ShapeError instead of broadcasting.
    if g.shape != shape[:axis] + (stop - start,) + shape[axis + 1:]:
        return None
    return axis, start, stop, g


def _tiling_slice_gradients(node):
    if not isinstance(node.op, ew.Add):
        return None
    out = node.outputs[0]
    terms = _leaves(out, [])
    if len(terms) < 2:
        return None
    pieces = [_piece(term, out.shape) for term in terms]
    if any(p is None for p in pieces) or len({p[0] for p in pieces}) != 1:
        return None
    pieces.sort(key=lambda p: p[1])
    axis = pieces[0][0]
    edges = [0] + [p[2] for p in pieces]
    if [p[1] for p in pieces] != edges[:-1] or edges[-1] != out.shape[axis]:
        return None   # overlapping, gaps, or not the whole axis: the sum is not a concatenation
    return [Concatenate(axis)(*[p[3] for p in pieces])]


def join_slice_gradients(fgraph):
    return apply_local_rules(fgraph, [_tiling_slice_gradients])
