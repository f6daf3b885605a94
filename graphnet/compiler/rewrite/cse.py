"""Merge equal nodes: the same op applied to the same inputs is computed once.

Constants with equal values and dtypes are merged first, so ``x * 2`` built
twice becomes one node.
"""
from __future__ import annotations

from graphnet.graph.fgraph import FunctionGraph
from graphnet.graph.ir import Constant


def merge_equal_nodes(fgraph: FunctionGraph) -> FunctionGraph:
    mapping = {}
    constants = {}
    for var in fgraph.variables():
        if isinstance(var, Constant):
            key = (var.dtype.str, var.data.shape, var.data.tobytes())
            mapping[var] = constants.setdefault(key, var)
    seen = {}
    for node in fgraph.nodes():
        inputs = tuple(id(mapping.get(v, v)) for v in node.inputs)
        key = (node.op, inputs)
        twin = seen.get(key)
        if twin is None:
            seen[key] = node
            # Rebuilt lazily by replace(); record the canonical node.
            continue
        for out, twin_out in zip(node.outputs, twin.outputs):
            mapping[out] = twin_out
    mapping = {k: v for k, v in mapping.items() if k is not v}
    return fgraph.replace(mapping)
