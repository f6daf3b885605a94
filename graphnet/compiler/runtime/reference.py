"""The reference backend: every node runs its op's NumPy ``perform``.

Slow and obviously correct: the oracle the compiled backends are tested
against. Shapes are inferred and checked for every node before it runs, so a
mismatch is reported with the node and the user's line that built it.
"""
from __future__ import annotations

import numpy as np

from graphnet.errors import GraphnetError, ShapeError
from graphnet.graph.fgraph import FunctionGraph
from graphnet.graph.ir import Constant, SharedVariable
from graphnet.ops.nn import SoftmaxCrossEntropy, SoftmaxCrossEntropyGrad, check_labels, label_input_context


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
    if getattr(node.op, "infer_shape_needs_values", False):
        return node.op.infer_shape(node, shapes, values=args)
    return node.op.infer_shape(node, shapes)


class ReferenceProgram:
    """Runs a FunctionGraph node by node with NumPy."""

    backend = "reference"

    def __init__(self, fgraph: FunctionGraph, check_numerics=False):
        self.fgraph = fgraph
        self.nodes = fgraph.nodes()
        self.check_numerics = check_numerics
        # Cross-entropy nodes whose labels are fed: checked before the op indexes with them,
        # with the compiled backends' wording (the input's name and the user's line).
        self.fed_labels = {n for n in self.nodes if isinstance(n.op, (SoftmaxCrossEntropy, SoftmaxCrossEntropyGrad))
                           and n.inputs[-1].owner is None}

    def run(self, feeds):
        """``feeds``: {placeholder: array}. Returns (outputs, new update values)."""
        values = dict(feeds)
        for var in self.fgraph.variables():
            if isinstance(var, Constant):
                values[var] = var.data
            elif isinstance(var, SharedVariable):
                values[var] = var.get_value(copy=False)
        for node in self.nodes:
            args = [values[v] for v in node.inputs]
            try:
                shapes = infer_output_shapes(node, args)
            except Exception as exc:  # noqa: BLE001 - re-raised with the node's provenance
                node_error(node, exc)
            if node in self.fed_labels:
                check_labels(args[-1], np.shape(args[-2])[1], label_input_context(node.inputs[-1], node))
            try:
                results = node.op.perform(args)
            except Exception as exc:  # noqa: BLE001 - re-raised with the node's provenance
                node_error(node, exc)
            for out, value, shape in zip(node.outputs, results, shapes):
                value = np.asarray(value)
                if value.shape != tuple(shape) or value.dtype != out.dtype:
                    raise GraphnetError(f"internal: {node.op} produced {value.dtype}{value.shape}, "
                                        f"expected {out.dtype}{tuple(shape)} (node built at {node.source})")
                if self.check_numerics:
                    check_finite(node, out, value)
                values[out] = value
        outputs = [values[v] for v in self.fgraph.outputs]
        updates = [values[expr] for _, expr in self.fgraph.updates]
        return outputs, updates


def check_finite(node, var, value):
    from graphnet.errors import NumericsError
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        bad = "NaN" if np.isnan(value).any() else "Inf"
        raise NumericsError(f"check_numerics: {bad} in the output of {node.op} ({var.describe()}), "
                            f"built at {node.source}")


def build(fgraph, options):
    """The graph as written, except the Theano NLL idiom: ``log(softmax(z))[arange(n), y]``
    underflows to -inf for large logits, so even the oracle computes it stably."""
    from graphnet.compiler.rewrite.stabilize_nll import stabilize_nll_idiom
    if "stabilize_nll" not in options.get("disable_passes", ()):
        fgraph = stabilize_nll_idiom(fgraph)
    return ReferenceProgram(fgraph, check_numerics=options.get("check_numerics", False))
