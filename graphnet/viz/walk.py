"""What every view of a graph needs: its roots, its nodes in order, and how to name them.

The views (text, DOT, networkx, the kernel report) accept the same things: a
variable, a list of variables, a compiled :class:`~graphnet.function.Function`
(its optimized graph, updates included) or a :class:`~graphnet.graph.fgraph.FunctionGraph`.
"""
from __future__ import annotations

from dataclasses import dataclass

from graphnet.errors import GraphnetError
from graphnet.graph.fgraph import FunctionGraph
from graphnet.graph.ir import Constant, Placeholder, SharedVariable, Variable, ancestors_toposort, shape_str


@dataclass(frozen=True)
class Roots:
    """The variables a view starts from: fetched outputs and (shared, new value) updates."""

    outputs: tuple
    updates: tuple = ()

    @property
    def all(self):
        return list(self.outputs) + [expr for _, expr in self.updates]

    def nodes(self):
        """Apply nodes reachable from the roots, inputs before consumers."""
        return ancestors_toposort(self.all)

    def leaves(self):
        """Variables without an owner (placeholders, shared, constants), first use first."""
        found, seen = [], set()

        def add(var):
            if var.owner is None and id(var) not in seen:
                seen.add(id(var))
                found.append(var)

        for var in self.all:
            add(var)
        for node in self.nodes():
            for inp in node.inputs:
                add(inp)
        for shared, _ in self.updates:
            add(shared)
        return found


def compiled_graph(what):
    """The graph a compiled function runs: its program's optimized graph, else ``fn.fgraph``.

    Returns ``what`` itself for a FunctionGraph, and None for anything else.
    """
    if isinstance(what, FunctionGraph):
        return what
    program = getattr(what, "program", None)
    for fgraph in (getattr(program, "fgraph", None), getattr(what, "fgraph", None)):
        if isinstance(fgraph, FunctionGraph):
            return fgraph
    return None


def as_roots(what, updates=None) -> Roots:
    """``what`` (a variable, a list of them, a Function or a FunctionGraph) as :class:`Roots`."""
    fgraph = compiled_graph(what)
    if fgraph is not None:
        if updates:
            raise GraphnetError("updates: a compiled function already carries its updates")
        return Roots(tuple(fgraph.outputs), tuple(fgraph.updates))
    outputs = [what] if isinstance(what, Variable) else list(what) if isinstance(what, (list, tuple)) else None
    if outputs is None or not all(isinstance(v, Variable) for v in outputs):
        raise GraphnetError(f"expected a graph variable, a list of them or a compiled function, "
                            f"got {type(what).__name__}")
    pairs = list(updates.items()) if isinstance(updates, dict) else list(updates or [])
    for shared, expr in pairs:
        if not isinstance(shared, SharedVariable) or not isinstance(expr, Variable):
            raise GraphnetError(f"updates: expected (shared variable, expression) pairs, got ({shared!r}, {expr!r})")
    return Roots(tuple(outputs), tuple(pairs))


# ---------------------------------------------------------------- naming things
def leaf_kind(var):
    """"placeholder", "shared", "constant" or "input" (an ownerless plain Variable)."""
    if isinstance(var, Placeholder):
        return "placeholder"
    if isinstance(var, SharedVariable):
        return "shared"
    if isinstance(var, Constant):
        return "constant"
    return "input"


def type_str(var):
    """``float32 (?, 784)``: the dtype and static shape, ``?`` for a size known at run time."""
    return f"{var.dtype.name} {shape_str(var.shape)}"


def op_label(node, var=None):
    """The op as printed (``sum{axis=(0,), keepdims=False}``), with ``[i]`` for one of several outputs."""
    label = str(node.op)
    if var is not None and len(node.outputs) > 1:
        label += f"[{var.index}]"
    return label


def leaf_label(var):
    """``x``, ``W1``, ``0.1``: how a graph input is named in every view."""
    return var.describe()


def node_stages(roots: Roots):
    """{Apply node: "forward" | "backward" | "update"} for every node reachable from ``roots``.

    "backward" is what ``grad`` built (``Variable.role``). "update" is user-built
    work that feeds only the updates, not any output: the optimizer's step.
    """
    feeds_outputs = {id(n) for n in ancestors_toposort(list(roots.outputs))}
    stages = {}
    for node in roots.nodes():
        if any(o.role == "backward" for o in node.outputs):
            stages[node] = "backward"
        elif id(node) in feeds_outputs or not roots.updates:
            stages[node] = "forward"
        else:
            stages[node] = "update"
    return stages


def letter_id(index):
    """0 -> "A", 25 -> "Z", 26 -> "AA": the short ids debugprint uses, as Theano's do."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("A") + rem) + letters
    return letters


def home_kernels(kernels):
    """{node: index of its kernel}: the first kernel computing it (a later one may recompute it,
    fusion rule 8, instead of reading its value)."""
    kernel_of = {}
    for i, k in enumerate(kernels):
        for node in k.nodes:
            kernel_of.setdefault(node, i)
    return kernel_of
