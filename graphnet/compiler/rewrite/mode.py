"""Resolve training versus evaluation before anything else runs.

Dropout and batch norm build both forms joined by ``mode_select``; a function
compiled with ``training=True`` keeps the training form and collects the
``default_update`` of every shared variable its graph reads (the dropout step,
the running statistics); ``training=False`` keeps the evaluation form.
Every backend runs this first, so none of them sees ``mode_select``.
"""
from __future__ import annotations

from graphnet.graph.fgraph import FunctionGraph
from graphnet.graph.ir import SharedVariable
from graphnet.ops.nn import ModeSelect


def collect_default_updates(fgraph: FunctionGraph) -> FunctionGraph:
    """Add the default update of each shared variable read, unless the user updates it."""
    explicit = {shared for shared, _ in fgraph.updates}
    extra, seen = [], set(explicit)
    pending = list(fgraph.roots)
    while pending:
        found = [v for v in FunctionGraph((), tuple(pending)).variables()
                 if isinstance(v, SharedVariable) and v.default_update is not None and v not in seen]
        pending = []
        for shared in found:
            seen.add(shared)
            extra.append((shared, shared.default_update))
            pending.append(shared.default_update)  # an update may read more state
    return FunctionGraph(fgraph.inputs, fgraph.outputs, fgraph.updates + tuple(extra), dict(fgraph.notes))


def specialize_mode(fgraph: FunctionGraph, training: bool) -> FunctionGraph:
    """Replace every ``mode_select(train, evaluate)`` by the branch of this mode."""
    if training:
        fgraph = collect_default_updates(fgraph)
    branch = 0 if training else 1
    selects = [n for n in fgraph.nodes() if isinstance(n.op, ModeSelect)]
    return fgraph.replace({n.outputs[0]: n.inputs[branch] for n in selects})
