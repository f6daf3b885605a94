"""Group nodes into kernels. The fusion rules (docs/passes/fuse.md):

1. An elementwise node joins its producer's kernel when it iterates over the
   same domain (the same shape, its other inputs broadcast from smaller ones).
2. A reduction joins the kernel of its elementwise producer as the kernel's
   epilogue; elementwise work that reads the reduced value starts a new kernel.
3. A matrix product stays a BLAS call; its epilogue (bias, activation) is the
   kernel of rule 1 reading the product's buffer.

Legality ("may these fuse?", :func:`fusion_refusal`) is kept apart from
profitability ("should they?", :func:`bytes_saved`). Every producer/consumer
pair that stays apart gets a readable reason in ``FusionPlan.refusals``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from graphnet.fgraph import FunctionGraph
from graphnet.graph import shape_str
from graphnet.ops.reduce import ArgMax, Max, Moments, Sum


# ------------------------------------------------------------ iteration shapes
def input_pattern(var_shape, domain):
    """How an input of static shape ``var_shape`` is read over ``domain``, collapsed to 2-D.

    "full" (every element), "row" (one value per column, shared by every row),
    "col" (one value per row), "scalar", or None when the broadcast cannot be
    expressed on the collapsed (rows, last axis) domain.
    """
    lead = len(domain) - len(var_shape)
    if lead < 0:
        return None
    padded = (1,) * lead + tuple(var_shape)
    broadcast = [v == 1 and d != 1 for v, d in zip(padded, domain)]
    if not any(broadcast):
        return "full"
    if all(broadcast):
        return "scalar"
    if all(broadcast[:-1]) and not broadcast[-1]:
        return "row"
    if not any(broadcast[:-1]) and broadcast[-1]:
        return "col"
    return None


def reduce_pattern(op, ndim):
    """Which values a reduction keeps over the collapsed domain, or None."""
    axes = tuple(op.axis)
    if ndim == 0 or axes == tuple(range(ndim)):
        return "all"
    if axes == (ndim - 1,):
        return "row"
    if axes == tuple(range(ndim - 1)):
        return "col"
    return None


FUSABLE_REDUCTIONS = (Sum, Max, Moments)


def is_elementwise(node):
    return node.op.kind == "elementwise"


def is_fusable_reduction(node):
    return isinstance(node.op, FUSABLE_REDUCTIONS) and reduce_pattern(node.op, node.inputs[0].ndim) is not None


def iteration_domain(node):
    """The static shape a node iterates over: its output, or a reduction's input."""
    return node.inputs[0].shape if is_fusable_reduction(node) else node.outputs[0].shape


# ----------------------------------------------------------------------- groups
@dataclass(eq=False)
class Group:
    """Nodes that will run as one kernel."""

    nodes: list
    kind: str                      # "fused", "blas", "rowwise", "view", "host"
    domain: tuple = None           # static iteration shape of a fused group
    reduce_kind: str = None        # "row", "col" or "all" once a reduction joined
    reductions: list = field(default_factory=list)

    def produces(self, var):
        return var.owner is not None and var.owner in self.nodes


@dataclass
class FusionPlan:
    groups: list                   # in execution order
    refusals: list                 # (producer variable, consumer node, reason)
    scores: dict = field(default_factory=dict)  # (producer group id, node) -> bytes saved


def kind_of(node):
    if is_elementwise(node) or is_fusable_reduction(node):
        return "fused"
    return {"blas": "blas", "rowwise": "rowwise", "view": "view"}.get(node.op.kind, "host")


# ---------------------------------------------------------------- legality
def fusion_refusal(group, node, reaches):
    """None if ``node`` may join ``group``, else the reason it may not."""
    if group.kind != "fused":
        return f"the producer is a {group.kind} step, which has no fusable epilogue slot"
    if kind_of(node) != "fused":
        return f"{node.op.name} is not elementwise or a fusable reduction"
    domain = iteration_domain(node)
    if domain != group.domain:
        return f"different iteration shapes {shape_str(group.domain)} and {shape_str(domain)}"
    for var in node.inputs:
        if group.produces(var) and var.owner in group.reductions:
            return "it reads a reduction of that kernel (rule 2: a broadcast-back is a second kernel)"
        if not group.produces(var) and input_pattern(var.shape, domain) is None:
            return f"input {var.describe()} {shape_str(var.shape)} broadcasts in a way the 2-D kernel cannot index"
    if is_fusable_reduction(node):
        pattern = reduce_pattern(node.op, node.inputs[0].ndim)
        if group.reduce_kind not in (None, pattern):
            return f"the kernel already reduces by {group.reduce_kind}, this reduction is by {pattern}"
    for var in node.inputs:
        producer = var.owner
        if producer is not None and not group.produces(var) and reaches(group, producer):
            return "fusing would create a cycle (the node also depends on the kernel through another step)"
    return None


def bytes_saved(var):
    """Bytes no longer written and read back when ``var`` stays inside a kernel."""
    elements = 1
    for d in var.shape:
        elements *= 1024 if d is None else d   # unknown batch: a representative size
    return 2 * elements * var.dtype.itemsize


# --------------------------------------------------------------------- planner
def plan_fusion(fgraph: FunctionGraph, fuse=True) -> FusionPlan:
    """Greedy, topological grouping by the rules above."""
    group_of = {}
    groups = []
    refusals = []
    scores = {}

    def reaches(src, node):
        """Whether ``node``'s group transitively depends on group ``src`` via another group."""
        target = group_of[node]
        stack, seen = [target], set()
        while stack:
            g = stack.pop()
            if g is src:
                return True
            if id(g) in seen:
                continue
            seen.add(id(g))
            for n in g.nodes:
                for inp in n.inputs:
                    if inp.owner is not None and inp.owner in group_of:
                        stack.append(group_of[inp.owner])
        return False

    for node in fgraph.nodes():
        kind = kind_of(node)
        joined = None
        if fuse and kind == "fused":
            for var in node.inputs:
                if var.owner is None or var.owner not in group_of:
                    continue
                group = group_of[var.owner]
                if group is joined:
                    continue
                if joined is None:
                    reason = fusion_refusal(group, node, reaches)
                    if reason is None and bytes_saved(var) <= 0:
                        reason = "no bytes saved"
                    if reason is None:
                        _add(group, node)
                        group_of[node] = joined = group
                        scores[(id(group), node)] = bytes_saved(var)
                        continue
                elif _may_merge(joined, group, reaches):
                    scores[(id(joined), node)] = scores.get((id(joined), node), 0) + bytes_saved(var)
                    _merge(joined, group, group_of, groups)
                    continue
                else:
                    reason = "its other producer's kernel cannot merge with this one (shapes, reductions or a cycle)"
                refusals.append((var, node, reason))
        elif not fuse and kind == "fused":
            for var in node.inputs:
                if var.owner is not None:
                    refusals.append((var, node, "fusion is off (fuse=False)"))
        if joined is None:
            group = Group([node], kind, domain=iteration_domain(node) if kind == "fused" else None)
            if kind == "fused" and is_fusable_reduction(node):
                group.reduce_kind = reduce_pattern(node.op, node.inputs[0].ndim)
                group.reductions.append(node)
            groups.append(group)
            group_of[node] = group
    return FusionPlan(_schedule(groups, group_of), refusals, scores)


def _add(group, node):
    group.nodes.append(node)
    if is_fusable_reduction(node):
        group.reduce_kind = reduce_pattern(node.op, node.inputs[0].ndim)
        group.reductions.append(node)


def _may_merge(a, b, reaches):
    if b.kind != "fused" or b.domain != a.domain:
        return False
    if a.reduce_kind and b.reduce_kind and a.reduce_kind != b.reduce_kind:
        return False
    # A path a -> other -> b (or back) would make the merged kernel wait on itself.
    return not _depends_via_other(a, b, reaches) and not _depends_via_other(b, a, reaches)


def _depends_via_other(src, dst, reaches):
    for n in dst.nodes:
        for inp in n.inputs:
            producer = inp.owner
            if producer is None or producer in src.nodes or producer in dst.nodes:
                continue
            if reaches(src, producer):
                return True
    return False


def _merge(into, other, group_of, groups):
    for n in other.nodes:
        group_of[n] = into
    into.nodes.extend(other.nodes)
    into.reductions.extend(other.reductions)
    into.reduce_kind = into.reduce_kind or other.reduce_kind
    groups.remove(other)


def _schedule(groups, group_of):
    """Order groups so every group runs after the groups it reads (Kahn's algorithm)."""
    deps = {id(g): set() for g in groups}
    for g in groups:
        for n in g.nodes:
            for inp in n.inputs:
                if inp.owner is not None and group_of[inp.owner] is not g:
                    deps[id(g)].add(id(group_of[inp.owner]))
    done, ordered = set(), []
    remaining = list(groups)
    while remaining:
        ready = next(g for g in remaining if deps[id(g)] <= done)
        remaining.remove(ready)
        done.add(id(ready))
        # Nodes inside a kernel run in graph order.
        # Nodes inside a kernel run in graph order; a node's outputs are always
        # created after its inputs, so output ids are a topological order.
        ready.nodes.sort(key=lambda n: n.outputs[0].id)
        ordered.append(ready)
    return ordered

