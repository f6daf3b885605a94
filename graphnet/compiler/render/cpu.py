"""Generate readable Numba source for fused kernels.

Every fused kernel iterates over its domain collapsed to 2-D, ``R`` rows (all
leading axes) by ``C`` columns (the last axis), in ``n_chunks`` blocks of rows
(``prange``: one block per thread in the parallel variant). Inputs are read
by pattern: ``full`` (every element, via a row slice), ``row`` (a vector over
columns: a bias), ``col`` (one value per row) or ``scalar``. Reductions
accumulate per row (``row``), per column in per-block partial sums (``col``),
or over everything (``all``), in float64 for floating-point data.

The generated text names no graph node in its code, only in a header comment
kept outside the compiled module, so structurally identical kernels share one
source, one cache file and one compiled function.
"""
from __future__ import annotations

import numpy as np

from graphnet.compiler.schedule.fuse import input_pattern
from graphnet.graph.ir import Constant
from graphnet.ops.elementwise import lit
from graphnet.ops.reduce import Max, Moments, Sum

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


#: how an input is viewed when passed to a kernel, by its pattern
PROLOGUE_VIEWS = {"full": "full2d", "row": "cols", "col": "rows", "scalar": "one"}
EPILOGUE_VIEWS = {"col": {"full": "cols", "scalar": "one"}, "row": {"full": "rows", "scalar": "one"},
                  "all": {"full": "one", "scalar": "one"}}


def moments_from_totals(totals, count, name):
    """Lines computing a mean and a biased variance from the sums of x and x², and the two results.

    ``count`` may be 0 (an empty batch): 0 / 0 is NaN, as in ``np.mean``, since
    kernels use ``error_model="numpy"``. Rounding can make ``E[x²] - mean²``
    slightly negative; it is clamped to 0, keeping NaN (``max(nan, 0.0)`` may not).
    """
    mean, var = f"mean_{name}", f"var_{name}"
    lines = [f"{mean} = {totals[0]} / ({count})", f"{var} = {totals[1]} / ({count}) - {mean} * {mean}"]
    return lines, [mean, f"{var} if not {var} < 0.0 else 0.0"]


class FusedKernelSource:
    """The source of one fused kernel and the order of its arguments.

    ``inputs``: (variable, view) pairs read, the view saying how the driver
    reshapes the array ("full2d" to (R, C), "cols" to (C,), "rows" to (R,),
    "one" to (1,)); ``outputs``: elementwise results written to ``(R, C)``
    buffers; ``reduced``: reduction outputs; ``epilogue_outputs``: results of
    the epilogue on reduced values. The last two are written as flat vectors.

    With ``check_numerics``, the kernel also takes ``flags`` (one byte) and sets
    it when any value of a ``flagged`` node (the float elementwise nodes,
    including those whose values never leave the kernel) is NaN or Inf:
    ``v - v`` is 0 for every finite ``v`` and NaN otherwise, so one comparison
    of their sum per element, counted per row, is the whole cost (a flag per
    node cost 2-3 times more: the counts stop vectorizing). Which node it was
    is found only when the flag is set (``FusedStep.first_non_finite``).
    """

    def __init__(self, group, written, check_numerics=False):
        self.group = group
        self.flagged = [n for n in group.nodes if n not in group.reductions
                        and n.outputs[0].dtype.kind == "f"] if check_numerics else []
        self.domain = group.domain
        self.inputs = []
        self.literals = {}
        # The argument each stage reads a variable from: a value of the reduced
        # shape ((R, 1) when a row sum keeps its axis) may be read by the prologue
        # as (R, C) and by the epilogue as (R,): two arguments, two views.
        self.epilogue_args, self.prologue_args = {}, {}
        for node in group.nodes:
            stage_views = (EPILOGUE_VIEWS[group.reduce_kind] if node in group.epilogue else PROLOGUE_VIEWS)
            domain = group.reduced_domain if node in group.epilogue else self.domain
            for var in node.inputs:
                if isinstance(var, Constant) and var.data.size == 1:
                    # Scalar constants are literals: LLVM folds them, and no
                    # read-only array argument multiplies the compiled signatures.
                    self.literals[var] = lit(var.data.reshape(()).item(), var.dtype)
                elif not group.produces(var):
                    pair = (var, stage_views[input_pattern(var.shape, domain)])
                    if pair not in self.inputs:
                        self.inputs.append(pair)
                    stage_args = self.epilogue_args if node in group.epilogue else self.prologue_args
                    stage_args[var] = self.inputs.index(pair)
        inner_nodes = [n for n in group.nodes if n not in group.reductions and n not in group.epilogue]
        self.outputs = [v for n in inner_nodes for v in n.outputs if v in written]
        self.reduced = [v for n in group.reductions for v in n.outputs]
        self.epilogue_outputs = [v for n in group.epilogue for v in n.outputs if v in written]
        self.body = self._render(inner_nodes)

    @property
    def reads(self):
        """The variables read, each once (one may be passed in two views)."""
        return list(dict.fromkeys(var for var, _ in self.inputs))

    @property
    def written(self):
        return self.outputs + self.reduced + self.epilogue_outputs

    # ------------------------------------------------------------------ render
    def _render(self, inner_nodes):
        args = ["R", "C", "n_chunks"] + [f"in{k}" for k in range(len(self.inputs))] + \
               [f"out{k}" for k in range(len(self.outputs))] + [f"red{k}" for k in range(len(self.reduced))] + \
               [f"epi{k}" for k in range(len(self.epilogue_outputs))] + (["flags"] if self.flagged else [])
        checked = []
        names, hoisted, row_setup, inner, row_finish, before, after = dict(self.literals), [], [], [], [], [], []
        for k, (var, view) in enumerate(self.inputs):
            if view == "one":
                hoisted.append(f"x{k} = in{k}[0]")
            if self.prologue_args.get(var) != k:
                continue  # read by the epilogue only, in its own view
            if view == "full2d":
                row_setup.append(f"in{k}_r = in{k}[i]")
                inner.append(f"x{k} = in{k}_r[j]")
            elif view == "cols":
                inner.append(f"x{k} = in{k}[j]")
            elif view == "rows":
                row_setup.append(f"x{k} = in{k}[i]")
            names[var] = f"x{k}"
        if any(getattr(n.op, "uses_element_index", False) for n in inner_nodes):
            inner.append("index = i * C + j")
        for k in range(len(self.outputs)):
            row_setup.append(f"out{k}_r = out{k}[i]")
        out_slot = {v: k for k, v in enumerate(self.outputs)}
        red_slot = {v: k for k, v in enumerate(self.reduced)}
        acc_id = 0
        for t, node in enumerate(self.group.nodes):
            if node in self.group.reductions:
                acc_id = self._render_reduction(node, names, red_slot, acc_id, row_setup, inner, row_finish,
                                                before, after)
            elif node not in self.group.epilogue:
                inner += self._render_elementwise(node, f"t{t}", names, out_slot, "out{}_r[j]")
                if node in self.flagged:
                    checked.append(f"t{t}")
        if checked:
            row_setup.append("nf = np.int32(0)")
            inner.append(f"nf += np.int32(({' + '.join(f'({t} - {t})' for t in checked)}) != 0)  # NaN or Inf?")
            row_finish += ["if nf:", "    flags[0] = 1"]
        if self.group.epilogue:
            self._render_epilogue(row_finish, after)
        lines = [f"def kernel({', '.join(args)}):"]
        lines += ["    " + s for s in hoisted + before]
        lines += ["    for c in prange(n_chunks):",
                  "        for i in range(c * R // n_chunks, (c + 1) * R // n_chunks):"]
        lines += ["            " + s for s in row_setup]
        lines += ["            for j in range(C):"]
        lines += ["                " + s for s in inner]
        lines += ["            " + s for s in row_finish]
        lines += ["    " + s for s in after]
        return "\n".join(lines) + "\n"

    @staticmethod
    def _render_elementwise(node, name, names, slots, store):
        out = node.outputs[0]
        compute = out.dtype if out.dtype.kind == "f" else np.result_type(*[v.dtype for v in node.inputs])
        expr = node.op.scalar([names[v] for v in node.inputs], compute)
        lines = [f"{name} = {cast_expr(expr, out.dtype)}  # {node.op}"]
        names[out] = name
        if out in slots:
            lines.append(f"{store.format(slots[out])} = {name}")
        return lines

    def epilogue_names(self, index):
        """{variable: expression} of what the epilogue reads at reduced element ``index``:
        the reduced values as stored, its own inputs, the literals."""
        names = dict(self.literals)
        names.update({v: f"red{k}[{index}]" for k, v in enumerate(self.reduced)})
        for var, k in self.epilogue_args.items():
            names[var] = f"x{k}" if self.inputs[k][1] == "one" else f"in{k}[{index}]"
        return names

    def _render_epilogue(self, row_finish, after):
        """Elementwise work on the reduced values, once per reduced element."""
        index = {"row": "i", "col": "j", "all": "0"}[self.group.reduce_kind]
        names = self.epilogue_names(index)
        slots = {v: k for k, v in enumerate(self.epilogue_outputs)}
        lines = []
        if any(getattr(n.op, "uses_element_index", False) for n in self.group.epilogue):
            # The flat index of a reduced value (dropout's counter) is its index in the reduced vector.
            lines.append(f"index = {index}")
        for t, node in enumerate(self.group.epilogue):
            lines += self._render_elementwise(node, f"e{t}", names, slots, f"epi{{}}[{index}]")
            if node in self.flagged:
                lines += [f"if (e{t} - e{t}) != 0:  # NaN or Inf?", "    flags[0] = 1"]
        if self.group.reduce_kind == "row":
            row_finish.extend(lines)
        elif self.group.reduce_kind == "col":
            after.append("for j in range(C):")
            after.extend("    " + line for line in lines)
        else:
            after.extend(lines)

    def _render_reduction(self, node, names, red_slot, acc_id, row_setup, inner, row_finish, before, after):
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
                before.append(f"p_{acc} = np.full((n_chunks, C), {init}, {acc_t})")
                row_setup.append(f"q_{acc} = p_{acc}[c]")
                target = f"q_{acc}[j]"
            else:
                row_setup.append(f"{acc} = {acc_t}({init})")
                target = acc
            inner.append(f"{target} = nan_max({target}, {val})" if is_max else f"{target} += {val}")
            if pattern == "all":
                before.append(f"p_{acc} = np.full(n_chunks, {init}, {acc_t})")
                row_finish.append(f"p_{acc}[c] = nan_max(p_{acc}[c], {acc})" if is_max else f"p_{acc}[c] += {acc}")

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
            row_finish.extend(stores)
        elif pattern == "col":
            after.append("for j in range(C):")
            after.extend("    " + line for line in fold_lines + stores)
        else:
            after.extend(fold_lines + stores)
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
ROWWISE_BODIES = {
    "softmax": """\
def kernel(R, C, n_chunks, x, out):
    for c in prange(n_chunks):
        for i in range(c * R // n_chunks, (c + 1) * R // n_chunks):
            o = out[i]
            scale = 1.0 / row_exp_sum(x[i], row_max(x[i]), o)
            for j in range(C):
                o[j] = o[j] * scale
""",
    "log_softmax": """\
def kernel(R, C, n_chunks, x, out):
    no_store = np.empty(0, x.dtype)
    for c in prange(n_chunks):
        for i in range(c * R // n_chunks, (c + 1) * R // n_chunks):
            xr = x[i]
            m = row_max(xr)
            shift = m + math.log(row_exp_sum(xr, m, no_store))
            o = out[i]
            for j in range(C):
                o[j] = xr[j] - shift
""",
    # Per-example -log softmax(x)[label]; labels were range-checked before any kernel ran.
    "softmax_cross_entropy": """\
def kernel(R, C, n_chunks, x, labels, out):
    no_store = np.empty(0, x.dtype)
    for c in prange(n_chunks):
        for i in range(c * R // n_chunks, (c + 1) * R // n_chunks):
            xr = x[i]
            m = row_max(xr)
            out[i] = m + math.log(row_exp_sum(xr, m, no_store)) - xr[labels[i]]
""",
    # (softmax(x) - onehot(label)) * g: the stable gradient of the above.
    "softmax_cross_entropy_grad": """\
def kernel(R, C, n_chunks, g, x, labels, out):
    for c in prange(n_chunks):
        for i in range(c * R // n_chunks, (c + 1) * R // n_chunks):
            o = out[i]
            scale = g[i] / row_exp_sum(x[i], row_max(x[i]), o)
            for j in range(C):
                o[j] = o[j] * scale
            o[labels[i]] -= g[i]
""",
}
