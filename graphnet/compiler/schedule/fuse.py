"""Group nodes into kernels. The fusion rules (docs/passes/fuse.md):

1. An elementwise node joins its producer's kernel when it iterates over the
   same domain (the same shape, its other inputs broadcast from smaller ones).
2. A reduction joins the kernel of its elementwise producer (that chain is
   its prologue). Elementwise work on the reduced values themselves (batch
   norm's ``1 / sqrt(var + eps)``) is the reduction's epilogue, in the same
   kernel; elementwise work that broadcasts a reduced value back over the
   full shape (batch norm's normalize) starts a new kernel.
3. A matrix product is a group of its own here; the kernel plan
   (:mod:`.plan`) then makes the elementwise group that first reads it (bias,
   activation, an update) its GEMM epilogue, and folds transposes it reads
   into transpose flags.
8. A cheap elementwise chain another kernel computes is recomputed in the
   kernel that reads it, when that moves fewer bytes (:mod:`.recompute`).

Legality ("may these fuse?", :func:`fusion_refusal`) is kept apart from
profitability ("should they?", :func:`bytes_saved`). Every producer/consumer
pair that stays apart gets a readable reason in ``FusionPlan.refusals``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from graphnet.compiler.schedule.recompute import recompute_cheap_chains
from graphnet.compiler.schedule.rowwise_join import join_rowwise_groups
from graphnet.graph.fgraph import FunctionGraph
from graphnet.graph.ir import shape_str
from graphnet.ops.reduce import Max, Moments, Sum


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
    if all(v == 1 for v in padded):
        return "scalar"
    if all(broadcast[:-1]) and not broadcast[-1]:
        return "row"
    if not any(broadcast[:-1]) and broadcast[-1]:
        return "col"
    if len(domain) >= 3 and padded[1] != 1 and all(v == 1 for a, v in enumerate(padded) if a != 1):
        return "channel"
    return None


#: the input patterns a kernel run once per image (a "channel" input) can read
PER_IMAGE_PATTERNS = frozenset({"full", "channel", "scalar"})


def input_patterns(nodes, produced, domain):
    """The patterns in which ``nodes`` read the values not in ``produced`` over ``domain``."""
    return {input_pattern(v.shape, domain) for n in nodes for v in n.inputs if v not in produced}


def per_image_refusal(group, node):
    """Why ``node`` and ``group`` cannot share a kernel run once per image, or None.

    A per-channel input makes the kernel run over (channels, pixels) per image;
    such a kernel reads no row or column vector and holds no reduction (the
    per-channel statistics are a kernel of their own).
    """
    produced = {v for n in group.nodes for v in n.outputs}
    per_element = [n for n in group.nodes if n not in group.epilogue] + [node]
    patterns = input_patterns(per_element, produced, group.domain)
    if "channel" not in patterns:
        return None
    if patterns - PER_IMAGE_PATTERNS or group.reductions or is_fusable_reduction(node):
        return ("it reads a per-channel vector, so the kernel runs once per image over (channels, pixels), "
                "where row or column vectors and reductions cannot be indexed")
    if any(n.op.uses_element_index for n in per_element):
        return ("it reads a per-channel vector, so the kernel runs once per image, where an element's "
                "flat index (the dropout counter) would repeat from image to image")
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


def is_channel_reduction(node):
    """A float sum or moments over every axis but 1 of a 3-d or larger input (a convolution's
    bias gradient, batch norm's statistics over (batch, rows, cols)): a kernel of its own."""
    if not isinstance(node.op, (Sum, Moments)):
        return False
    x = node.inputs[0]
    return x.ndim >= 3 and x.dtype.kind == "f" and tuple(sorted(node.op.axis)) == (0,) + tuple(range(2, x.ndim))


def iteration_domain(node):
    """The static shape a node iterates over: its output, or a reduction's input."""
    return node.inputs[0].shape if is_fusable_reduction(node) else node.outputs[0].shape


# ----------------------------------------------------------------------- groups
@dataclass(eq=False)
class Group:
    """Nodes that will run as one kernel."""

    nodes: list
    kind: str                      # "fused", "blas", "conv", "pool", "rowwise", "view", "host"
    domain: tuple = None           # static iteration shape of a fused group
    reduce_kind: str = None        # "row", "col" or "all" once a reduction joined
    reductions: list = field(default_factory=list)
    epilogue: list = field(default_factory=list)   # elementwise nodes on reduced values
    #: nodes of another kernel this one computes again instead of reading their value (rule 8)
    recomputed: list = field(default_factory=list)

    def produces(self, var):
        return var.owner is not None and var.owner in self.nodes

    @property
    def reduced_domain(self):
        """Static shape of the reduced values (the epilogue's domain)."""
        return strip_leading_ones(self.reductions[0].outputs[0].shape) if self.reductions else None


def strip_leading_ones(shape):
    shape = tuple(shape)
    while shape and shape[0] == 1:
        shape = shape[1:]
    return shape


@dataclass
class FusionPlan:
    groups: list                   # in execution order
    refusals: list                 # (producer variable, consumer node, reason)
    scores: dict = field(default_factory=dict)  # (producer group id, node) -> bytes saved
    row_joins: list = field(default_factory=list)  # RowwiseJoin: row-wise pairs joined or refused
    recomputes: list = field(default_factory=list)  # recompute.Recompute: chains recomputed or refused (rule 8)


def kind_of(node):
    if is_elementwise(node) or is_fusable_reduction(node):
        domain = iteration_domain(node)
        if all(input_pattern(v.shape, domain) is not None for v in node.inputs):
            return "fused"
        return "host"   # a broadcast the 2-D kernel cannot index: NumPy runs it
    if is_channel_reduction(node):
        return "channel_reduce"
    return {"blas": "blas", "rowwise": "rowwise", "view": "view", "conv": "conv", "pool": "pool", "loop": "loop"}.get(
        node.op.kind, "host")


# ---------------------------------------------------------------- legality
PRODUCER_REASONS = {
    # The kernel plan replaces this one with why the pair is not a GEMM epilogue.
    "blas": "a matrix product's reader joins it only as its GEMM epilogue (rule 3)",
    "rowwise": "the producer is a row-wise template kernel (softmax, cross-entropy), which takes no epilogue",
    "view": "the producer is a view (reshape/transpose), made by NumPy without a kernel",
    # The kernel plan replaces this one with why the pair is not the convolution's epilogue.
    "conv": "a convolution's reader joins it only as its epilogue",
    "pool": "the producer is a pooling kernel, which takes no epilogue",
    "channel_reduce": "the producer is a per-channel reduction kernel, which takes no epilogue",
    "host": "the producer runs on the host (NumPy)",
    "loop": "the producer is a loop (scan), whose body runs as kernels of its own at every step",
}


def consumer_reason(node):
    kind = kind_of(node)
    if kind == "blas":
        return "a matrix product reads its operands from memory (BLAS call, rule 3)"
    if kind == "rowwise":
        return f"{node.op.name} is a row-wise template kernel, which reads its inputs from memory"
    if kind == "view":
        return f"{node.op.name} is a view, made by NumPy without a kernel"
    if kind == "conv":
        return f"{node.op.name} reads its operands from memory (im2col + GEMM)"
    if kind == "pool":
        return f"{node.op.name} is a pooling kernel, which reads its inputs from memory"
    if kind == "channel_reduce":
        return (f"{node.op.name} is a per-channel reduction kernel (over images and pixels), "
                "which reads its input from memory")
    if kind == "loop":
        return f"{node.op} is a loop (scan), which reads its inputs from memory at every step"
    if is_elementwise(node) or isinstance(node.op, FUSABLE_REDUCTIONS):
        return f"{node.op.name} broadcasts or reduces in a way the 2-D kernel cannot index, so NumPy runs it"
    return f"{node.op.name} has no kernel template, so NumPy runs it"


def fusion_refusal(group, node, reaches):
    """None if ``node`` may join ``group``, else the reason it may not."""
    if group.kind != "fused":
        return PRODUCER_REASONS.get(group.kind, "the producer runs on the host (NumPy)")
    if kind_of(node) != "fused":
        return consumer_reason(node)
    for var in node.inputs:
        producer = var.owner
        if producer is not None and not group.produces(var) and reaches(group, producer):
            return "fusing would create a cycle (the node also depends on the kernel through another step)"
    if is_epilogue_candidate(group, node):
        return epilogue_refusal(group, node)
    domain = iteration_domain(node)
    if domain != group.domain:
        return f"different iteration shapes {shape_str(group.domain)} and {shape_str(domain)}"
    for var in node.inputs:
        if group.produces(var) and (var.owner in group.reductions or var.owner in group.epilogue):
            return "it broadcasts a reduction of that kernel back over the full shape (rule 2: a second kernel)"
        if not group.produces(var) and input_pattern(var.shape, domain) is None:
            return f"input {var.describe()} {shape_str(var.shape)} broadcasts in a way the 2-D kernel cannot index"
    if is_fusable_reduction(node):
        pattern = reduce_pattern(node.op, node.inputs[0].ndim)
        if group.reduce_kind not in (None, pattern):
            return f"the kernel already reduces by {group.reduce_kind}, this reduction is by {pattern}"
    return per_image_refusal(group, node)


def is_epilogue_candidate(group, node):
    """An elementwise node over the reduced values of ``group``'s reductions."""
    return (bool(group.reductions) and is_elementwise(node)
            and strip_leading_ones(node.outputs[0].shape) == group.reduced_domain
            and any(group.produces(v) and (v.owner in group.reductions or v.owner in group.epilogue)
                    for v in node.inputs))


def epilogue_refusal(group, node):
    for var in node.inputs:
        if group.produces(var):
            if var.owner not in group.reductions and var.owner not in group.epilogue:
                return "it mixes per-element values with reduced values"
        elif input_pattern(var.shape, group.reduced_domain) not in ("full", "scalar"):
            return f"input {var.describe()} {shape_str(var.shape)} does not fit the reduced shape"
    return None


def bytes_saved(var):
    """Bytes no longer written and read back when ``var`` stays inside a kernel."""
    elements = 1
    for d in var.shape:
        elements *= 1024 if d is None else d   # unknown batch: a representative size
    return 2 * elements * var.dtype.itemsize


# --------------------------------------------------------------------- planner
def plan_fusion(fgraph: FunctionGraph, fuse=True, precomputed=frozenset()) -> FusionPlan:
    """Greedy, topological grouping by the rules above.

    ``precomputed`` nodes (shape arithmetic, evaluated once per input-shape
    signature) get no kernel; their outputs are read like constants.
    """
    group_of = {}
    groups = []
    refusals = []
    scores = {}

    def reaches(src, node):
        """Whether ``node``'s group transitively depends on group ``src`` via another group."""
        if node not in group_of:
            return False   # precomputed shape arithmetic depends on no kernel
        stack, seen = [group_of[node]], set()
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
        if node in precomputed:
            continue
        kind = kind_of(node)
        joined = None
        if fuse and kind == "fused":
            # Try kernels with reductions first, so work on reduced values lands
            # in their epilogue rather than in a kernel of its own.
            producers = [v for v in node.inputs if v.owner is not None and v.owner in group_of]
            producers.sort(key=lambda v: not group_of[v.owner].reductions)
            for var in producers:
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
                if var.owner is not None and var.owner in group_of:
                    refusals.append((var, node, "fusion is off (fuse=False)"))
        else:
            for var in node.inputs:
                if var.owner is not None and var.owner in group_of:
                    refusals.append((var, node, consumer_reason(node)))
        if joined is None:
            group = Group([node], kind, domain=iteration_domain(node) if kind == "fused" else None)
            if kind == "fused" and is_fusable_reduction(node):
                group.reduce_kind = reduce_pattern(node.op, node.inputs[0].ndim)
                group.reductions.append(node)
            groups.append(group)
            group_of[node] = group
    joins = join_rowwise_groups(groups, group_of, reaches, fuse)
    recomputes = []
    if fuse:
        _merge_siblings(groups, group_of)
        def kind_of_var(var):
            return group_of[var.owner].kind if var.owner in group_of else None
        recomputes = recompute_cheap_chains(groups, group_of, set(fgraph.roots), kind_of_var)
    return FusionPlan(_schedule(groups, group_of), refusals, scores, joins, recomputes)


def _merge_siblings(groups, group_of):
    """Rule 1 across the graph (horizontal fusion): two kernels that read the same array over
    the same domain, neither depending on the other, become one loop reading it once (the L1
    and L2 penalties ``sum(abs(W))`` and ``sum(W ** 2)``; the running statistics beside a
    kernel's own use of the same input). They join only where ``_same_main_loop`` holds (each
    node keeps its stage) or both are plain elementwise work.

    A kernel reading a matrix product may take a sibling that reduces: it then reduces too, so it
    is no longer the product's elementwise GEMM epilogue (rule 3), and the product goes to memory
    (on the CPU the epilogue is a second pass over the product in memory anyway, except in
    panels). The Theano MLP tutorial's update ``W - lr * (x.T @ dh + l1 * sign(W) + 2 * l2 * W)``
    beside the cost's ``sum(abs(W))`` and ``sum(W ** 2)``: merged, one loop reads ``W`` for the
    sums and the update (W6, 1000 minibatches: 0.40-0.43 s against 0.45-0.47 s apart, AMD Zen 5,
    AVX-512 OpenBLAS; on the earlier Haswell-kernel machine apart had won, 0.91 against 1.07 ms).
    """
    def readers_of(group):
        return {id(v) for n in group.nodes for v in n.inputs
                if v.ndim and v.shape == group.domain and not group.produces(v)}

    def upstream(group, memo):
        """Ids of the groups ``group`` depends on, transitively."""
        found = memo.get(id(group))
        if found is None:
            found = set()
            for n in group.nodes:
                for v in n.inputs:
                    other = group_of.get(v.owner) if v.owner is not None else None
                    if other is not None and other is not group and id(other) not in found:
                        found.add(id(other))
                        found |= upstream(other, memo)
            memo[id(group)] = found
        return found

    merged = True
    while merged:
        merged = False
        fused = [g for g in groups if g.kind == "fused" and g.domain]
        memo = {}
        for i, a in enumerate(fused):
            shared = readers_of(a)
            for b in fused[i + 1:]:
                plain = not (a.reductions or a.epilogue or b.reductions or b.epilogue)
                if not (shared & readers_of(b)) or not (plain and a.domain == b.domain or _same_main_loop(a, b)):
                    continue
                if id(b) in upstream(a, memo) or id(a) in upstream(b, memo):
                    continue
                if any(per_image_refusal(a, n) for n in b.nodes) or any(per_image_refusal(b, n) for n in a.nodes):
                    continue
                _merge(a, b, group_of, groups)
                merged = True
                break
            if merged:
                break


def _add(group, node):
    group.nodes.append(node)
    if is_epilogue_candidate(group, node):
        group.epilogue.append(node)
    elif is_fusable_reduction(node):
        group.reduce_kind = reduce_pattern(node.op, node.inputs[0].ndim)
        group.reductions.append(node)


def _same_main_loop(a, b):
    """Whether ``a`` and ``b`` iterate over the same full domain and, where both reduce, reduce
    alike: their per-element work then shares one loop, their reductions and their epilogues
    (over the same reduced shape) follow it. (Weight decay's ``sum(W ** 2)`` and its gradient
    ``2 * W`` read ``W`` once, beside the L1 term's ``sum(abs(W))`` and ``sign(W)``.)"""
    if a.domain != b.domain:
        return False
    if any(g.reductions and g.reduced_domain == strip_leading_ones(g.domain) for g in (a, b)):
        return False   # a reduction over axes of length 1: per-element and reduced work look alike
    if a.reductions and b.reductions:
        return a.reduce_kind == b.reduce_kind and a.reduced_domain == b.reduced_domain
    return not (a.epilogue and not a.reductions) and not (b.epilogue and not b.reductions)


def _may_merge(a, b, reaches):
    """Whether producer kernel ``b`` may merge into ``a`` (which a node just joined)."""
    if b.kind != "fused" or b.reductions and a.reductions and a.reduce_kind != b.reduce_kind:
        return False
    main_loop = bool(a.epilogue or b.epilogue) and _same_main_loop(a, b)
    if main_loop:
        pass
    elif a.epilogue or b.epilogue:
        # Only plain elementwise work over the reduced shape can join an epilogue.
        host, guest = (a, b) if a.epilogue else (b, a)
        if guest.reductions or guest.epilogue or strip_leading_ones(guest.domain) != host.reduced_domain:
            return False
        if any(input_pattern(v.shape, host.reduced_domain) not in ("full", "scalar")
               for n in guest.nodes for v in n.inputs if not guest.produces(v)):
            return False
    elif b.domain != a.domain:
        return False
    if any(per_image_refusal(a, n) for n in b.nodes):
        return False
    if not _stages_consistent(a, b, main_loop):
        return False
    # A path a -> other -> b (or back) would make the merged kernel wait on itself.
    return not _depends_via_other(a, b, reaches) and not _depends_via_other(b, a, reaches)


def _stages_consistent(a, b, main_loop=False):
    """After merging, per-element work must not read reduced values (rule 2). With
    ``main_loop`` both keep their stages (see ``_same_main_loop``); else a plain group merged
    with one that has an epilogue becomes epilogue work."""
    host, guest = (a, b) if a.epilogue else (b, a)
    reduced_stage = set(a.reductions) | set(b.reductions) | set(a.epilogue) | set(b.epilogue)
    if host.epilogue and not main_loop:
        reduced_stage |= set(guest.nodes)   # the guest becomes epilogue work
    for group in (a, b):
        for node in group.nodes:
            if node in reduced_stage:
                continue
            if any(v.owner in reduced_stage for v in node.inputs):
                return False
    return True


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
    if (into.epilogue or other.epilogue) and _same_main_loop(into, other):
        into.epilogue.extend(other.epilogue)   # each node keeps its stage
    elif into.epilogue and not other.epilogue:
        into.epilogue.extend(other.nodes)   # elementwise work over the reduced shape
    elif other.epilogue and not into.epilogue:
        into.epilogue.extend(into.nodes)
        into.epilogue.extend(other.epilogue)
        into.domain, into.reduce_kind = other.domain, other.reduce_kind
    else:
        into.epilogue.extend(other.epilogue)
    into.nodes.extend(other.nodes)
    into.reductions.extend(other.reductions)
    into.reduce_kind = into.reduce_kind or other.reduce_kind
    if other.reductions and not into.epilogue:
        into.domain = other.domain
    groups.remove(other)


def _schedule(groups, group_of):
    """Order groups so every group runs after the groups it reads (Kahn's algorithm)."""
    deps = {id(g): set() for g in groups}
    for g in groups:
        for n in g.nodes:
            for inp in n.inputs:
                if inp.owner in group_of and group_of[inp.owner] is not g:
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
        ready.epilogue.sort(key=lambda n: n.outputs[0].id)
        ordered.append(ready)
    return ordered

