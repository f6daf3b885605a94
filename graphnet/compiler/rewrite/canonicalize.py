"""Algebraic canonicalization: drop work that cannot change a value.

``x + 0``, ``x - 0``, ``x * 1``, ``x / 1`` -> ``x``; ``-(-x)`` -> ``x``;
``second(a, b)`` -> ``b`` when ``b`` already has the full shape, and
``second(a, b)`` -> ``second(s, b)`` (and ``size_of``) when ``a``'s op declares an
input ``s`` of its shape (``Op.shape_source``); ``0 * x`` and
``x + zeros`` where the zeros come from gradients of unused branches; ``x ** 1`` -> ``x``,
``x ** 2`` -> ``x * x``. Each rule
fires only when the result keeps the node's dtype and static shape.
"""
from __future__ import annotations


import numpy as np

from graphnet.compiler.rewrite import apply_local_rules
from graphnet.graph.fgraph import FunctionGraph
from graphnet.graph.ir import Constant, as_variable
from graphnet.ops import elementwise as ew
from graphnet.ops import linalg, nn, reduce, shape


def constant_value(var):
    """The scalar value of ``var`` if it is a constant (or a broadcast constant), else None."""
    if isinstance(var, Constant) and var.data.size == 1:
        return var.data.reshape(()).item()
    if var.owner is not None and isinstance(var.owner.op, ew.Second):
        return constant_value(var.owner.inputs[1])
    return None


def _fits(var, node):
    out = node.outputs[0]
    return var.shape == out.shape and var.dtype == out.dtype


def _identity_operand(node):
    op = node.op
    if isinstance(op, (ew.Add, ew.Sub, ew.Mul, ew.TrueDiv)):
        a, b = node.inputs
        neutral = 0 if isinstance(op, (ew.Add, ew.Sub)) else 1
        if constant_value(b) == neutral and _fits(a, node):
            return [a]
        if isinstance(op, (ew.Add, ew.Mul)) and constant_value(a) == neutral and _fits(b, node):
            return [b]
    return None


def _small_integer_power(node):
    """``x ** 1`` -> ``x`` and ``x ** 2`` -> ``x * x``: both exact (one rounding, as ``pow``'s
    correctly rounded result), where ``pow`` is a libm call per element that keeps a loop
    from vectorizing (weight decay's ``W ** 2`` and its gradient's ``2 * W ** 1``)."""
    if isinstance(node.op, ew.Pow):
        x, exponent = node.inputs
        value = constant_value(exponent)
        if value == 1 and _fits(x, node):
            return [x]
        if value == 2 and x.dtype.kind == "f":
            return [ew.mul(x, x)]
    return None


def _double_negation(node):
    if isinstance(node.op, ew.Neg):
        inner = node.inputs[0]
        if inner.owner is not None and isinstance(inner.owner.op, ew.Neg):
            return [inner.owner.inputs[0]]
    return None


def _redundant_broadcast(node):
    if isinstance(node.op, ew.Second) and _fits(node.inputs[1], node):
        return [node.inputs[1]]
    return None


def _shape_from_shape_source(node):
    """An op reading only the shape of ``a`` (``second(a, b)``, ``size_of(a)``) reads the input
    of ``a``'s op that has ``a``'s shape instead (``Op.shape_source``: the loss's labels, an
    elementwise op's input of its static shape),
    so it need not wait for ``a``: the gradient's seed ``ones_like(loss) / n`` no longer
    depends on the loss, which can then be computed in one kernel with its gradient
    (``rowwise_join``)."""
    inputs = list(node.inputs)
    shape_only = range(len(inputs)) if node.op.reads_only_shapes else node.op.shape_only_inputs
    for position in shape_only:
        a = inputs[position]
        source = a.owner.op.shape_source(a.owner) if a.owner is not None else None
        if source is not None and a.owner.inputs[source].shape == a.shape:
            inputs[position] = a.owner.inputs[source]
    if inputs == list(node.inputs):
        return None
    replacement = node.op(*inputs)
    return [replacement] if _fits(replacement, node) else None


def _where_of_zeros(node):
    # Only where a zero gradient of a dead branch meets another gradient;
    # ``0 * x`` for a finite-by-construction x (gradients of unused branches).
    if isinstance(node.op, ew.Where):
        cond, a, b = node.inputs
        if constant_value(a) == 0 and constant_value(b) == 0:
            return [ew.zeros_like(node.outputs[0])]
    return None


def _cast_of_constant_dtype(node):
    if isinstance(node.op, ew.Cast) and node.inputs[0].dtype == node.op.dtype:
        return [node.inputs[0]]
    return None


#: ops whose result is zero when the marked input is a gradient zero: (op type, input positions)
_ZERO_PRESERVING = [
    (ew.Mul, (0, 1)), (linalg.Dot, (0, 1)), (ew.TrueDiv, (0,)), (ew.Neg, (0,)), (ew.Cast, (0,)),
    (ew.Second, (1,)), (reduce.Sum, (0,)), (nn.SoftmaxCrossEntropyGrad, (0,)),
    (shape.Transpose, (0,)), (shape.Reshape, (0,)), (shape.ReshapeLike, (0,)), (shape.ExpandDims, (0,)),
    (shape.Squeeze, (0,)),
]


def _zeros_for(node):
    """Zeros of ``node``'s output type, marked as a gradient zero, without new work where possible."""
    out = node.outputs[0]
    for var in node.inputs:
        if var.structural_zero and var.shape == out.shape and var.dtype == out.dtype:
            return var
    zeros = None
    for var in node.inputs:
        if var.shape == out.shape:
            zeros = ew.second(var, as_variable(0, like=out))
            break
    if zeros is None and None not in out.shape and np.prod(out.shape, dtype=np.int64) <= 1 << 16:
        zeros = Constant(np.zeros(out.shape, out.dtype))
    if zeros is None or zeros.dtype != out.dtype:
        return None
    zeros.structural_zero = True
    return zeros


def _gradient_zeros_propagate(node):
    """Work on gradients that are structurally zero (a dead training/eval branch,
    an unused output) is dropped: ``0 * x``, ``sum(0)``, ``dot(0, W)`` are zeros,
    ``x + 0`` is ``x``. Only marked zeros propagate, never a computed 0."""
    op = node.op
    for op_type, positions in _ZERO_PRESERVING:
        if isinstance(op, op_type) and any(node.inputs[p].structural_zero for p in positions):
            zeros = _zeros_for(node)
            return None if zeros is None else [zeros]
    if isinstance(op, ew.Where) and all(v.structural_zero or constant_value(v) == 0 for v in node.inputs[1:]):
        zeros = _zeros_for(node)
        return None if zeros is None else [zeros]
    if isinstance(op, (ew.Add, ew.Sub)):
        a, b = node.inputs
        if b.structural_zero and _fits(a, node):
            return [a]
        if a.structural_zero and _fits(b, node):
            return [b] if isinstance(op, ew.Add) else [ew.neg(b)]
    return None


def canonicalize(fgraph: FunctionGraph) -> FunctionGraph:
    rules = [_gradient_zeros_propagate, _identity_operand, _small_integer_power, _double_negation, _redundant_broadcast,
             _shape_from_shape_source, _where_of_zeros, _cast_of_constant_dtype]
    return apply_local_rules(fgraph, rules)



