"""The KernelPlan: every decision about what runs together, for every backend.

``plan_kernels(fgraph)`` is the scheduling stage. It takes the rewritten graph
and decides, once and for all backends:

- which nodes run as one kernel (the fusion groups of :mod:`.fuse`), and in
  what order;
- which matrix products take their elementwise consumer as a **GEMM epilogue**
  (rule 3: bias, activation, an update), and which transposes are folded into
  a product as a transpose flag instead of existing as arrays;
- which updates write straight into their parameter's array (in place);
- which values each kernel reads and writes (what leaves it), and which
  checks of values (labels) run before any kernel;
- a readable reason for every producer/consumer pair left in different
  kernels, and a record of every pair joined by a decision made here.

Backends *lower* the plan's kernels (``graphnet.compiler.runtime.lowering``):
they choose how to run each kernel (a generated loop, a BLAS call followed by
the epilogue loop, a tiled GEMM applying it per tile, NumPy for 0-d values)
but never what is fused. ``fn.report()`` and ``fn.to_dot()`` read this plan.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from graphnet.compiler.schedule.fuse import (
    PER_IMAGE_PATTERNS, PRODUCER_REASONS, consumer_reason, input_pattern, input_patterns, plan_fusion,
)
from graphnet.compiler.schedule.memory import in_place_updates
from graphnet.compiler.schedule.rowwise_join import in_pair_order
from graphnet.graph.ir import Constant
from graphnet.ops.conv import Conv2D, Conv2DGradFilters, Conv2DGradInput
from graphnet.ops.linalg import Dot
from graphnet.ops.pool import MaxPool2DGrad, Pool2D
from graphnet.ops.reduce import SizeOf
from graphnet.ops.shape import Transpose

#: how a fused kernel reads an input, by its broadcast pattern over the domain
PROLOGUE_VIEWS = {"full": "full2d", "row": "cols", "col": "rows", "scalar": "one", "channel": "rows"}
#: the same for the epilogue on reduced values, by the reduction's pattern
EPILOGUE_VIEWS = {"col": {"full": "cols", "scalar": "one"}, "row": {"full": "rows", "scalar": "one"},
                  "all": {"full": "one", "scalar": "one"}}


# ---------------------------------------------------------------- kernels
@dataclass(eq=False)
class PlannedKernel:
    """One kernel of the plan: the nodes it computes, what it reads and what leaves it.

    ``reads``: variables read from memory, each once; ``writes``: values the
    kernel stores because another kernel, an output or an update reads them;
    ``scratch``: values computed in the kernel that a backend may need memory
    for although nothing outside reads them (a GEMM's product before its
    epilogue); ``may_fail``: whether running it can still raise once the
    up-front checks passed (an in-place update must not precede it).
    """

    nodes: list
    reads: list = field(default_factory=list)
    writes: list = field(default_factory=list)
    scratch: list = field(default_factory=list)
    may_fail: bool = False
    #: the word kernel names use for this kind ("fused", "gemm", ...)
    label = "host"
    #: a view renames its input's storage; it computes nothing
    is_view = False

    @property
    def elementwise_writes(self):
        """Values written element by element over their full shape (may overwrite an input in place)."""
        return ()

    def pattern_of(self, var):
        """How the kernel reads ``var`` ("full2d", "cols", "rows", "one"), or None."""
        return None

    @property
    def ops(self):
        return [n.op.name for n in self.nodes]


@dataclass(eq=False)
class LoopKernel(PlannedKernel):
    """A fused group: one loop nest over its domain collapsed to (rows, columns).

    ``inputs``: (variable, view) pairs, the view saying how the kernel reads it
    ("full2d" as (R, C), "cols" as (C,), "rows" as (R,), "one" as (1,)); a
    variable read by the prologue and the epilogue in different views appears
    twice. ``prologue_args`` / ``epilogue_args``: {variable: index in inputs}
    per stage. ``literals``: scalar constants, inlined as literals.
    ``outputs``: per-element results written as (R, C); ``reduced``: reduction
    results; ``epilogue_outputs``: results of the epilogue on reduced values.
    """

    group: object = None
    inputs: list = field(default_factory=list)
    prologue_args: dict = field(default_factory=dict)
    epilogue_args: dict = field(default_factory=dict)
    literals: dict = field(default_factory=dict)
    outputs: list = field(default_factory=list)
    reduced: list = field(default_factory=list)
    epilogue_outputs: list = field(default_factory=list)
    label = "fused"

    @property
    def domain(self):
        return self.group.domain

    @property
    def reduce_kind(self):
        return self.group.reduce_kind

    @property
    def domain_var(self):
        """The variable whose run-time shape is the loop's domain."""
        first = next(n for n in self.group.nodes if n not in self.group.epilogue)
        return first.inputs[0] if first in self.group.reductions else first.outputs[0]

    @property
    def inner_nodes(self):
        """The per-element nodes (neither reductions nor epilogue)."""
        return [n for n in self.group.nodes if n not in self.group.reductions and n not in self.group.epilogue]

    @property
    def elementwise_writes(self):
        return self.outputs

    def pattern_of(self, var):
        return next((view for v, view in self.inputs if v is var), None)


@dataclass(eq=False)
class ImageLoopKernel(LoopKernel):
    """A fused group over a domain (images, channels, pixels...) run once per image.

    Each run is the 2-D loop over (channels, the remaining axes collapsed):
    a "full2d" input is the image's slice, a per-channel vector (``(1, C, 1,
    1)``) is read as one value per row ("rows"), a scalar as "one". It is how
    a kernel reads a convolution's bias or batch-norm vectors, and how a
    convolution's epilogue runs on each image while it is in cache.
    """


class WithEpilogue:
    """A product (GEMM, convolution) whose elementwise writes are its epilogue's, if any."""

    @property
    def elementwise_writes(self):
        return self.epilogue.elementwise_writes if self.epilogue else ()

    def pattern_of(self, var):
        return self.epilogue.pattern_of(var) if self.epilogue else None


@dataclass(eq=False)
class GemmKernel(WithEpilogue, PlannedKernel):
    """A matrix product, with its elementwise consumer as the epilogue when it has one.

    ``a`` and ``b`` are the arrays read: when ``trans_a`` (``trans_b``), ``a``
    is the input of a transpose the product read, and the product reads it
    transposed (a BLAS transpose flag; no array is made). ``epilogue`` is a
    :class:`LoopKernel` over the product's shape that reads the product; the
    product itself is stored only when ``write_product`` (something else reads
    it), else it is ``scratch``. ``blas_ready``: float operands of the
    product's dtype, what BLAS and the generated GEMMs take (a backend runs
    any other product with NumPy).
    """

    dot: object = None
    a: object = None
    b: object = None
    trans_a: bool = False
    trans_b: bool = False
    epilogue: LoopKernel = None
    write_product: bool = True
    blas_ready: bool = True
    label = "gemm"

    @property
    def product(self):
        return self.dot.outputs[0]


@dataclass(eq=False)
class ConvKernel(WithEpilogue, PlannedKernel):
    """A convolution op (forward, input gradient or filter gradient), with an epilogue when it has one.

    Lowered as im2col (or col2im) per image and one GEMM per image; the
    epilogue (an :class:`ImageLoopKernel` over the output: bias, batch norm in
    evaluation, an activation, the ReLU mask of the layer below) runs on each
    image right after its GEMM. ``statistics`` instead: a per-channel sum or
    moments of the output (batch norm's statistics in training), accumulated
    image by image. The output is stored only when ``write_product``
    (something else reads it).
    """

    node: object = None
    epilogue: ImageLoopKernel = None
    statistics: object = None
    write_product: bool = True
    label = "conv"

    @property
    def product(self):
        return self.node.outputs[0]


@dataclass(eq=False)
class PoolKernel(PlannedKernel):
    """Pooling (every mode) or max pooling's gradient: one pass over the windows of each plane."""

    label = "pool"

    @property
    def node(self):
        return self.nodes[0]


@dataclass(eq=False)
class ChannelReduceKernel(PlannedKernel):
    """A sum or mean-and-variance per channel, over every axis but 1 (a bias gradient,
    batch norm's statistics over (batch, rows, cols))."""

    label = "channel_reduce"

    @property
    def node(self):
        return self.nodes[0]


@dataclass(eq=False)
class RowwiseKernel(PlannedKernel):
    """A row-wise op (softmax, log-softmax, cross-entropy and its gradient) over a matrix's rows,
    or a joined pair of them over the same rows (``rowwise_join``: the loss and its gradient)."""

    label = "rowwise"

    @property
    def node(self):
        return self.nodes[0]

    @property
    def template_key(self):
        """What a backend's row-wise template table is looked up with: the op class, or the
        tuple of op classes of a joined kernel."""
        return type(self.node.op) if len(self.nodes) == 1 else tuple(type(n.op) for n in self.nodes)

    @property
    def arguments(self):
        """The template's array arguments after ``R, C, n_chunks``: a node's inputs then its
        output; for a joined kernel, its nodes' inputs each once, then their outputs."""
        if len(self.nodes) == 1:
            return list(self.node.inputs) + list(self.node.outputs)
        return list(dict.fromkeys(v for n in self.nodes for v in n.inputs)) + [v for n in self.nodes for v in n.outputs]

    @property
    def rows_var(self):
        """The input whose (rows, columns) the kernel iterates over."""
        return self.node.inputs[self.node.op.row_input]


@dataclass(eq=False)
class ViewKernel(PlannedKernel):
    """A reshape or transpose: the same storage under another shape (a backend may copy)."""

    label = "view"
    is_view = True

    @property
    def node(self):
        return self.nodes[0]


@dataclass(eq=False)
class HostKernel(PlannedKernel):
    """Nodes no kernel template covers, run by their ops' NumPy ``perform``."""

    label = "host"


@dataclass(eq=False)
class ScanKernel(HostKernel):
    """A loop (``scan``): its body is a graph of its own, planned and lowered as a program
    (the CPU backend compiles it; a backend without a lowering runs the NumPy reference loop)."""

    label = "loop"

    @property
    def node(self):
        return self.nodes[0]


# -------------------------------------------------------------------- plan
@dataclass
class KernelPlan:
    """What runs, in order, and why (see the module docstring).

    ``refusals``: (producer variable, consumer node, reason) for every pair in
    different kernels; ``fusions``: (variable, consumer node, how) for pairs
    this stage joined (GEMM epilogues, transpose flags); ``shape_nodes``:
    nodes evaluated once per input-shape signature (element counts and
    arithmetic on them), in no kernel; ``in_place``: {update expression:
    shared variable} written into the variable's own array; ``value_checks``:
    (node, input variable) pairs of fed values an op checks before any kernel
    runs (labels), the rest being checked by the kernel computing the node.
    """

    kernels: list
    refusals: list
    fusions: list
    shape_nodes: list
    in_place: dict
    value_checks: list
    value_dependent: bool
    fuse: bool = True
    #: row-wise pairs over the same rows (``rowwise_join.RowwiseJoin``): joined into one kernel, or why not
    row_joins: list = field(default_factory=list)
    #: elementwise chains recomputed in their reader's kernel, or why not (``recompute.Recompute``, rule 8)
    recomputes: list = field(default_factory=list)


def plan_kernels(fgraph, fuse=True, check_numerics=False):
    """The scheduling stage: FunctionGraph -> KernelPlan."""
    shape_nodes = shape_arithmetic(fgraph)
    fusion = plan_fusion(fgraph, fuse=fuse, precomputed=set(shape_nodes))
    builder = _PlanBuilder(fgraph, fusion.groups, fuse)
    kernels = builder.kernels()
    builder.note_recomputes(fusion.recomputes)
    refusals = builder.refusals(fusion.refusals, fgraph, kernels, shape_nodes)
    # check_numerics may stop a call after an update kernel ran: then updates go
    # to fresh buffers, so a failed call leaves every parameter as it was.
    in_place = {} if check_numerics else in_place_updates(kernels, fgraph.updates, fgraph.outputs)
    value_checks = [(n, n.inputs[i]) for n in fgraph.nodes() for i in n.op.checked_inputs
                    if n.inputs[i].owner is None]
    return KernelPlan(kernels, refusals, builder.fusions, shape_nodes, in_place, value_checks,
                      value_dependent=any(n.op.infer_shape_needs_values for n in fgraph.nodes()), fuse=fuse,
                      row_joins=fusion.row_joins, recomputes=fusion.recomputes)


def shape_arithmetic(fgraph):
    """Nodes whose values depend only on run-time shapes: element counts and
    scalar arithmetic on them (``mean``'s divisor, batch norm's ``n / (n - 1)``).

    They are evaluated once per input-shape signature instead of on every call.
    """
    static = set()
    nodes = []
    for node in fgraph.nodes():
        if isinstance(node.op, SizeOf) or (
                node.outputs[0].ndim == 0 and any(v in static for v in node.inputs)
                and all(v in static or isinstance(v, Constant) for v in node.inputs)
                and not node.op.uses_element_index):
            nodes.append(node)
            static.update(node.outputs)
    return nodes


class _PlanBuilder:
    """Fusion groups -> planned kernels, with the GEMM and transpose decisions."""

    def __init__(self, fgraph, groups, fuse):
        self.groups, self.fuse = groups, fuse
        self.roots = set(fgraph.roots)
        # A node's kernel is its home group: a node another group recomputes (rule 8) is not
        # read from memory there, and is stored by its home only if someone else reads it.
        self.group_of = {n: i for i, g in enumerate(groups) for n in g.nodes if n not in g.recomputed}
        self.readers = {}   # variable -> indices of the other groups that read it (the least runs first)
        for i, g in enumerate(groups):
            computed = set(g.nodes)
            for n in g.nodes:
                for v in n.inputs:
                    if v.owner is None or v.owner not in computed:
                        self.readers.setdefault(v, set()).add(i)
        self.transposed = self._foldable_transposes()
        self.epilogues = self._gemm_epilogues()      # {consumer group index: product group index}
        self.fusions = []
        self.recomputes = []

    # ---- decisions
    @staticmethod
    def blas_ready(group):
        node = group.nodes[0]
        if group.kind != "blas" or not isinstance(node.op, Dot):
            return False
        return node.outputs[0].dtype.kind == "f" and all(v.dtype == node.outputs[0].dtype for v in node.inputs)

    def _foldable_transposes(self):
        """{transpose output: its input} for 2-D transposes that only BLAS-ready products read."""
        found = {}
        for group in self.groups:
            node = group.nodes[0]
            if group.kind != "view" or not isinstance(node.op, Transpose) or node.op.perm != (1, 0):
                continue
            out = node.outputs[0]
            users = self.readers.get(out, set())
            if out not in self.roots and users and all(self.blas_ready(self.groups[i]) for i in users):
                found[out] = node.inputs[0]
        return found

    @staticmethod
    def conv_ready(group):
        """A convolution op on floating-point operands of one dtype: what the compiled conv takes."""
        node = group.nodes[0]
        if group.kind != "conv" or not isinstance(node.op, CONV_OPS):
            return False
        data = node.inputs[:2]
        return node.outputs[0].dtype.kind == "f" and all(v.dtype == node.outputs[0].dtype for v in data)

    def _takes_epilogue(self, group):
        """Whether ``group``'s product may take an epilogue: a 2-D GEMM, or a convolution over images."""
        if self.blas_ready(group):
            return group.nodes[0].outputs[0].ndim == 2
        return self.conv_ready(group) and isinstance(group.nodes[0].op, CONV_EPILOGUE_OPS)

    def _gemm_epilogues(self):
        """{consumer group index: product group index}: GEMM epilogues (rule 3) and convolution epilogues."""
        found = {}
        if not self.fuse:
            return found   # fuse=False: one kernel per op, the unfused baseline
        for d, group in enumerate(self.groups):
            if not self._takes_epilogue(group):
                continue
            product = group.nodes[0].outputs[0]
            first = min(self.readers.get(product, ()), default=None)
            # Only the first reader may take it: the product must not be needed earlier.
            if first is not None and self._epilogue_refusal(product, self.groups[first], group.kind) is None \
                    and first not in found:
                found[first] = d
        return found

    @staticmethod
    def _epilogue_refusal(product, consumer, producer_kind="blas"):
        """None if group ``consumer`` may be ``product``'s GEMM (or convolution) epilogue, else why not.

        A convolution's epilogue may also be a per-channel sum or moments of its output (a
        bias gradient, batch norm's statistics in training): accumulated image by image."""
        what = "a GEMM" if producer_kind == "blas" else "a convolution's"
        if producer_kind == "conv" and consumer.kind == "channel_reduce" and consumer.nodes[0].inputs[0] is product:
            return None
        if consumer.kind != "fused":
            return "its reader is not an elementwise kernel"
        if consumer.reductions:
            return (f"the kernel reading the product reduces; {what} epilogue is elementwise "
                    "(the reduction is a kernel of its own, rule 2)")
        if consumer.domain != product.shape or input_pattern(product.shape, consumer.domain) != "full":
            return "the kernel reading the product iterates over another shape than the product's"
        if producer_kind == "conv":
            if any(n.op.uses_element_index for n in consumer.nodes):
                return ("the kernel reading the convolution uses each element's flat index (a dropout "
                        "counter), which a convolution's per-image epilogue would repeat from image to image")
            produced = {v for n in consumer.nodes for v in n.outputs}
            if input_patterns(consumer.nodes, produced, consumer.domain) - PER_IMAGE_PATTERNS:
                return ("the kernel reading the convolution reads a row or column vector; a convolution's "
                        "epilogue runs per image over (channels, pixels) and reads per-channel vectors only")
        return None

    # ---- kernels
    def kernels(self):
        absorbed = set(self.epilogues.values())
        kernels = []
        for i, group in enumerate(self.groups):
            if i in absorbed or (group.kind == "view" and group.nodes[0].outputs[0] in self.transposed):
                continue   # inside a GEMM kernel: its product, or a transpose read as a flag
            if i in self.epilogues:
                producer = self.groups[self.epilogues[i]]
                make = self._gemm if producer.kind == "blas" else self._conv
                kernels.append(make(producer, group))
            else:
                make = self.KERNEL_OF_GROUP.get(group.kind)
                kernels.append((make and make(self, group)) or host_kernel(group.nodes))
        return kernels

    def _loop(self, group):
        return loop_kernel(group, self._leaves(group))

    def _product(self, group):
        return self._gemm(group, None) if isinstance(group.nodes[0].op, Dot) else None

    def _rowwise(self, group):
        nodes = in_pair_order(group.nodes)
        if not all(node.op.rowwise_applies(node) for node in nodes):
            return None   # this shape has no row kernel: NumPy runs it
        return RowwiseKernel(nodes, list(dict.fromkeys(v for n in nodes for v in n.inputs)),
                             [v for n in nodes for v in n.outputs],
                             may_fail=any(n.inputs[i].owner is not None for n in nodes for i in n.op.checked_inputs))

    def _view(self, group):
        node = group.nodes[0]
        return ViewKernel([node], [node.inputs[0]], list(node.outputs))

    def _conv_alone(self, group):
        return self._conv(group, None) if self.conv_ready(group) else None

    def _pool(self, group):
        node = group.nodes[0]
        if not isinstance(node.op, POOL_OPS) or node.outputs[0].dtype.kind != "f":
            return None   # average pooling's gradient: NumPy runs it
        return PoolKernel([node], list(dict.fromkeys(node.inputs)), list(node.outputs))

    def _channel_reduce(self, group):
        node = group.nodes[0]
        return ChannelReduceKernel([node], [node.inputs[0]], list(node.outputs))

    #: the planned kernel of each fusion-group kind; a maker may decline (None): NumPy runs the group
    def _scan(self, group):
        node = group.nodes[0]
        return ScanKernel([node], list(dict.fromkeys(node.inputs)), list(node.outputs), may_fail=True)

    KERNEL_OF_GROUP = {"fused": _loop, "blas": _product, "rowwise": _rowwise, "view": _view,
                       "conv": _conv_alone, "pool": _pool, "channel_reduce": _channel_reduce, "loop": _scan}

    def _index(self, group):
        """``group``'s index (its first node may be one it recomputes, whose home is another)."""
        return next(i for i, g in enumerate(self.groups) if g is group)

    def _leaves(self, group):
        """Values of ``group`` that leave it: roots and what other groups read."""
        return {v for n in group.nodes if n not in group.recomputed for v in n.outputs
                if v in self.roots or any(self.groups[i] is not group for i in self.readers.get(v, ()))}

    def _gemm(self, dot_group, consumer):
        dot = dot_group.nodes[0]
        a, b = dot.inputs
        product = dot.outputs[0]
        for var in (a, b):
            if var in self.transposed:
                self.fusions.append((var, dot, "folded into the matrix product as a transpose flag (no copy)"))
        epilogue, write_product = None, True
        if consumer is not None:
            epilogue = loop_kernel(consumer, self._leaves(consumer))
            others = self.readers.get(product, set()) - {self._index(consumer)}
            write_product = product in self.roots or bool(others)
            for node in consumer.nodes:
                if product in node.inputs:
                    self.fusions.append((product, node, "fused as the GEMM's epilogue (rule 3)"))
        a_src, b_src = self.transposed.get(a, a), self.transposed.get(b, b)
        reads = list(dict.fromkeys([a_src, b_src] + [v for v in (epilogue.reads if epilogue else []) if v is not product]))
        writes = (list(epilogue.writes) if epilogue else []) + ([product] if write_product else [])
        # A transpose read as a flag is part of the product's kernel: it makes no array.
        flags = [v.owner for v in dict.fromkeys((a, b)) if v in self.transposed]
        return GemmKernel(flags + [dot] + (list(consumer.nodes) if consumer else []), reads, writes,
                          scratch=[] if write_product else [product], dot=dot, a=a_src, b=b_src,
                          trans_a=a_src is not a, trans_b=b_src is not b, epilogue=epilogue,
                          write_product=write_product, blas_ready=self.blas_ready(dot_group))

    def _conv(self, conv_group, consumer):
        node = conv_group.nodes[0]
        product = node.outputs[0]
        epilogue, statistics, write_product = None, None, True
        if consumer is not None and consumer.kind == "channel_reduce":
            statistics = consumer.nodes[0]
            write_product = product in self.roots or bool(self.readers.get(product, set()) - {
                self.group_of[statistics]})
            self.fusions.append((product, statistics, "accumulated per channel by the convolution, image by "
                                                      "image while in cache (its statistics epilogue)"))
        elif consumer is not None:
            epilogue = loop_kernel(consumer, self._leaves(consumer), per_image=True)
            others = self.readers.get(product, set()) - {self._index(consumer)}
            write_product = product in self.roots or bool(others)
            for n in consumer.nodes:
                if product in n.inputs:
                    self.fusions.append((product, n, "fused as the convolution's epilogue, per image (rule 3)"))
        # The shape-only input (the third) is read for its shape alone: no kernel reads its values.
        reads = list(dict.fromkeys(list(node.inputs[:2]) +
                                   [v for v in (epilogue.reads if epilogue else []) if v is not product]))
        writes = ((list(epilogue.writes) if epilogue else []) + (list(statistics.outputs) if statistics else [])
                  + ([product] if write_product else []))
        return ConvKernel([node] + (list(consumer.nodes) if consumer else []), reads, writes, node=node,
                          epilogue=epilogue, statistics=statistics, write_product=write_product)

    def note_recomputes(self, recomputes):
        """Rule 8's pairs: the recomputed ones among the joined pairs, the others' reasons kept."""
        self.recomputes = recomputes
        for r in recomputes:
            if r.reason is None:
                nodes = f"{len(r.chain)} elementwise node" + ("s" if len(r.chain) != 1 else "")
                self.fusions.append((r.var, r.reader, f"recomputed in the reader's kernel from its inputs "
                                                      f"({nodes}, {r.saved} bytes per element saved; rule 8)"))

    # ---- refusals
    def refusals(self, recorded, fgraph, kernels, shape_nodes):
        """Every producer/consumer pair in different kernels, with its reason: the fusion
        stage's refusals less the pairs joined here, and a reason for each pair left."""
        joined = {(var, node) for var, node, _ in self.fusions}
        result = []
        folded = {t.owner for t in self.transposed}
        not_recomputed = {(r.var, r.reader): r.reason for r in self.recomputes if r.reason}
        for var, node, reason in recorded:
            if (var, node) in joined:
                continue
            if (var, node) in not_recomputed:
                reason += f"; not recomputed in the reader (rule 8): {not_recomputed[var, node]}"
            if reason in (PRODUCER_REASONS["blas"], PRODUCER_REASONS["conv"]):
                reason = self._product_refusal(var, node)
            elif node in folded:
                reason = "a matrix product reads its operands from memory; this one reads it transposed (a BLAS flag)"
            result.append((var, node, reason))
        known = {(var, node) for var, node, _ in result} | joined
        kernel_of = {}
        for k in kernels:   # a node's first kernel is its home: a reader recomputing it runs later
            for n in k.nodes:
                kernel_of.setdefault(n, k)
        static = set(shape_nodes)
        for node in fgraph.nodes():
            for var in node.inputs:
                producer = var.owner
                if producer is None or (var, node) in known or (producer in static and node in static):
                    continue
                if kernel_of.get(producer) is not None and kernel_of.get(producer) is kernel_of.get(node):
                    continue
                result.append((var, node, self._pair_reason(var, node, kernel_of, static)))
                known.add((var, node))
        return result

    def _pair_reason(self, var, node, kernel_of, static):
        if node in static:
            return f"{node.op.name} depends only on shapes: computed once per input-shape signature, in no kernel"
        if var.owner in static:
            return ("the producer depends only on shapes: computed once per input-shape signature "
                    "and read like a constant")
        producer = kernel_of.get(var.owner)
        if isinstance(producer, (GemmKernel, ConvKernel)):
            return self._product_refusal(var, node)
        kinds = {PoolKernel: "pool", ChannelReduceKernel: "channel_reduce"}
        if type(producer) in kinds:
            return PRODUCER_REASONS[kinds[type(producer)]]
        if isinstance(producer, (RowwiseKernel, ViewKernel, HostKernel)):
            return PRODUCER_REASONS.get(producer.label, PRODUCER_REASONS["host"])
        return consumer_reason(node)

    def _product_refusal(self, product, node):
        group = self.groups[self.group_of[node]] if node in self.group_of else None
        dot_group = self.groups[self.group_of[product.owner]] if product.owner in self.group_of else None
        if not self.fuse:
            return "fusion is off (fuse=False)"
        is_conv = dot_group is not None and dot_group.kind == "conv"
        if is_conv and not self._takes_epilogue(dot_group):
            return ("only a convolution or its input gradient, on floating-point operands of one dtype, "
                    "takes an epilogue (a filter gradient is summed over every image first)")
        if not is_conv and (dot_group is None or not self.blas_ready(dot_group) or product.ndim != 2):
            return "only a floating-point matrix-matrix product takes an epilogue (rule 3)"
        first = min(self.readers.get(product, ()), default=None)
        if group is not None and first is not None and self.groups[first] is not group:
            if first in self.epilogues:
                return ("the product's first reader took the GEMM epilogue; a product has one epilogue"
                        if not is_conv else "the convolution's first reader took its epilogue (or its "
                        "per-channel statistics); a convolution has one")
            return "only a product's first reader may be its epilogue: the readers before it need the product stored"
        why = self._epilogue_refusal(product, group, dot_group.kind) if group is not None else None
        return why or consumer_reason(node)


#: the convolution ops the compiled conv runs, and those whose output takes an epilogue per image
CONV_OPS = (Conv2D, Conv2DGradInput, Conv2DGradFilters)
CONV_EPILOGUE_OPS = (Conv2D, Conv2DGradInput)
#: the pooling ops with a compiled kernel (average pooling's gradient runs on the host)
POOL_OPS = (Pool2D, MaxPool2DGrad)


def loop_kernel(group, leaves, per_image=False):
    """The :class:`LoopKernel` of fused ``group`` whose values ``leaves`` leave it: an
    :class:`ImageLoopKernel` when it reads a per-channel vector or ``per_image`` says so."""
    produced = {v for n in group.nodes for v in n.outputs}
    per_image = per_image or (not group.reductions and "channel" in input_patterns(group.nodes, produced, group.domain))
    kernel = (ImageLoopKernel if per_image else LoopKernel)(list(group.nodes), group=group)
    for node in group.nodes:
        in_epilogue = node in group.epilogue
        views = EPILOGUE_VIEWS[group.reduce_kind] if in_epilogue else PROLOGUE_VIEWS
        domain = group.reduced_domain if in_epilogue else group.domain
        for var in node.inputs:
            if isinstance(var, Constant) and var.data.size == 1:
                # Scalar constants are literals: LLVM folds them, and no read-only
                # array argument multiplies the compiled signatures.
                kernel.literals[var] = var.data.reshape(()).item()
            elif not group.produces(var):
                pair = (var, views[input_pattern(var.shape, domain)])
                if pair not in kernel.inputs:
                    kernel.inputs.append(pair)
                stage = kernel.epilogue_args if in_epilogue else kernel.prologue_args
                stage[var] = kernel.inputs.index(pair)
    kernel.outputs = [v for n in kernel.inner_nodes for v in n.outputs if v in leaves]
    kernel.reduced = [v for n in group.reductions for v in n.outputs]
    kernel.epilogue_outputs = [v for n in group.epilogue for v in n.outputs if v in leaves]
    kernel.reads = list(dict.fromkeys(var for var, _ in kernel.inputs))
    kernel.writes = kernel.outputs + kernel.reduced + kernel.epilogue_outputs
    return kernel


def host_kernel(nodes):
    """A :class:`HostKernel` running ``nodes`` in order with NumPy."""
    produced = {v for n in nodes for v in n.outputs}
    reads = list(dict.fromkeys(v for n in nodes for v in n.inputs if v not in produced))
    # An op's NumPy perform may raise on values (labels, indices); elementwise,
    # reductions and views only on shapes, which were checked up front.
    may_fail = any(n.op.kind not in ("elementwise", "reduce", "view") for n in nodes)
    return HostKernel(list(nodes), reads, [v for n in nodes for v in n.outputs], may_fail=may_fail)
