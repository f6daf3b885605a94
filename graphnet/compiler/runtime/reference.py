"""The reference backend: every node runs its op's NumPy ``perform``.

Slow and obviously correct: the oracle the compiled backends are tested
against. Shapes are inferred and checked for every node before it runs, so a
mismatch is reported with the node and the user's line that built it.
"""
from __future__ import annotations

import numpy as np

from graphnet.compiler.runtime.provenance import check_finite, infer_output_shapes, node_error
from graphnet.errors import GraphnetError
from graphnet.graph.fgraph import FunctionGraph
from graphnet.graph.ir import Constant, SharedVariable


class ReferenceProgram:
    """Runs a FunctionGraph node by node with NumPy."""

    backend = "reference"

    def __init__(self, fgraph: FunctionGraph, check_numerics=False):
        self.fgraph = fgraph
        self.nodes = fgraph.nodes()
        self.check_numerics = check_numerics
        # Ops that check input values (cross-entropy's labels) are asked before they run,
        # through the same hook as the compiled backends, so the message is the same.
        self.checked = {n for n in self.nodes if n.op.checked_inputs}

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
            if node in self.checked:
                node.op.check_values(node, {i: args[i] for i in node.op.checked_inputs}, [np.shape(a) for a in args])
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


def build(fgraph, options):
    """The graph as written, except the Theano NLL idiom: ``log(softmax(z))[arange(n), y]``
    underflows to -inf for large logits, so even the oracle computes it stably."""
    from graphnet.compiler.rewrite.stabilize_nll import stabilize_nll_idiom
    if "stabilize_nll" not in options.get("disable_passes", ()):
        fgraph = stabilize_nll_idiom(fgraph)
    return ReferenceProgram(fgraph, check_numerics=options.get("check_numerics", False))
