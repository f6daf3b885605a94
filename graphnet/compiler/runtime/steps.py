"""The steps a compiled CPU program runs: fused kernels, BLAS calls, row-wise
templates, views, and the NumPy fallback for everything else.

Each step knows what it reads and writes (for the memory plan) and carries a
:class:`Kernel` record that users inspect as ``fn.kernels``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graphnet.compiler.runtime import cache, threads
from graphnet.compiler.runtime.reference import node_error
from graphnet.ops.nn import check_labels


@dataclass(eq=False)
class Kernel:
    """What one step computes, for ``fn.kernels``, reports and graph views."""

    name: str
    nodes: list
    inputs: list
    outputs: list
    is_blas: bool = False
    source: str = ""
    compiled: object = None          # the Numba dispatcher (serial variant)
    compiled_parallel: object = None
    kind: str = "fused"
    bytes_read: int = None
    bytes_written: int = None
    ran_parallel: bool = field(default=False, repr=False)

    @property
    def ops(self):
        return [n.op.name for n in self.nodes]


def call_kernel(kernel, *args):
    """``kernel(*args)``; if Numba's cache files for it (or the helpers it calls) are
    corrupt, they are flushed and the kernel is compiled afresh, once."""
    try:
        kernel(*args)
    except Exception:
        if not cache.repair_numba_cache(kernel, *_helper_dispatchers()):
            raise
        kernel(*args)


def _helper_dispatchers():
    """The njit helpers generated kernels call (scalar prelude, counter-based RNG)."""
    import numba

    from graphnet.ops import rng
    from graphnet.compiler.render import scalar_prelude
    return [f for module in (scalar_prelude, rng) for f in vars(module).values()
            if isinstance(f, numba.core.dispatcher.Dispatcher)]


def non_finite(value):
    """"NaN", "Inf" or None: what non-finite values a float array holds."""
    value = np.asarray(value)
    if value.dtype.kind != "f" or np.isfinite(value).all():
        return None
    return "NaN" if np.isnan(value).any() else "Inf"


def rows_cols(shape):
    """The collapsed (rows, columns) of an iteration shape."""
    if not shape:
        return 1, 1
    cols = shape[-1]
    rows = 1
    for d in shape[:-1]:
        rows *= d
    return rows, cols


class Step:
    kind = "host"
    #: whether running this step can still raise once the program's up-front
    #: checks (shapes, fed labels) passed; an in-place update must not precede it
    may_fail = False

    def __init__(self, nodes, reads, writes, kernel):
        self.nodes, self.reads, self.writes, self.kernel = nodes, reads, writes, kernel

    @property
    def elementwise_writes(self):
        return ()

    def pattern_of(self, var):
        return None

    def run(self, env, buffers, shapes):
        raise NotImplementedError


class FusedStep(Step):
    """A generated kernel over the (rows, columns) of its domain."""

    kind = "fused"

    def __init__(self, group, source, module, kernel):
        super().__init__(group.nodes, source.reads, source.written, kernel)
        self.group = group
        self.source = source
        self.serial = module.kernel_serial
        self.parallel = module.kernel_parallel
        first = next(n for n in group.nodes if n not in group.epilogue)
        self.domain_var = first.inputs[0] if first in group.reductions else first.outputs[0]
        #: check_numerics: set by the kernel when a value it computed is NaN or Inf
        self.flags = np.zeros(1, np.uint8) if source.flagged else None

    @property
    def elementwise_writes(self):
        return self.source.outputs

    def pattern_of(self, var):
        return next((view for v, view in self.source.inputs if v is var), None)

    def first_non_finite(self, env):
        """(node, variable, what) of the first node of this kernel whose values hold NaN or Inf, or None.

        The kernel's flag says whether any elementwise value was; reductions are
        checked on their (small) outputs. Only then, on the way to an error, the
        kernel's nodes are evaluated again one by one (their NumPy reference, on
        the same inputs, which the kernel did not overwrite) to name the first.
        """
        flagged = self.flags is not None and self.flags[0]
        if not flagged and not any(non_finite(env[v]) for v in self.source.reduced):
            return None
        values = {}
        for node in self.group.nodes:
            with np.errstate(all="ignore"):
                results = node.op.perform([values[v] if v in values else env[v] for v in node.inputs])
            for var, value in zip(node.outputs, results):
                values[var] = np.asarray(value, dtype=var.dtype)
                what = non_finite(values[var])
                if what:
                    return node, var, what
        # NumPy rounded differently from the kernel: name the kernel instead.
        node = self.group.nodes[-1]
        return node, node.outputs[0], f"NaN or Inf (inside kernel {self.kernel.name}: {', '.join(self.kernel.ops)})"

    def run(self, env, buffers, shapes):
        rows, cols = rows_cols(shapes[self.domain_var])
        views = {"full2d": (rows, cols), "cols": (cols,), "rows": (rows,), "one": (1,)}
        args = [env[var].reshape(views[view]) for var, view in self.source.inputs]
        for var in self.source.outputs:
            env[var] = buffers[var]
            args.append(buffers[var].reshape(rows, cols))
        for var in self.source.reduced + self.source.epilogue_outputs:
            env[var] = buffers[var]
            args.append(buffers[var].reshape(-1))
        if self.flags is not None:
            self.flags[:] = 0
            args.append(self.flags)
        parallel = threads.use_parallel(rows * cols, rows)
        self.kernel.ran_parallel = parallel
        kernel = self.parallel if parallel else self.serial
        call_kernel(kernel, rows, cols, threads.chunks(rows) if parallel else 1, *args)


class RowwiseStep(Step):
    """Softmax, log-softmax and softmax cross-entropy over the last axis of a matrix."""

    kind = "rowwise"

    def __init__(self, node, module, kernel, template):
        super().__init__([node], list(node.inputs), list(node.outputs), kernel)
        self.node, self.template = node, template
        self.serial, self.parallel = module.kernel_serial, module.kernel_parallel
        # Labels computed by the graph are range-checked only here (fed ones up front).
        self.may_fail = template.startswith("softmax_cross_entropy") and node.inputs[-1].owner is not None

    def run(self, env, buffers, shapes):
        args = [env[v] for v in self.node.inputs]
        logits = args[1] if self.template == "softmax_cross_entropy_grad" else args[0]
        rows, cols = logits.shape
        if self.template.startswith("softmax_cross_entropy"):
            check_labels(args[-1], cols, f"cross_entropy ({self.node.source})")
        out = buffers[self.node.outputs[0]]
        env[self.node.outputs[0]] = out
        parallel = threads.use_parallel(rows * cols, rows)
        kernel = self.parallel if parallel else self.serial
        call_kernel(kernel, rows, cols, threads.chunks(rows) if parallel else 1, *args, out)


class BlasStep(Step):
    """``np.dot`` into a preallocated buffer: one BLAS GEMM/GEMV call."""

    kind = "blas"

    def __init__(self, node, kernel):
        super().__init__([node], list(node.inputs), list(node.outputs), kernel)
        self.node = node

    def run(self, env, buffers, shapes):
        a, b = (env[v] for v in self.node.inputs)
        out = buffers[self.node.outputs[0]]
        if a.dtype == b.dtype == out.dtype and a.dtype.kind == "f":
            np.dot(a, b, out=out)
        else:
            out[...] = np.dot(a, b)
        env[self.node.outputs[0]] = out


class HostStep(Step):
    """Nodes run by their ops' NumPy ``perform``, in order.

    Used for views (free in NumPy), for ops without a kernel, and for fused
    groups over 0-d values, where a compiled kernel would cost more to compile
    than NumPy costs to run.
    """

    kind = "host"

    def __init__(self, nodes, kernel, kind="host"):
        produced = {v for n in nodes for v in n.outputs}
        reads = []
        for n in nodes:
            reads += [v for v in n.inputs if v not in produced and v not in reads]
        super().__init__(list(nodes), reads, [v for n in nodes for v in n.outputs], kernel)
        self.kind = kind
        # An op's NumPy perform may raise on values (labels, indices); elementwise,
        # reductions and views only on shapes, which were checked up front.
        self.may_fail = any(n.op.kind not in ("elementwise", "reduce", "view") for n in nodes)

    def run(self, env, buffers, shapes):
        for node in self.nodes:
            try:
                results = node.op.perform([env[v] for v in node.inputs])
            except Exception as exc:  # noqa: BLE001 - re-raised with the node's provenance
                node_error(node, exc)
            for var, value in zip(node.outputs, results):
                env[var] = np.asarray(value, dtype=var.dtype)
