"""Reverse-mode differentiation that builds the backward pass as more graph.

``grad(cost, wrt)`` sweeps the nodes between ``wrt`` and ``cost`` from the
cost backwards, starting from dcost/dcost = 1. Each node's op turns the
gradients of its outputs into gradients of its inputs (``Op.grad``), built
from ordinary ops; contributions to a variable used several times are summed.
The result is a graph like any other, which the compiler optimizes and fuses.
"""
from __future__ import annotations

from graphnet.errors import GradientError, ShapeError
from graphnet.graph import ir as graph
from graphnet.graph.ir import Variable, ancestors_toposort, as_variable, shape_str
from graphnet.ops import elementwise as ew
from graphnet.ops.shape import sum_to


def grad(cost, wrt, known_grads=None, consider_constant=None):
    """Symbolic gradients of the scalar ``cost`` with respect to ``wrt``.

    ``wrt`` is a variable (one gradient returned) or a list (a list returned).
    An input that does not influence the cost gets zeros; an integer input
    raises :class:`GradientError`. ``known_grads`` ({variable: gradient})
    seeds the sweep at inner variables, for chaining gradients by hand.
    ``consider_constant`` (variables) stops the sweep there, as if each were
    a constant: Theano's argument, and what ``gn.stop_gradient`` does in the graph.
    """
    single = isinstance(wrt, Variable)
    wrt_list = [wrt] if single else list(wrt)
    cost = as_variable(cost)
    if cost.ndim != 0:
        raise GradientError(f"grad: the cost must be a scalar, got shape {shape_str(cost.shape)} "
                            f"({cost.describe()}, built at {cost.source}); reduce it with gn.sum or gn.mean")
    if cost.dtype.kind != "f":
        raise GradientError(f"grad: the cost must be floating point, got {cost.dtype}")
    for w in wrt_list:
        if not isinstance(w, Variable):
            raise GradientError(f"grad: wrt must hold graph variables, got {type(w).__name__}")
        if w.dtype.kind != "f":
            raise GradientError(f"grad: {w.describe()} has dtype {w.dtype}; only floating-point "
                                "variables are differentiable (integer labels and indices are not)")

    constants = list(consider_constant or ())
    for c in constants:
        if not isinstance(c, Variable):
            raise GradientError(f"grad: consider_constant must hold graph variables, got {type(c).__name__}")
    with graph.provenance(role="backward"):   # what the sweep builds is the backward graph
        seeds = {cost: ew.ones_like(cost)}
        seeds.update(known_grads or {})
        grads = _backward_sweep([cost], wrt_list, seeds, {id(c) for c in constants})
        results = [grads.get(w) if w in grads else ew.gradient_zeros(w) for w in wrt_list]
    return results[0] if single else results


def vjp(outputs, cotangents, wrt):
    """Gradients w.r.t. ``wrt`` of ``sum(<outputs[i], cotangents[i]>)``: the pullback of several outputs
    at once, without building that scalar (what the backward loop of ``scan`` computes at each step).

    A ``wrt`` variable the outputs do not depend on gets None.
    """
    seeds = {}
    for out, cot in zip(outputs, cotangents):
        cot = as_variable(cot, like=out)
        cot = ew.cast(cot, out.dtype) if cot.dtype != out.dtype else cot
        seeds[out] = ew.add(seeds[out], cot) if out in seeds else cot
    with graph.provenance(role="backward"):
        grads = _backward_sweep(list(seeds), list(wrt), seeds)
    return [grads.get(w) for w in wrt]


def _backward_sweep(roots, wrt, seeds, constant_ids=frozenset()):
    nodes = ancestors_toposort(roots)
    relevant = _on_path(nodes, wrt, seeds, constant_ids)
    grads = dict(seeds)
    for node in reversed(nodes):
        if not any(o in grads for o in node.outputs) or not any(i in relevant for i in node.inputs):
            continue
        out_grads = [grads[o] if o in grads else ew.gradient_zeros(o) for o in node.outputs]
        in_grads = node.op.grad(node.inputs, node.outputs, out_grads)
        if len(in_grads) != len(node.inputs):
            raise GradientError(f"{node.op}.grad returned {len(in_grads)} gradients for "
                                f"{len(node.inputs)} inputs")
        for inp, g in zip(node.inputs, in_grads):
            if g is None or inp not in relevant:
                continue
            g = _fit_to(g, inp, node)
            grads[inp] = ew.add(grads[inp], g) if inp in grads else g
    return grads


def _on_path(nodes, wrt, seeds, constant_ids=frozenset()):
    """Variables through which some ``wrt`` variable reaches the cost (never through a constant one)."""
    reaching = set(wrt) | set(seeds)
    for node in nodes:
        if any(i in reaching for i in node.inputs):
            reaching.update(o for o in node.outputs if id(o) not in constant_ids)
    return reaching


def _fit_to(g, inp, node):
    """Undo broadcasting (sum over stretched axes) and match the input's dtype."""
    g = as_variable(g)
    if g.shape != inp.shape:
        if g.ndim < inp.ndim:
            g = ew.second(inp, g)
        g = sum_to(g, inp.shape)
        if g.ndim != inp.ndim or any(a is not None and b is not None and a != b
                                     for a, b in zip(g.shape, inp.shape)):
            raise ShapeError(f"grad: the gradient of {node.op} for input {inp.describe()} has shape "
                             f"{shape_str(g.shape)}, expected {shape_str(inp.shape)} (node built at {node.source})")
    if g.dtype != inp.dtype and inp.dtype.kind == "f":
        g = ew.cast(g, inp.dtype)
    return g
