"""``kernel_report``: what the compiler made of a function, one row per kernel.

For each kernel, in run order: the ops it fuses, the bytes it reads and
writes, and the bytes saved against the unfused plan, in which every op reads
each of its inputs from memory and writes each of its outputs to memory. Below
the table, every pair of adjacent nodes left in different kernels, with the
compiler's reason.
"""
from __future__ import annotations

import textwrap

import numpy as np

from graphnet.graph.ir import Constant, Placeholder, SharedVariable, shape_str
from graphnet.viz.walk import compiled_graph, home_kernels

OPS_WIDTH = 34


def kernel_report(fn, input_shapes=None):
    """A table of ``fn``'s kernels and the reasons adjacent nodes were not fused, as text.

    Reads ``fn.kernels`` (``.name``, ``.ops``, ``.nodes``, ``.inputs``,
    ``.outputs``, ``.is_blas``, ``.bytes_read``, ``.bytes_written``) and
    ``fn.program.refusals`` ((producer variable, consumer node, reason)).
    Sizes known only at run time (the batch) come from ``input_shapes``
    ({placeholder or its name: shape}); then every byte count is computed from
    the shapes, so the fused and unfused columns agree on the batch. Without
    it, once the function has run, the shapes of its last call are used (see
    :func:`last_call_shapes`); before any call, unknown counts print as ``?``.
    """
    kernels = list(getattr(fn, "kernels", None) or [])
    name = getattr(fn, "name", "function")
    if not kernels:
        backend = getattr(fn, "backend", "?")
        return (f"{name} ({backend} backend) has no kernels: each op runs on its own "
                "(compile with backend=\"cpu\" to see the fused plan)\n")
    fgraph = compiled_graph(fn)
    from_last_call = False
    if not input_shapes:
        input_shapes = last_call_shapes(fn, fgraph)
        from_last_call = bool(input_shapes)
    sizes = _Sizes(fgraph, input_shapes)
    rows, totals = [], [0, 0, 0]
    for i, kernel in enumerate(kernels):
        if input_shapes:
            read, written = sizes.total(kernel.inputs), sizes.total(kernel.outputs)
        else:
            read = kernel.bytes_read if kernel.bytes_read is not None else sizes.total(kernel.inputs)
            written = kernel.bytes_written if kernel.bytes_written is not None else sizes.total(kernel.outputs)
        unfused = _sum([sizes.total(n.inputs) for n in kernel.nodes] + [sizes.total(n.outputs) for n in kernel.nodes])
        saved = None if None in (unfused, read, written) else unfused - read - written
        for j, value in enumerate((read, written, unfused)):
            totals[j] = None if totals[j] is None or value is None else totals[j] + value
        rows.append((f"#{i}", kernel.name + ("  BLAS" if kernel.is_blas else ""), ", ".join(kernel.ops),
                     read, written, unfused, saved))
    lines = [_title(name, kernels, input_shapes, from_last_call), ""]
    lines += _table(rows, totals)
    lines += _minimum_traffic(fgraph, sizes, totals)
    lines += [""] + _not_fused(fn, fgraph, kernels)
    lines += _row_joins(fn)
    return "\n".join(lines) + "\n"


def minimum_traffic(fgraph, sizes):
    """Bytes a call must move at least: each input it reads once, each output and each updated
    shared variable written once (None when a size is unknown)."""
    inputs = [v for v in fgraph.variables() if v.owner is None and not isinstance(v, Constant)]
    return sizes.total(list(dict.fromkeys(inputs)) + list(dict.fromkeys(fgraph.outputs)) +
                       [shared for shared, _ in fgraph.updates])


def _minimum_traffic(fgraph, sizes, totals):
    least = minimum_traffic(fgraph, sizes)
    moved = None if None in totals[:2] else totals[0] + totals[1]
    line = (f"minimum traffic (each input read once, each output and update written once): "
            f"{format_bytes(least)}; the kernels move {format_bytes(moved)}")
    if least and moved is not None:
        line += f" ({moved / least:.2f}x the minimum)"
    return [line]


def _row_joins(fn):
    """Row-wise pairs over the same rows (the loss and its gradient): one kernel, or why not."""
    plan = getattr(getattr(fn, "program", None), "plan", None)
    joins = list(getattr(plan, "row_joins", None) or [])
    if not joins:
        return []
    lines = ["", "row-wise pairs over the same rows:"]
    for join in joins:
        what = "one kernel" if join.joined else "two kernels"
        lines.append(f"  {join.first.outputs[0].describe()} and {join.second.outputs[0].describe()}: "
                     f"{what}: {join.why}")
    return lines


def last_call_shapes(fn, fgraph=None):
    """``{placeholder: shape}`` of ``fn``'s last call, or {} before the first.

    The compiled CPU and CUDA programs record every variable's shape at the last
    call (``program.last_shapes``), the shapes the kernels' ``bytes_read`` and
    ``bytes_written`` describe too.
    """
    shapes = getattr(getattr(fn, "program", None), "last_shapes", None)
    if not shapes:
        return {}
    fgraph = fgraph if fgraph is not None else compiled_graph(fn)
    return {var: tuple(shapes[var]) for var in fgraph.variables()
            if isinstance(var, Placeholder) and var in shapes and None in var.shape}


def _title(name, kernels, input_shapes, from_last_call=False):
    blas = sum(k.is_blas for k in kernels)
    title = f"{name}: {len(kernels)} kernels ({blas} BLAS)"
    if input_shapes:
        given = ", ".join(f"{getattr(k, 'name', k)}={shape_str(tuple(v))}" for k, v in input_shapes.items())
        title += f", bytes for {'the last call, ' if from_last_call else ''}{given}"
    return title


def _table(rows, totals):
    header = ("", "kernel", "ops fused", "read", "written", "unfused r+w", "saved")
    body = [(idx, kname, ops, *map(format_bytes, nums)) for idx, kname, ops, *nums in rows]
    read, written, unfused = totals
    saved = None if None in totals else unfused - read - written
    share = f" ({saved / unfused:.0%})" if saved is not None and unfused else ""
    body.append(("", "total", "", format_bytes(read), format_bytes(written), format_bytes(unfused),
                 format_bytes(saved) + share))
    name_width = max(len(r[1]) for r in body + [header])
    num_widths = [max(len(r[k]) for r in body + [header]) for k in range(3, 7)]

    def line(idx, kname, ops_lines, nums):
        cells = [f"{idx:>3}", f"{kname:<{name_width}}", f"{ops_lines[0]:<{OPS_WIDTH}}"]
        cells += [f"{n:>{w}}" for n, w in zip(nums, num_widths)]
        out = ["  ".join(cells).rstrip()]
        pad = " " * (3 + 2 + name_width + 2)
        out += [pad + more for more in ops_lines[1:]]
        return out

    lines = line(header[0], header[1], [header[2]], header[3:])
    lines.append("-" * len(lines[0]))
    for idx, kname, ops, *nums in body:
        if kname == "total":
            lines.append("-" * len(lines[0]))
        lines += line(idx, kname, textwrap.wrap(ops, OPS_WIDTH) or [""], nums)
    return lines


def _not_fused(fn, fgraph, kernels):
    """Every producer/consumer pair in different kernels, with the recorded reason."""
    kernel_of = home_kernels(kernels)
    program = getattr(fn, "program", None)
    reasons = {}
    for var, node, reason in getattr(program, "refusals", None) or []:
        reasons[(var, node)] = reason
    plan = getattr(program, "plan", None)
    recomputed = [(var, node, how) for var, node, how in getattr(plan, "fusions", None) or [] if "rule 8" in how]
    pairs, seen = [], {(var, node) for var, node, _ in recomputed}
    for node in fgraph.nodes():
        for var in node.inputs:
            if var.owner is not None and kernel_of.get(var.owner) != kernel_of.get(node) and (var, node) not in seen:
                seen.add((var, node))
                pairs.append((var, node))
    pairs += [pair for pair in reasons if pair not in seen]
    if not pairs:
        return ["every pair of adjacent nodes is fused"]

    def where(node):
        i = kernel_of.get(node)
        return f"#{i}" if i is not None else "host"

    lines = ["not fused (producer (kernel) -> consumer (kernel): reason):"]
    for var, node in pairs:
        reason = reasons.get((var, node), "(the compiler recorded no reason)")
        lines.append(f"  {var.describe()} ({where(var.owner) if var.owner else 'input'}) -> "
                     f"{node.outputs[0].describe()} ({where(node)}): {reason}")
    if recomputed:
        lines.append("recomputed by their reader instead of stored and read back (producer (kernel) -> reader (kernel)):")
        for var, node, how in recomputed:
            lines.append(f"  {var.describe()} ({where(var.owner)}) -> {node.outputs[0].describe()} "
                         f"({where(node)}): {how}")
    return lines


class _Sizes:
    """Bytes of each variable: static shapes, refined by ``input_shapes`` through ``infer_shape``."""

    def __init__(self, fgraph, input_shapes):
        self.shapes = {}
        given = {}
        for key, shape in (input_shapes or {}).items():
            given[key if isinstance(key, str) else id(key)] = tuple(shape)
        for var in fgraph.variables():
            if isinstance(var, SharedVariable):
                self.shapes[var] = var.get_value(copy=False).shape
            elif isinstance(var, Constant):
                self.shapes[var] = var.data.shape
            elif isinstance(var, Placeholder):
                self.shapes[var] = given.get(id(var), given.get(var.name, var.shape))
        if input_shapes:
            self._propagate(fgraph)

    def _propagate(self, fgraph):
        for node in fgraph.nodes():
            inputs = [self.shape(v) for v in node.inputs]
            if any(None in s for s in inputs):
                continue
            try:
                outputs = node.op.infer_shape(node, inputs)
            except Exception:  # noqa: BLE001 - a size we cannot infer is shown as unknown
                continue
            for var, shape in zip(node.outputs, outputs):
                self.shapes[var] = tuple(shape)

    def shape(self, var):
        return tuple(self.shapes.get(var, var.shape))

    def nbytes(self, var):
        shape = self.shape(var)
        if None in shape:
            return None
        return int(np.prod(shape, dtype=np.int64)) * var.dtype.itemsize

    def total(self, variables):
        return _sum([self.nbytes(v) for v in variables])


def _sum(values):
    return None if any(v is None for v in values) else sum(values)


def format_bytes(n):
    """``1.5 MB``; ``?`` when unknown (a size known only at run time)."""
    if n is None:
        return "?"
    sign = "-" if n < 0 else ""
    n = abs(n)
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{sign}{n:.0f} {unit}" if unit == "B" else f"{sign}{n:.1f} {unit}"
        n /= 1000
    return f"{sign}{n:.1f} GB"
