"""Generate readable numba.cuda source for the CUDA backend.

The kernels come from the same places as the CPU ones: a fused group's code is
its ops' ``scalar`` expressions (rendered by the CPU generator's
``render_elementwise``), and the helpers those expressions call (``sigmoid``,
``safe_log``, ``keep_mask``...) are the CPU scalar prelude and the
counter-based RNG of :mod:`graphnet.ops.rng`, pasted as ``@cuda.jit(device=True)``
functions from their own source text. A dropout mask is therefore drawn by the
same integer arithmetic on every backend and is bit-identical.

Every array reaches a kernel flat (1-D, C order); ``R`` rows by ``C`` columns
is the group's domain collapsed to 2-D, as on the CPU, and an element's flat
position ``flat = i * C + j`` is also the dropout element index. Templates:

- ``map``: elementwise only; a grid-stride loop over ``R * C`` elements.
- ``row``: reduces the last axis; one block per row (grid-stride over rows),
  threads stride over the columns, then a tree in shared memory.
- ``col``: reduces the leading axes (batch-norm statistics, bias gradients);
  a block covers ``COL_WIDTH`` columns with ``COL_LANES`` row lanes, each lane
  sums every ``COL_LANES``-th row, then a tree over the lanes in shared memory.
- ``all``: reduces everything (the loss); one block, then a tree.

Reductions accumulate in float64 (int64 for integers), as on the CPU, and the
epilogue on reduced values runs in the thread that stores them. The GEMM is a
shared-memory tiled kernel whose epilogue is a fused elementwise group (bias,
activation) evaluated on the accumulator before anything is written.

As on the CPU, a kernel's text names no graph node, so structurally identical
kernels share one source, one cache file and one compiled function.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, fields

import numpy as np

from graphnet.ops import rng
from graphnet.compiler.render.cpu import (
    FusedKernelSource, RowTemplate, accumulator_dtype, moments_from_totals, render_elementwise,
)
from graphnet.compiler.registry import Lowerings
from graphnet.ops.elementwise import lit
from graphnet.ops.nn import LogSoftmax, Softmax, SoftmaxCrossEntropy, SoftmaxCrossEntropyGrad
from graphnet.ops.reduce import Max, Moments

DEVICE = "@cuda.jit(device=True)"


# ----------------------------------------------------------------- tuning
@dataclass(frozen=True)
class Tuning:
    """Block shapes, written into each module as constants (so part of its cache key).

    Every size that a tree reduction halves must be a power of two.
    """

    map_threads: int = 256      # threads per block of an elementwise kernel
    max_blocks: int = 1024      # grid-stride loops cover what more blocks would
    max_row_blocks: int = 65535
    row_threads: int = 128      # threads per row: row reductions, softmax
    col_width: int = 32         # columns per block of a column reduction
    col_lanes: int = 8          # row lanes per block of a column reduction
    all_threads: int = 256      # the single block of a full reduction
    gemm_threads: int = 16      # threads per side of a GEMM block
    gemm_per_thread: int = 4    # outputs per thread per side: the tile is 64 x 64
    gemm_depth: int = 16        # K step of a GEMM tile

    def __post_init__(self):
        for name in ("row_threads", "col_lanes", "all_threads"):
            value = getattr(self, name)
            if value < 1 or value & (value - 1):
                raise ValueError(f"Tuning.{name} must be a power of two, got {value}")

    @property
    def gemm_tile(self):
        return self.gemm_threads * self.gemm_per_thread

    def constants(self):
        return "\n".join(f"{f.name.upper()} = {getattr(self, f.name)}" for f in fields(self)) + \
            f"\nGEMM_TILE = {self.gemm_tile}\n"


GPU_TUNING = Tuning()
#: The simulator runs every thread as a Python thread (~4k threads/s): few
#: threads, each looping over many elements, keep tests fast.
SIMULATOR_TUNING = Tuning(map_threads=16, max_blocks=2, max_row_blocks=2, row_threads=4, col_width=4,
                          col_lanes=4, all_threads=8, gemm_threads=4, gemm_per_thread=2, gemm_depth=4)


# ------------------------------------------------------------------ modules
PRELUDE = """\
import math
import numpy as np
import numba
from numba import cuda
"""


def device_prelude():
    """The CPU scalar prelude and the RNG, as device functions, from their own source."""
    from graphnet.compiler.render import scalar_prelude
    chunks = []
    for name in scalar_prelude.__all__:
        helper = getattr(scalar_prelude, name)
        if name == "keep_mask" or not hasattr(helper, "py_func"):
            continue   # modules, and the RNG (pasted below with its callees)
        lines = inspect.getsource(helper.py_func).splitlines()
        chunks.append("\n".join([DEVICE] + [line for line in lines if not line.startswith("@")]) + "\n")
    chunks.append(rng.scalar_source(decorator=DEVICE))
    chunks.append(DEVICE_VECTOR_MATH)
    return "\n\n".join(chunks)


#: The CPU's vectorizable transcendentals (``render/vector_math.py``) by their names in op
#: scalar expressions: on the GPU each thread computes one element, and the libm calls are
#: already the fast path.
DEVICE_VECTOR_MATH = f"""\
{DEVICE}
def vexp(x):
    return math.exp(x)


{DEVICE}
def vtanh(x):
    return math.tanh(x)


{DEVICE}
def vsigmoid(x):
    return sigmoid(x)
"""


def module_source(body, tuning, header=""):
    """A kernel module: imports, tuning constants, device helpers, then ``kernel``."""
    try:
        from importlib.metadata import version
        target = f"numba-cuda {version('numba-cuda')}"
    except Exception:  # noqa: BLE001 - only a comment, which keys the cache
        target = "numba-cuda (version unknown)"
    return (f"# graphnet CUDA kernel module for {target}\n{header}" + PRELUDE + "\n" + tuning.constants() +
            "\n\n" + device_prelude() + "\n\n@cuda.jit(cache=True)\n" + body)


def numba_type(dtype):
    dtype = np.dtype(dtype)
    return "numba.boolean" if dtype.kind == "b" else f"numba.{dtype.name}"


def indent(lines, depth):
    return ["    " * depth + line for line in lines]


def tree_reduce(shared, lane, size, combine, index_suffix=""):
    """Lines halving ``shared[lane]`` over ``size`` lanes; ``combine(a, b)`` gives the text."""
    here, there = f"{shared}[{lane}{index_suffix}]", f"{shared}[{lane} + step{index_suffix}]"
    return [f"step = {size} // 2",
            "while step > 0:",
            f"    if {lane} < step:",
            f"        {here} = {combine(here, there)}",
            "    cuda.syncthreads()",
            "    step //= 2"]


# ------------------------------------------------------------ fused groups
class CudaFusedKernelSource(FusedKernelSource):
    """A fused group as a CUDA kernel; the CPU class decides inputs, outputs and views.

    ``template`` is "map" for elementwise work, else the reduction's pattern
    ("row", "col" or "all"). Arguments: ``R, C``, the inputs, then the buffers
    of ``written`` (elementwise outputs, reduced values, epilogue results).
    """

    def __init__(self, kernel, tuning):
        self.tuning = tuning
        self.template = kernel.reduce_kind if kernel.group.reductions else "map"
        super().__init__(kernel)

    def argument_names(self):
        return ["R", "C"] + self.positional_arguments()

    def _render(self, inner_nodes):
        group = self.group
        names, hoisted, loads = dict(self.literals), [], []
        needs_rows = needs_cols = False
        for k, (var, view) in enumerate(self.inputs):
            if view == "one":
                hoisted.append(f"x{k} = in{k}[0]")
            if self.prologue_args.get(var) != k:
                continue  # read by the epilogue only, in its own view
            if view == "full2d":
                loads.append(f"x{k} = in{k}[flat]")
            elif view == "cols":
                loads.append(f"x{k} = in{k}[j]")
                needs_cols = True
            elif view == "rows":
                loads.append(f"x{k} = in{k}[i]")
                needs_rows = True
            names[var] = f"x{k}"
        body = list(loads)
        if any(n.op.uses_element_index for n in inner_nodes):
            body.append("index = flat")
        stores = {v: f"out{k}[flat]" for k, v in enumerate(self.outputs)}
        self.accumulators = []   # (name, dtype, is_max, value text, reduction node)
        for t, node in enumerate(group.nodes):
            if node in group.reductions:
                body += self._accumulate(node, names)
            elif node not in group.epilogue:
                body += render_elementwise(node, f"t{t}", names, stores)
        signature = f"def kernel({', '.join(self.argument_names())}):"
        if self.template == "map":
            lines = self._map_body(hoisted, body, needs_rows or needs_cols)
        else:
            lines = self._reduction_body(hoisted, body)
        return "\n".join([signature] + indent(lines, 1)) + "\n"

    # ---- pieces
    def _accumulate(self, node, names):
        value = names[node.inputs[0]]
        acc_dtype = accumulator_dtype(node.inputs[0].dtype)
        is_max = isinstance(node.op, Max)
        accs = [value]
        if isinstance(node.op, Moments):
            accs.append(f"np.{acc_dtype.name}({value}) * {value}")
        lines = []
        for val in accs:
            name = f"a{len(self.accumulators)}"
            self.accumulators.append((name, acc_dtype, is_max, node))
            lines.append(f"{name} = max({name}, {val})" if is_max else f"{name} += {val}")
        return lines

    @staticmethod
    def _init(acc_dtype, is_max):
        if not is_max:
            return f"np.{acc_dtype.name}(0)"
        return "-np.inf" if acc_dtype.kind == "f" else f"np.{acc_dtype.name}(-(2**62))"

    def _map_body(self, hoisted, body, needs_index):
        split = ["i = flat // C", "j = flat - i * C"] if needs_index else []
        return hoisted + ["for flat in range(cuda.grid(1), R * C, cuda.gridsize(1)):"] + indent(split + body, 1)

    def _reduction_body(self, hoisted, body):
        pattern = self.template
        shape = {"row": "ROW_THREADS", "col": "(COL_LANES, COL_WIDTH)", "all": "ALL_THREADS"}[pattern]
        lanes = {"row": "ROW_THREADS", "col": "COL_LANES", "all": "ALL_THREADS"}[pattern]
        cell = {"row": "", "col": ", cx", "all": ""}[pattern]
        lines = [f"s{name[1:]} = cuda.shared.array({shape}, {numba_type(dt)})" for name, dt, _, _ in self.accumulators]
        lines += ["lane = cuda.threadIdx.y" if pattern == "col" else "lane = cuda.threadIdx.x"]
        if pattern == "col":
            lines += ["cx = cuda.threadIdx.x"]
        lines += hoisted
        inits = [f"{name} = {self._init(dt, is_max)}" for name, dt, is_max, _ in self.accumulators]
        shares = [f"s{name[1:]}[lane{cell}] = {name}" for name, _, _, _ in self.accumulators]
        shares.append("cuda.syncthreads()")
        for name, _, is_max, _ in self.accumulators:
            combine = (lambda a, b: f"max({a}, {b})") if is_max else (lambda a, b: f"{a} + {b}")
            shares += tree_reduce(f"s{name[1:]}", "lane", lanes, combine, cell)
        index = {"row": "i", "col": "j", "all": "0"}[pattern]
        finish = self._stores(index, cell) + self._epilogue(index)
        if pattern == "row":
            loop = ["for j in range(lane, C, ROW_THREADS):"] + indent(["flat = i * C + j"] + body, 1)
            lines += ["for i in range(cuda.blockIdx.x, R, cuda.gridDim.x):"]
            lines += indent(inits + loop + shares + ["if lane == 0:"] + indent(finish, 1) + ["cuda.syncthreads()"], 1)
        elif pattern == "col":
            loop = ["if j < C:"] + indent(["for i in range(lane, R, COL_LANES):"] +
                                         indent(["flat = i * C + j"] + body, 1), 1)
            lines += ["for j0 in range(cuda.blockIdx.x * COL_WIDTH, C, cuda.gridDim.x * COL_WIDTH):"]
            lines += indent(["j = j0 + cx"] + inits + loop + shares + ["if lane == 0 and j < C:"] +
                            indent(finish, 1) + ["cuda.syncthreads()"], 1)
        else:
            loop = ["for flat in range(lane, R * C, ALL_THREADS):"] + indent(["i = flat // C", "j = flat - i * C"] + body, 1)
            lines += inits + loop + shares + ["if lane == 0:"] + indent(finish, 1)
        return lines

    def _stores(self, index, cell):
        """Totals out of shared memory, then the reduced values, as the CPU computes them."""
        count = {"row": "C", "col": "R", "all": "R * C"}[self.template]
        red_slot = {v: k for k, v in enumerate(self.reduced)}
        lines, position = [], 0
        for node in self.group.reductions:
            n_acc = 2 if isinstance(node.op, Moments) else 1
            totals = [f"s{self.accumulators[position + a][0][1:]}[0{cell}]" for a in range(n_acc)]
            position += n_acc
            if isinstance(node.op, Moments):
                finish, results = moments_from_totals(totals, count, f"m{position}")
                lines += finish
            else:
                results = totals
            lines += [f"red{red_slot[v]}[{index}] = {r}" for v, r in zip(node.outputs, results)]
        return lines

    def _epilogue(self, index):
        """Elementwise work on the reduced values, read back as stored (as on the CPU)."""
        names = self.epilogue_names(index)
        stores = {v: f"epi{k}[{index}]" for k, v in enumerate(self.epilogue_outputs)}
        lines = []
        for t, node in enumerate(self.group.epilogue):
            lines += render_elementwise(node, f"e{t}", names, stores)
        return lines


# ------------------------------------------------------------------- GEMM
#: how the GEMM epilogue indexes an input, by its view (scalars are loaded once)
EPILOGUE_INDEX = {"full2d": "flat", "cols": "j", "rows": "i"}


class GemmKernelSource:
    """``product = a @ b`` over tiles in shared memory, with an optional fused epilogue.

    ``a`` is (M, K) or, when ``trans_a``, the (K, M) array whose transpose is
    read (no copy is made); likewise ``b``. Each block computes a
    ``GEMM_TILE``-square tile of the product; each thread ``GEMM_PER_THREAD``
    squared outputs, strided by ``GEMM_THREADS`` so that a warp writes
    consecutive addresses. Rows and columns past ``M`` or ``N`` and depth past
    ``K`` load zeros, so any size works. ``epilogue`` (a
    :class:`CudaFusedKernelSource` of an elementwise group reading the product)
    runs on each accumulator before anything is stored; the product itself is
    written only when ``write_product``.

    Arguments: ``M, N, K, a, b``, the epilogue's other inputs, its outputs,
    then the product when written.
    """

    def __init__(self, dot_node, trans_a, trans_b, tuning, epilogue=None, write_product=True):
        self.dot = dot_node
        self.product = dot_node.outputs[0]
        self.trans_a, self.trans_b = trans_a, trans_b
        self.epilogue = epilogue
        self.write_product = write_product or epilogue is None
        self.inputs = [(v, view) for v, view in (epilogue.inputs if epilogue else []) if v is not self.product]
        self.outputs = list(epilogue.outputs) if epilogue else []
        self.written = self.outputs + ([self.product] if self.write_product else [])
        self.zero = lit(0, self.product.dtype)
        self.body = self._render(np.dtype(self.product.dtype))

    def _render(self, dtype):
        args = ["M", "N", "K", "a", "b"] + [f"in{k}" for k in range(len(self.inputs))] + \
               [f"out{k}" for k in range(len(self.outputs))] + (["prod"] if self.write_product else [])
        acc_t = numba_type(dtype)
        lines = [f"def kernel({', '.join(args)}):",
                 f"    tile_a = cuda.shared.array((GEMM_TILE, GEMM_DEPTH), {acc_t})",
                 f"    tile_b = cuda.shared.array((GEMM_DEPTH, GEMM_TILE), {acc_t})",
                 f"    acc = cuda.local.array((GEMM_PER_THREAD, GEMM_PER_THREAD), {acc_t})",
                 "    tx = cuda.threadIdx.x",
                 "    ty = cuda.threadIdx.y",
                 "    tid = ty * GEMM_THREADS + tx"]
        names, loads = dict(self.epilogue.literals if self.epilogue else {}), []
        names[self.product] = "z"
        for k, (var, view) in enumerate(self.inputs):
            if view == "one":
                lines.append(f"    x{k} = in{k}[0]")
            else:
                loads.append(f"x{k} = in{k}[{EPILOGUE_INDEX[view]}]")
            names[var] = f"x{k}"
        store = self._render_epilogue(names)
        lines += indent(["for bi in range(cuda.blockIdx.y * GEMM_TILE, M, cuda.gridDim.y * GEMM_TILE):"] + indent(
            ["for bj in range(cuda.blockIdx.x * GEMM_TILE, N, cuda.gridDim.x * GEMM_TILE):"] + indent(
                ["for p in range(GEMM_PER_THREAD):",
                 "    for q in range(GEMM_PER_THREAD):",
                 f"        acc[p, q] = {self.zero}",
                 "for k0 in range(0, K, GEMM_DEPTH):"] + indent(
                    self._load_tile_a() + self._load_tile_b() +
                    ["cuda.syncthreads()",
                     "for kk in range(GEMM_DEPTH):",
                     "    for p in range(GEMM_PER_THREAD):",
                     "        av = tile_a[ty + p * GEMM_THREADS, kk]",
                     "        for q in range(GEMM_PER_THREAD):",
                     "            acc[p, q] += av * tile_b[kk, tx + q * GEMM_THREADS]",
                     "cuda.syncthreads()"], 1) +
                ["for p in range(GEMM_PER_THREAD):",
                 "    i = bi + ty + p * GEMM_THREADS",
                 "    if i < M:",
                 "        for q in range(GEMM_PER_THREAD):",
                 "            j = bj + tx + q * GEMM_THREADS",
                 "            if j < N:",
                 "                flat = i * N + j",
                 "                z = acc[p, q]"] + indent(loads + store, 4), 1), 1), 1)
        return "\n".join(lines) + "\n"

    def _load_tile_a(self):
        # The loop's fastest index walks the source's contiguous axis: coalesced reads.
        if self.trans_a:   # a is (K, M)
            index = ["c = e // GEMM_TILE", "r = e - c * GEMM_TILE"]
            read = "a[gk * M + gi]"
        else:              # a is (M, K)
            index = ["r = e // GEMM_DEPTH", "c = e - r * GEMM_DEPTH"]
            read = "a[gi * K + gk]"
        return ["for e in range(tid, GEMM_TILE * GEMM_DEPTH, GEMM_THREADS * GEMM_THREADS):"] + indent(
            index + ["gi = bi + r", "gk = k0 + c",
                     f"tile_a[r, c] = {read} if gi < M and gk < K else {self.zero}"], 1)

    def _load_tile_b(self):
        if self.trans_b:   # b is (N, K)
            index = ["c = e // GEMM_DEPTH", "r = e - c * GEMM_DEPTH"]
            read = "b[gj * K + gk]"
        else:              # b is (K, N)
            index = ["r = e // GEMM_TILE", "c = e - r * GEMM_TILE"]
            read = "b[gk * N + gj]"
        return ["for e in range(tid, GEMM_DEPTH * GEMM_TILE, GEMM_THREADS * GEMM_THREADS):"] + indent(
            index + ["gk = k0 + r", "gj = bj + c",
                     f"tile_b[r, c] = {read} if gk < K and gj < N else {self.zero}"], 1)

    def _render_epilogue(self, names):
        lines = []
        if self.epilogue is not None:
            stores = {v: f"out{k}[flat]" for k, v in enumerate(self.outputs)}
            for t, node in enumerate(self.epilogue.group.nodes):
                lines += render_elementwise(node, f"t{t}", names, stores)
        if self.write_product:
            lines.append("prod[flat] = z")
        return lines


# ------------------------------------------------------------ row kernels
def _row_maximum_and_total(store_exp):
    """Shared lines of the softmax family: the row's max ``m`` and ``total = sum(exp(x - m))``."""
    exp_line = ["    e = math.exp(x[base + j] - m)", "    out[base + j] = e", "    total += e"] if store_exp \
        else ["    total += math.exp(x[base + j] - m)"]
    return (["base = i * C",
             "m = -np.inf",
             "for j in range(lane, C, ROW_THREADS):",
             "    m = max(m, x[base + j])",
             "shared[lane] = m",
             "cuda.syncthreads()"] +
            tree_reduce("shared", "lane", "ROW_THREADS", lambda a, b: f"max({a}, {b})") +
            ["m = shared[0]",
             "cuda.syncthreads()",
             "total = 0.0",
             "for j in range(lane, C, ROW_THREADS):"] + exp_line +
            ["shared[lane] = total",
             "cuda.syncthreads()"] +
            tree_reduce("shared", "lane", "ROW_THREADS", lambda a, b: f"{a} + {b}") +
            ["total = shared[0]",
             "cuda.syncthreads()"])


def _row_kernel(args, per_row):
    return "\n".join([f"def kernel(R, C, {args}):",
                      "    shared = cuda.shared.array(ROW_THREADS, numba.float64)",
                      "    lane = cuda.threadIdx.x",
                      "    for i in range(cuda.blockIdx.x, R, cuda.gridDim.x):"] + indent(per_row, 2)) + "\n"


#: The softmax family, one block per row, in float64 as the CPU templates.
#: the row-wise kernel of each row-wise op class (cuda backend)
ROWWISE_TEMPLATES = Lowerings("cuda row-wise template")
ROWWISE_TEMPLATES.register(Softmax, entry=RowTemplate(
    "softmax", _row_kernel("x, out", _row_maximum_and_total(True) + [
        "scale = 1.0 / total",
        "for j in range(lane, C, ROW_THREADS):",
        "    out[base + j] = out[base + j] * scale"])))

ROWWISE_TEMPLATES.register(LogSoftmax, entry=RowTemplate(
    "log_softmax", _row_kernel("x, out", _row_maximum_and_total(False) + [
        "shift = m + math.log(total)",
        "for j in range(lane, C, ROW_THREADS):",
        "    out[base + j] = x[base + j] - shift"])))

# Per-example -log softmax(x)[label]; labels were range-checked before any kernel ran.
ROWWISE_TEMPLATES.register(SoftmaxCrossEntropy, entry=RowTemplate(
    "softmax_cross_entropy", _row_kernel("x, labels, out", _row_maximum_and_total(False) + [
        "if lane == 0:",
        "    out[i] = m + math.log(total) - x[base + labels[i]]"])))

# (softmax(x) - onehot(label)) * g; the thread owning the label's column subtracts g.
ROWWISE_TEMPLATES.register(SoftmaxCrossEntropyGrad, entry=RowTemplate(
    "softmax_cross_entropy_grad", _row_kernel("g, x, labels, out", _row_maximum_and_total(True) + [
        "scale = g[i] / total",
        "label = labels[i]",
        "for j in range(lane, C, ROW_THREADS):",
        "    out[base + j] = out[base + j] * scale",
        "    if j == label:",
        "        out[base + j] = out[base + j] - g[i]"])))

# The loss and its gradient in one pass (a joined row-wise kernel, ``rowwise_join``).
ROWWISE_TEMPLATES.register((SoftmaxCrossEntropy, SoftmaxCrossEntropyGrad), entry=RowTemplate(
    "softmax_cross_entropy_and_grad", _row_kernel("x, labels, g, loss, out", _row_maximum_and_total(True) + [
        "label = labels[i]",
        "if lane == 0:",
        "    loss[i] = m + math.log(total) - x[base + label]",
        "scale = g[i] / total",
        "for j in range(lane, C, ROW_THREADS):",
        "    out[base + j] = out[base + j] * scale",
        "    if j == label:",
        "        out[base + j] = out[base + j] - g[i]"])))

#: A transpose that must exist as an array (a GEMM reads transposes in place).
TRANSPOSE_BODY = """\
def kernel(R, C, src, dst):
    for flat in range(cuda.grid(1), R * C, cuda.gridsize(1)):
        i = flat // C
        j = flat - i * C
        dst[j * R + i] = src[flat]
"""
