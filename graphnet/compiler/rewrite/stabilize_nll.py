"""The classic negative log-likelihood idiom, made stable, forward and backward.

Theano tutorials write the loss as ``-mean(log(softmax(z))[arange(n), y])``.
Run as written, ``softmax`` underflows to 0 for logits far apart (±1000), its
``log`` is ``-inf``, and the gradient ``g / softmax`` is ``inf * 0 = nan``.
Since ``grad`` was taken on the graph as written, the backward graph needs
rewriting as much as the forward one. Four rules, each a sentence:

1. ``log(softmax(z))`` becomes ``log_softmax(z)``.
2. ``log_softmax(z)[arange(n), y]`` becomes ``-softmax_cross_entropy(z, y)``
   when ``n`` is the number of rows (so ``mean`` and ``sum`` of it work as well),
   with the labels checked against the classes of ``z`` first so a bad label is
   reported naming ``y``.
3. The gradient of ``log(softmax(z))``, which autodiff builds as
   ``s * (g / s - sum(g / s * s))`` with ``s = softmax(z)``, becomes
   ``g - s * sum(g)``: the same value with no division by ``s``.
4. ``G - s * sum(G)`` where ``G`` scatters ``gp`` into zeros at
   ``[arange(n), y]`` (the gradient of the picked log-probabilities) becomes
   ``softmax_cross_entropy_grad(-gp, z, y)``: the fused ``(softmax - onehot) * g``.

The pass must run on every backend: without it the idiom is not finite.
"""
from __future__ import annotations

import numpy as np

from graphnet.compiler.rewrite import apply_local_rules
from graphnet.compiler.rewrite.canonicalize import constant_value
from graphnet.compiler.rewrite.cse import merge_equal_nodes
from graphnet.graph import ir as graph
from graphnet.graph.fgraph import FunctionGraph
from graphnet.graph.ir import Constant
from graphnet.ops import elementwise as ew
from graphnet.ops import nn
from graphnet.ops.indexing import (
    AdvancedIncSubtensor, AdvancedSubtensor, ARange, AxisRange, CheckIndexBounds, static_int,
)
from graphnet.ops.reduce import SizeOf, Sum

ROW_AND_LABEL = ("array", "array")


def _op(var, op_type):
    """``var``'s producing node when it is an ``op_type`` (exactly that type), else None."""
    node = var.owner
    return node if node is not None and type(node.op) is op_type else None


def _replacing(node, make):
    """``make()``'s variables, their new nodes marked as built where ``node`` was, in its role."""
    with graph.provenance_of(node):
        return make()


# --------------------------------------------------------- pattern helpers
def _log_softmax_input(lp):
    """``z`` when ``lp`` is ``log_softmax(z)`` or ``log(softmax(z))`` over the rows of a matrix."""
    node = _op(lp, nn.LogSoftmax)
    if node is None and _op(lp, ew.Log) is not None:
        node = _op(lp.owner.inputs[0], nn.Softmax)
    if node is not None and node.inputs[0].ndim == 2 and node.op.axis == 1:
        return node.inputs[0]
    return None


def _row_aligned(var):
    """Variables with as many rows as ``var``: it and its row-wise producers."""
    aligned = [var]
    while var.owner is not None and type(var.owner.op) in (ew.Log, nn.Softmax, nn.LogSoftmax):
        var = var.owner.inputs[0]
        aligned.append(var)
    return aligned


def _counts_rows(n, matrix, labels):
    """Whether the scalar ``n`` is the number of rows of ``matrix`` (and of ``labels``)."""
    rows = [d for d in (matrix.type.shape[0], labels.type.shape[0]) if d is not None]
    if static_int(n) is not None:
        return bool(rows) and all(static_int(n) == d for d in rows)
    size = _op(n, SizeOf)
    return (size is not None and size.op.axis == (0,)
            and any(size.inputs[0] is v for v in _row_aligned(matrix) + [labels]))


def _is_row_range(rows, matrix, labels):
    """Whether ``rows`` is ``arange(n)`` with ``n`` the number of rows."""
    if isinstance(rows, Constant):
        data = rows.data
        return (data.ndim == 1 and np.array_equal(data, np.arange(len(data)))
                and _counts_rows(len(data), matrix, labels))
    along = _op(rows, AxisRange)
    if along is not None:
        return along.op.axis == 0 and any(along.inputs[0] is v for v in _row_aligned(matrix) + [labels])
    node = _op(rows, ARange)
    return (node is not None and static_int(node.inputs[0]) == 0 and static_int(node.inputs[2]) == 1
            and _counts_rows(node.inputs[1], matrix, labels))


def _picked_by_label(node):
    """(matrix, rows, labels) when ``node`` indexes ``matrix[arange(n), labels]``, else None."""
    if not isinstance(node.op, (AdvancedSubtensor, AdvancedIncSubtensor)) or node.op.entries != ROW_AND_LABEL:
        return None
    matrix = node.inputs[0]
    rows, labels = node.inputs[-2:]
    if matrix.ndim != 2 or labels.ndim != 1 or not _is_row_range(rows, matrix, labels):
        return None
    return matrix, rows, labels


def _checked_labels(labels, logits):
    return CheckIndexBounds(1)(labels, logits)


# ------------------------------------------------------------------ rules
def log_of_softmax(node):
    """Rule 1: ``log(softmax(z))`` -> ``log_softmax(z)``."""
    if type(node.op) is ew.Log:
        sm = _op(node.inputs[0], nn.Softmax)
        if sm is not None:
            return _replacing(node, lambda: [nn.LogSoftmax(sm.op.axis)(sm.inputs[0])])
    return None


def picked_log_softmax_to_cross_entropy(node):
    """Rule 2: ``log_softmax(z)[arange(n), y]`` -> ``-softmax_cross_entropy(z, y)``."""
    if type(node.op) is not AdvancedSubtensor:
        return None
    picked = _picked_by_label(node)
    z = _log_softmax_input(picked[0]) if picked else None
    if z is None:
        return None
    labels = picked[2]
    return _replacing(node, lambda: [ew.neg(nn.softmax_cross_entropy(z, _checked_labels(labels, z)))])


def _softmax_of(s):
    """(softmax node's input, axis) when ``s`` is ``softmax(z)`` or ``exp(log_softmax(z))``."""
    node = _op(s, nn.Softmax)
    if node is None and _op(s, ew.Exp) is not None:
        node = _op(s.owner.inputs[0], nn.LogSoftmax)
    return (node.inputs[0], node.op.axis) if node is not None else (None, None)


def _operands(node, op_type):
    """Both orders of a commutative node's two inputs, or [] when it is not an ``op_type``."""
    if type(node.op) is not op_type:
        return []
    a, b = node.inputs
    return [(a, b), (b, a)]


def softmax_grad_of_log_grad(node):
    """Rule 3: ``s * (g / s - sum(g / s * s))`` -> ``g - s * sum(g)``, ``s = softmax(z)``."""
    for s, diff in _operands(node, ew.Mul):
        z, axis = _softmax_of(s)
        sub = _op(diff, ew.Sub)
        if z is None or sub is None:
            continue
        quotient, total = sub.inputs
        div, summed = _op(quotient, ew.TrueDiv), _op(total, Sum)
        if div is None or div.inputs[1] is not s or summed is None:
            continue
        if summed.op.axis != (axis,) or not summed.op.keepdims or summed.inputs[0].owner is None:
            continue
        if not any(a is quotient and b is s for a, b in _operands(summed.inputs[0].owner, ew.Mul)):
            continue
        g = div.inputs[0]
        return _replacing(node, lambda: [ew.sub(g, ew.mul(s, Sum((axis,), keepdims=True)(g)))])
    return None


def log_softmax_grad_to_cross_entropy_grad(node):
    """Rule 4: ``G - s * sum(G)`` with ``G = zeros[arange(n), y] += gp`` -> ``ce_grad(-gp, z, y)``."""
    if type(node.op) is not ew.Sub:
        return None
    scattered, product = node.inputs
    inc = _op(scattered, AdvancedIncSubtensor)
    if inc is None or _op(product, ew.Mul) is None or constant_value(inc.inputs[0]) != 0:
        return None
    picked = _picked_by_label(inc)
    if picked is None:
        return None
    for s, total in _operands(product.owner, ew.Mul):
        z, axis = _softmax_of(s)
        summed = _op(total, Sum)
        if (z is None or axis != 1 or summed is None or summed.op.axis != (1,) or not summed.op.keepdims
                or summed.inputs[0] is not scattered or z.ndim != 2):
            continue
        labels = picked[2]
        gp = inc.inputs[1]

        def fused_gradient():
            per_row = gp if gp.ndim == 1 else ew.second(labels, gp)
            return [nn.SoftmaxCrossEntropyGrad()(ew.neg(per_row), z, _checked_labels(labels, z))]
        return _replacing(node, fused_gradient)
    return None


RULES = [log_of_softmax, picked_log_softmax_to_cross_entropy, softmax_grad_of_log_grad,
         log_softmax_grad_to_cross_entropy_grad]


def stabilize_nll_idiom(fgraph: FunctionGraph) -> FunctionGraph:
    """Apply the four rules above until none fires, then merge what they made twice.

    A rule's replacement reads variables of the graph it matched; where those
    were rewritten in the same round, the next round rewrites them again, so
    equal copies are merged at the end.
    """
    return merge_equal_nodes(apply_local_rules(fgraph, RULES))
