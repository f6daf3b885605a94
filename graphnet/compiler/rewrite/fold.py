"""Constant folding: a node whose inputs are all constants becomes a constant.

Element counts of statically known shapes (``size_of``) fold too, so ``mean``
over a known axis divides by a literal.
"""
from __future__ import annotations

import numpy as np

from graphnet.compiler.rewrite import apply_local_rules
from graphnet.graph.fgraph import FunctionGraph
from graphnet.graph.ir import Constant
from graphnet.ops.reduce import SizeOf

#: larger results stay computed at run time rather than baked into the code
MAX_FOLDED_ELEMENTS = 1 << 16


def _fold_constant_inputs(node):
    if not node.inputs or not all(isinstance(v, Constant) for v in node.inputs):
        return None
    if node.op.uses_element_index:
        return None
    try:
        results = node.op.perform([v.data for v in node.inputs])
    except Exception:  # noqa: BLE001 - leave the error to run time, with its provenance
        return None
    if any(np.size(r) > MAX_FOLDED_ELEMENTS for r in results):
        return None
    return [Constant(np.asarray(r, dtype=o.dtype)) for r, o in zip(results, node.outputs)]


def _fold_static_size(node):
    if isinstance(node.op, SizeOf):
        value = node.op.static_value(node.inputs[0])
        if value is not None:
            return [Constant(np.int64(value))]
    return None


def fold_constants(fgraph: FunctionGraph) -> FunctionGraph:
    return apply_local_rules(fgraph, [_fold_static_size, _fold_constant_inputs])
