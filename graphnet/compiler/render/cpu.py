"""Generate readable Numba source for fused kernels.

Every fused kernel iterates over its domain collapsed to 2-D, ``R`` rows (all
leading axes) by ``C`` columns (the last axis), in ``n_chunks`` blocks of rows
(``prange``: one block per thread in the parallel variant). Inputs are read
by pattern: ``full`` (every element, via a row slice), ``row`` (a vector over
columns: a bias), ``col`` (one value per row) or ``scalar``. Reductions
accumulate per row (``row``), per column in per-block partial sums (``col``),
or over everything (``all``), in float64 for floating-point data. A sum along
rows writes its terms into a scratch row that ``scratch_sum`` adds in vector
lanes, so that the element loop has no chain of dependent additions.

The generated text names no graph node in its code, only in a header comment
kept outside the compiled module, so structurally identical kernels share one
source, one cache file and one compiled function.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from graphnet.compiler.registry import Lowerings
from graphnet.ops.elementwise import lit
from graphnet.ops.nn import LogSoftmax, Softmax, SoftmaxCrossEntropy, SoftmaxCrossEntropyGrad
from graphnet.ops.reduce import Max, Moments

PRELUDE = """\
import math
import numpy as np
import numba
from numba import prange
from graphnet.compiler.render.scalar_prelude import *
"""


def cast_expr(expr, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return f"bool({expr})"
    return f"np.{dtype.name}({expr})"


def accumulator_dtype(dtype):
    return np.dtype(np.float64) if np.dtype(dtype).kind in "fb" else np.dtype(np.int64)


def moments_from_totals(totals, count, name):
    """Lines computing a mean and a biased variance from the sums of x and x², and the two results.

    ``count`` may be 0 (an empty batch): 0 / 0 is NaN, as in ``np.mean``, since
    kernels use ``error_model="numpy"``. Rounding can make ``E[x²] - mean²``
    slightly negative; it is clamped to 0, keeping NaN (``max(nan, 0.0)`` may not).
    """
    mean, var = f"mean_{name}", f"var_{name}"
    lines = [f"{mean} = {totals[0]} / ({count})", f"{var} = {totals[1]} / ({count}) - {mean} * {mean}"]
    return lines, [mean, f"{var} if not {var} < 0.0 else 0.0"]


def render_elementwise(node, name, names, stores):
    """One single-assignment line computing ``node`` from ``names``, plus its store when written
    (``stores``: {variable: the element it is stored to, ``out0_r[j]``}).

    The op's ``scalar`` expression is the one source of truth: CPU and CUDA
    kernels inline the same text.
    """
    out = node.outputs[0]
    compute = out.dtype if out.dtype.kind == "f" else np.result_type(*[v.dtype for v in node.inputs])
    expr = node.op.scalar([names[v] for v in node.inputs], compute)
    lines = [f"{name} = {cast_expr(expr, out.dtype)}  # {node.op}"]
    names[out] = name
    if out in stores:
        lines.append(f"{stores[out]} = {name}")
    return lines


#: rows a column reduction reads at a time (a register block): their terms are added in
#: registers, then once into the float64 per-chunk partial sum (not once per element)
COLUMN_BLOCK_ROWS = 4

#: names a row's code assigns, renamed per row of a register block (row_setup, inner, row_finish)
ASSIGNED = re.compile(r"^(\w+)\s*\+?=")


def filled(name, shape, value, dtype):
    """Lines making ``name``, an array of ``shape`` (``"n_chunks"`` or ``"(n_chunks, C)"``) all
    ``value``: ``np.empty`` and a loop, not ``np.full``, whose implementation Numba compiles
    afresh in every process that compiles a kernel (no disk cache holds it: 0.1-0.2 s of a
    cold start), where ``np.empty`` is compiled for the kernels' scratch rows anyway."""
    lines = [f"{name} = np.empty({shape}, {dtype})"]
    if shape.startswith("("):
        return lines + ["for k in range(n_chunks):", "    for j in range(C):", f"        {name}[k, j] = {value}"]
    return lines + ["for k in range(n_chunks):", f"    {name}[k] = {value}"]


@dataclass
class ColumnAccumulation:
    """``target`` (a per-chunk partial, ``q_a0[j]``) accumulating ``term`` of each row.

    Per row: ``target += term``. Over a register block of rows, the block's terms
    (in the accumulator's dtype) are added pairwise in registers first, so the
    partial is loaded and stored once per block instead of once per element.
    """

    target: str
    term: str
    is_max: bool = False

    def combine(self, a, b):
        return f"nan_max({a}, {b})" if self.is_max else f"({a} + {b})"

    def per_row(self):
        return f"{self.target} = {self.combine(self.target, self.term)}" if self.is_max \
            else f"{self.target} += {self.term}"

    def per_block(self, terms):
        while len(terms) > 1:
            terms = [self.combine(terms[k], terms[k + 1]) if k + 1 < len(terms) else terms[k]
                     for k in range(0, len(terms), 2)]
        return f"{self.target} = {self.combine(self.target, terms[0])}" if self.is_max \
            else f"{self.target} += {terms[0]}"


@dataclass
class LoopNest:
    """A CPU kernel's body as named regions of a loop nest over (rows, columns).

    ``hoisted`` runs once before the loops (scalars loaded once, per-chunk
    partial sums); ``chunk_setup`` once per block of rows (``c``); ``row_setup``
    once per row before the inner loop (row slices, row accumulators);
    ``inner`` once per element, then ``accumulate`` (column reductions);
    ``row_finish`` once per row after it (row totals and their epilogue);
    ``after`` once after every row (folding column or total partial sums, their
    epilogue). With ``block_rows``, rows are read ``block_rows`` at a time
    (each row's code renamed ``_0``, ``_1``...), the remainder one at a time.
    """

    args: list
    hoisted: list = field(default_factory=list)
    chunk_setup: list = field(default_factory=list)
    row_setup: list = field(default_factory=list)
    inner: list = field(default_factory=list)
    accumulate: list = field(default_factory=list)
    row_finish: list = field(default_factory=list)
    after: list = field(default_factory=list)
    block_rows: int = 0
    #: (name, expression) of the scratch rows a row's code copies a strided row into: made once
    #: per block of rows, and once per row of a register block (each row needs its own)
    scratch_rows: list = field(default_factory=list)

    def render(self):
        lines = [f"def kernel({', '.join(self.args)}):"]
        lines += ["    " + s for s in self.hoisted]
        lines += ["    for c in prange(n_chunks):",
                  "        start, stop = c * R // n_chunks, (c + 1) * R // n_chunks"]
        lines += [f"        {name} = {expr}" for name, expr in self.scratch_rows]
        lines += ["        " + s for s in self.chunk_setup]
        first = "start"
        if self.block_rows:
            lines += self._render_blocks()
            first = "blocked_stop"
        lines += [f"        for i in range({first}, stop):"]
        lines += ["            " + s for s in self.row_setup]
        lines += ["            for j in range(C):"]
        lines += ["                " + s for s in self.inner + [a.per_row() for a in self.accumulate]]
        lines += ["            " + s for s in self.row_finish]
        lines += ["    " + s for s in self.after]
        return "\n".join(lines) + "\n"

    def _render_blocks(self):
        rows = self.block_rows
        names = {"i"} | {m.group(1) for s in self.row_setup + self.inner + self.row_finish
                         for m in [ASSIGNED.match(s)] if m} | {name for name, _ in self.scratch_rows}
        pattern = re.compile(r"\b(" + "|".join(sorted(names, key=len, reverse=True)) + r")\b")

        def row(text, u):
            return pattern.sub(lambda m: f"{m.group(1)}_{u}", text)

        # Each row of a block copies a strided row into a scratch of its own: with one scratch
        # for all, the block's rows would all read the last row copied.
        lines = [f"        {name}_{u} = {expr}" for name, expr in self.scratch_rows for u in range(rows)]
        lines += [f"        blocked_stop = start + (stop - start) // {rows} * {rows}",
                  f"        for i in range(start, blocked_stop, {rows}):"]
        lines += [f"            i_{u} = i + {u}" for u in range(rows)]
        lines += ["            " + row(s, u) for u in range(rows) for s in self.row_setup]
        lines += ["            for j in range(C):"]
        lines += ["                " + row(s, u) for u in range(rows) for s in self.inner]
        lines += ["                " + a.per_block([row(a.term, u) for u in range(rows)]) for a in self.accumulate]
        lines += ["            " + row(s, u) for u in range(rows) for s in self.row_finish]
        return lines


class FusedKernelSource:
    """The source of one fused kernel (a plan's :class:`LoopKernel`) and its arguments.

    Arguments: ``R, C, n_chunks``, one per ``kernel.inputs`` entry (reshaped by
    the driver to its view: "full2d" (R, C), "cols" (C,), "rows" (R,), "one"
    (1,)), then the buffers of ``kernel.outputs`` as (R, C), then those of
    ``kernel.reduced`` and ``kernel.epilogue_outputs`` as flat vectors.
    ``argument_names()`` says which variable each positional argument is.

    With ``check_numerics``, the kernel also takes ``flags`` (one byte) and sets
    it when any value of a ``flagged`` node (the float elementwise nodes,
    including those whose values never leave the kernel) is NaN or Inf:
    ``v - v`` is 0 for every finite ``v`` and NaN otherwise, so one comparison
    of their sum per element, counted per row, is the whole cost (a flag per
    node cost 2-3 times more: the counts stop vectorizing). Which node it was
    is found only when the flag is set (``FusedStep.first_non_finite``).
    """

    def __init__(self, kernel, check_numerics=False, in_place=()):
        self.kernel = kernel
        #: outputs the runtime writes into the array of an input they read (in-place updates)
        self.in_place = list(in_place)
        self.group = kernel.group
        self.inputs, self.outputs = kernel.inputs, kernel.outputs
        self.reduced, self.epilogue_outputs = kernel.reduced, kernel.epilogue_outputs
        self.prologue_args, self.epilogue_args = kernel.prologue_args, kernel.epilogue_args
        self.literals = {var: lit(value, var.dtype) for var, value in kernel.literals.items()}
        self.flagged = [n for n in kernel.nodes if n not in self.group.reductions
                        and n.outputs[0].dtype.kind == "f"] if check_numerics else []
        self.body = self._render(kernel.inner_nodes)

    @property
    def written(self):
        return self.kernel.writes

    def positional_arguments(self):
        return ([f"in{k}" for k in range(len(self.inputs))] + [f"out{k}" for k in range(len(self.outputs))] +
                [f"red{k}" for k in range(len(self.reduced))] + [f"epi{k}" for k in range(len(self.epilogue_outputs))])

    def argument_variables(self):
        """The variable each positional argument after ``R, C, n_chunks`` carries."""
        return [v for v, _ in self.inputs] + self.outputs + self.reduced + self.epilogue_outputs

    # ------------------------------------------------------------------ render
    def _render(self, inner_nodes):
        nest = LoopNest(["R", "C", "n_chunks"] + self.positional_arguments() + (["flags"] if self.flagged else []))
        checked = []
        names = dict(self.literals)
        for k, (var, view) in enumerate(self.inputs):
            if view == "one":
                nest.hoisted.append(f"x{k} = in{k}[0]")
            if self.prologue_args.get(var) != k:
                continue  # read by the epilogue only, in its own view
            if view == "full2d":
                # contiguous_row: a strided view's row copied first (see row_math), so it vectorizes
                nest.scratch_rows.append((f"in{k}_s", f"row_scratch(in{k}, C)"))
                nest.row_setup.append(f"in{k}_r = contiguous_row(in{k}, i, in{k}_s)")
                nest.inner.append(f"x{k} = in{k}_r[j]")
            elif view == "cols":
                nest.inner.append(f"x{k} = in{k}[j]")
            elif view == "rows":
                nest.row_setup.append(f"x{k} = in{k}[i]")
            names[var] = f"x{k}"
        if any(n.op.uses_element_index for n in inner_nodes):
            nest.inner.append("index = i * C + j")
        for k, var in enumerate(self.outputs):
            # output_row: a strided output's row written in place where its elements are
            # adjacent, else into a scratch row that finish_row copies out (see row_math)
            nest.scratch_rows.append((f"out{k}_s", f"row_scratch(out{k}, C)"))
            nest.row_setup.append(f"out{k}_r = output_row(out{k}, i, out{k}_s)")
            if var in self.in_place:
                # Written over an input it reads: LLVM's overlap check between the two rows
                # fails at run time and the loop runs scalar (the W6 update: 2.5 ms, 0.18 ms
                # this way). The row goes to a scratch row in cache, copied once it is done.
                nest.chunk_setup.append(f"w{k} = np.empty(C, out{k}.dtype)")
                nest.row_finish += [f"for j in range(C):", f"    out{k}_r[j] = w{k}[j]"]
            nest.row_finish.append(f"finish_row(out{k}, i, out{k}_s)")
        stores = {v: f"w{k}[j]" if v in self.in_place else f"out{k}_r[j]" for k, v in enumerate(self.outputs)}
        red_slot = {v: k for k, v in enumerate(self.reduced)}
        acc_id = 0
        for t, node in enumerate(self.group.nodes):
            if node in self.group.reductions:
                acc_id = self._render_reduction(node, names, red_slot, acc_id, nest)
            elif node not in self.group.epilogue:
                nest.inner += render_elementwise(node, f"t{t}", names, stores)
                if node in self.flagged:
                    checked.append(f"t{t}")
        if checked:
            nest.row_setup.append("nf = np.int32(0)")
            nest.inner.append(f"nf += np.int32(({' + '.join(f'({t} - {t})' for t in checked)}) != 0)  # NaN or Inf?")
            nest.row_finish += ["if nf:", "    flags[0] = 1"]
        if self.group.epilogue:
            self._render_epilogue(nest)
        if nest.accumulate and not self.outputs:
            # Measured (4096x4096, float32): a column sum or moments read 4 rows at a time ran
            # 2.3x (sum) and 1.2x (BN's moments) faster; kernels that also store per-element
            # outputs gained nothing (bias+ReLU backward) or ran 3.5x slower (BN backward's
            # 4 sums and 3 outputs, 4 rows at a time: too many live values): one row at a time.
            nest.block_rows = COLUMN_BLOCK_ROWS
        return nest.render()

    def epilogue_names(self, index):
        """{variable: expression} of what the epilogue reads at reduced element ``index``:
        the reduced values as stored, its own inputs, the literals."""
        names = dict(self.literals)
        names.update({v: f"red{k}[{index}]" for k, v in enumerate(self.reduced)})
        for var, k in self.epilogue_args.items():
            names[var] = f"x{k}" if self.inputs[k][1] == "one" else f"in{k}[{index}]"
        return names

    def _render_epilogue(self, nest):
        """Elementwise work on the reduced values, once per reduced element."""
        index = {"row": "i", "col": "j", "all": "0"}[self.group.reduce_kind]
        names = self.epilogue_names(index)
        stores = {v: f"epi{k}[{index}]" for k, v in enumerate(self.epilogue_outputs)}
        lines = []
        if any(n.op.uses_element_index for n in self.group.epilogue):
            # The flat index of a reduced value (dropout's counter) is its index in the reduced vector.
            lines.append(f"index = {index}")
        for t, node in enumerate(self.group.epilogue):
            lines += render_elementwise(node, f"e{t}", names, stores)
            if node in self.flagged:
                lines += [f"if (e{t} - e{t}) != 0:  # NaN or Inf?", "    flags[0] = 1"]
        if self.group.reduce_kind == "row":
            nest.row_finish.extend(lines)
        elif self.group.reduce_kind == "col":
            nest.after.append("for j in range(C):")
            nest.after.extend("    " + line for line in lines)
        else:
            nest.after.extend(lines)

    def _render_reduction(self, node, names, red_slot, acc_id, nest):
        """Accumulate ``node``'s input; store the result(s) once the rows are done."""
        pattern = self.group.reduce_kind
        value = names[node.inputs[0]]
        acc_t = f"np.{accumulator_dtype(node.inputs[0].dtype).name}"
        is_max = isinstance(node.op, Max)
        init = "-np.inf" if is_max and acc_t == "np.float64" else ("-(2**62)" if is_max else "0")
        accs = [(f"a{acc_id}", value)]
        if isinstance(node.op, Moments):
            accs.append((f"a{acc_id + 1}", f"{acc_t}({value}) * {value}"))
        for acc, val in accs:
            if pattern == "col":
                nest.hoisted += filled(f"p_{acc}", "(n_chunks, C)", init, acc_t)
                nest.chunk_setup.append(f"q_{acc} = p_{acc}[c]")
                # each term in the accumulator's dtype: a block's sum is float64 (int64) already
                term = val if is_max or val.startswith(acc_t) else f"{acc_t}({val})"
                nest.accumulate.append(ColumnAccumulation(f"q_{acc}[j]", term, is_max))
                continue
            if is_max:
                nest.row_setup.append(f"{acc} = {acc_t}({init})")
                nest.inner.append(f"{acc} = nan_max({acc}, {val})")
            else:
                # Each term into a scratch row, summed in vector lanes once the row is done
                # (scratch_sum): a running scalar sum would keep the element loop scalar.
                # The row keeps a float32 term as float32 (scratch_sum widens it).
                row_t = f"np.{node.inputs[0].dtype.name}" if val == value and node.inputs[0].dtype.kind == "f" \
                    else acc_t
                nest.chunk_setup.append(f"s_{acc} = np.empty(C, {row_t})")
                nest.inner.append(f"s_{acc}[j] = {val}")
                nest.row_finish.append(f"{acc} = scratch_sum(s_{acc}, C)")
            if pattern == "all":
                nest.hoisted += filled(f"p_{acc}", "n_chunks", init, acc_t)
                nest.row_finish.append(f"p_{acc}[c] = nan_max(p_{acc}[c], {acc})" if is_max else f"p_{acc}[c] += {acc}")

        # Totals: per row (already in the accumulator), or folded over the row blocks.
        # nan_max: a NaN anywhere is the maximum, as in np.max (Python's max drops it).
        fold = (lambda a, b: f"nan_max({a}, {b})") if is_max else (lambda a, b: f"{a} + {b}")
        totals, fold_lines = [], []
        for acc, _ in accs:
            if pattern == "row":
                totals.append(acc)
            elif pattern == "col":
                fold_lines += [f"t_{acc} = p_{acc}[0, j]", "for k in range(1, n_chunks):",
                               f"    t_{acc} = {fold(f't_{acc}', f'p_{acc}[k, j]')}"]
                totals.append(f"t_{acc}")
            else:
                fold_lines += [f"t_{acc} = p_{acc}[0]", "for k in range(1, n_chunks):",
                               f"    t_{acc} = {fold(f't_{acc}', f'p_{acc}[k]')}"]
                totals.append(f"t_{acc}")
        count = {"row": "C", "col": "R", "all": "R * C"}[pattern]
        index = {"row": "i", "col": "j", "all": "0"}[pattern]
        if isinstance(node.op, Moments):
            stores, results = moments_from_totals(totals, count, f"a{acc_id}")
        else:
            stores, results = [], [totals[0]]
        stores += [f"red{red_slot[v]}[{index}] = {r}" for v, r in zip(node.outputs, results)]
        if pattern == "row":
            nest.row_finish.extend(stores)
        elif pattern == "col":
            nest.after.append("for j in range(C):")
            nest.after.extend("    " + line for line in fold_lines + stores)
        else:
            nest.after.extend(fold_lines + stores)
        return acc_id + len(accs)


def module_source(body):
    """A kernel module: the body twice, as a serial and a parallel dispatcher.

    Two named functions, not two dispatchers of one function, so Numba's
    on-disk cache keeps their compiled code apart.
    """
    serial = body.replace("def kernel(", "def kernel_serial(", 1)
    parallel = body.replace("def kernel(", "def kernel_parallel(", 1)
    # error_model="numpy": x / 0 gives inf or nan as in NumPy, with no exception
    # path to generate (smaller code, faster compiles, vectorizable loops).
    return (PRELUDE + "\n\n@numba.njit(cache=True, nogil=True, error_model=\"numpy\")\n" + serial +
            "\n\n@numba.njit(cache=True, nogil=True, error_model=\"numpy\", parallel=True)\n" + parallel)


# ------------------------------------------------------------ rowwise templates
@dataclass(frozen=True)
class RowTemplate:
    """A row-wise kernel: ``kernel(R, C, n_chunks, *inputs, *outputs)`` over the rows of a matrix.

    The arguments of a one-node kernel are its op's inputs then its output; a
    joined kernel (:mod:`graphnet.compiler.schedule.rowwise_join`) takes the
    inputs of its nodes in the order they read them, each once, then their
    outputs in node order.
    """

    name: str    # for kernel names: k3_softmax
    body: str


#: the row-wise kernel of each row-wise op class, and of each joined pair (a tuple of op classes)
#: (cpu backend). Every template runs in the input's dtype: the max, each exponential (``vexp``,
#: vectorized for float32) and the stores; a row's sum of exponentials is a float64 total of
#: float32 block sums (``row_max_exp_sum``, one pass over memory per row).
ROWWISE_TEMPLATES = Lowerings("cpu row-wise template")
ROWWISE_TEMPLATES.register(Softmax, entry=RowTemplate("softmax", """\
def kernel(R, C, n_chunks, x, out):
    for c in prange(n_chunks):
        for i in range(c * R // n_chunks, (c + 1) * R // n_chunks):
            o = out[i]
            m, total = row_max_exp_sum(x[i], o)
            scale = cast_like(o, 1.0 / total)
            for j in range(C):
                o[j] = o[j] * scale
"""))

ROWWISE_TEMPLATES.register(LogSoftmax, entry=RowTemplate("log_softmax", """\
def kernel(R, C, n_chunks, x, out):
    no_store = np.empty(0, x.dtype)
    for c in prange(n_chunks):
        for i in range(c * R // n_chunks, (c + 1) * R // n_chunks):
            xr = x[i]
            m, total = row_max_exp_sum(xr, no_store)
            shift = cast_like(xr, m + math.log(total))
            o = out[i]
            for j in range(C):
                o[j] = xr[j] - shift
"""))

# Per-example -log softmax(x)[label]; labels were range-checked before any kernel ran.
ROWWISE_TEMPLATES.register(SoftmaxCrossEntropy, entry=RowTemplate("softmax_cross_entropy", """\
def kernel(R, C, n_chunks, x, labels, out):
    no_store = np.empty(0, x.dtype)
    for c in prange(n_chunks):
        for i in range(c * R // n_chunks, (c + 1) * R // n_chunks):
            xr = x[i]
            m, total = row_max_exp_sum(xr, no_store)
            out[i] = m + math.log(total) - xr[labels[i]]
"""))

# (softmax(x) - onehot(label)) * g: the stable gradient of the above.
ROWWISE_TEMPLATES.register(SoftmaxCrossEntropyGrad, entry=RowTemplate("softmax_cross_entropy_grad", """\
def kernel(R, C, n_chunks, g, x, labels, out):
    for c in prange(n_chunks):
        for i in range(c * R // n_chunks, (c + 1) * R // n_chunks):
            o = out[i]
            m, total = row_max_exp_sum(x[i], o)
            scale = cast_like(o, g[i] / total)
            for j in range(C):
                o[j] = o[j] * scale
            o[labels[i]] -= g[i]
"""))

# The loss and its gradient from one pass over the logits: the max and the exponentials of
# each row are computed once (the two kernels above each computed them).
ROWWISE_TEMPLATES.register((SoftmaxCrossEntropy, SoftmaxCrossEntropyGrad), entry=RowTemplate(
    "softmax_cross_entropy_and_grad", """\
def kernel(R, C, n_chunks, x, labels, g, loss, out):
    for c in prange(n_chunks):
        for i in range(c * R // n_chunks, (c + 1) * R // n_chunks):
            xr = x[i]
            o = out[i]
            m, total = row_max_exp_sum(xr, o)
            loss[i] = m + math.log(total) - xr[labels[i]]
            scale = cast_like(o, g[i] / total)
            for j in range(C):
                o[j] = o[j] * scale
            o[labels[i]] -= g[i]
"""))
