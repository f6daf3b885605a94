"""Graph rewrites. Each pass is a function FunctionGraph -> FunctionGraph.

Local rewrites are small rules ``rule(node) -> replacement outputs or None``
applied to every node until nothing changes; see :func:`apply_local_rules`.
"""
from __future__ import annotations

from graphnet.errors import CompileError
from graphnet.graph.fgraph import FunctionGraph


def _same_type(old, new):
    return new.dtype == old.dtype and new.shape == old.shape


def apply_local_rules(fgraph: FunctionGraph, rules, max_rounds=20) -> FunctionGraph:
    """Apply ``rules`` to every node, round after round, until none fires.

    A replacement must have the replaced variable's dtype and static shape;
    a rule whose result does not is ignored (it would change the program).
    """
    for _ in range(max_rounds):
        mapping = {}
        for node in fgraph.nodes():
            if any(o in mapping for o in node.outputs):
                continue
            for rule in rules:
                try:
                    new = rule(node)
                except CompileError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a rule's bug must name the node it met
                    raise CompileError(f"rewrite rule {rule.__name__} failed on {node.op} -> "
                                       f"{node.outputs[0].describe()}, built at {node.source}: "
                                       f"{type(exc).__name__}: {exc}") from exc
                if new is not None and all(_same_type(o, n) for o, n in zip(node.outputs, new)):
                    mapping.update({o: n for o, n in zip(node.outputs, new) if o is not n})
                    break
        if not mapping:
            return fgraph
        fgraph = fgraph.replace(mapping)
    return fgraph
