"""A function's whole graph: its inputs, outputs and updates, as passes see it.

Compiler passes take a :class:`FunctionGraph` and return a new one; nothing is
mutated, so a pass can be switched off or reordered without side effects.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from graphnet.graph.ir import ancestors_toposort, clone_replace, graph_inputs


@dataclass(frozen=True)
class FunctionGraph:
    inputs: tuple            # placeholders, in call order
    outputs: tuple           # fetched variables
    updates: tuple = ()      # (shared variable, new-value expression) pairs
    notes: dict = field(default_factory=dict, compare=False)  # what passes recorded

    @property
    def roots(self):
        """Every variable the function must compute: outputs, then update values."""
        return list(self.outputs) + [expr for _, expr in self.updates]

    def nodes(self):
        """Apply nodes in execution order (inputs before consumers)."""
        return ancestors_toposort(self.roots)

    def variables(self):
        """Graph inputs (placeholders, shared, constants) the roots depend on."""
        return graph_inputs(self.roots)

    def replace(self, mapping):
        """A new FunctionGraph with variables substituted ({old: new})."""
        if not mapping:
            return self
        roots = clone_replace(self.roots, mapping)
        n = len(self.outputs)
        updates = tuple((shared, expr) for (shared, _), expr in zip(self.updates, roots[n:]))
        return FunctionGraph(self.inputs, tuple(roots[:n]), updates, dict(self.notes))

    def with_roots(self, roots):
        n = len(self.outputs)
        updates = tuple((shared, expr) for (shared, _), expr in zip(self.updates, roots[n:]))
        return FunctionGraph(self.inputs, tuple(roots[:n]), updates, dict(self.notes))

    def clients(self):
        """{variable: [(node, input position), ...]} for every variable in the graph."""
        users = {}
        for node in self.nodes():
            for pos, inp in enumerate(node.inputs):
                users.setdefault(inp, []).append((node, pos))
        return users
