"""The steps a compiled CPU program runs, one per planned kernel, and how each is lowered.

``CPU_LOWERINGS`` maps each kernel class of the plan to the function that
makes its step: a generated loop (:class:`FusedStep`), a BLAS call followed by
its epilogue loop (:class:`GemmStep`), a row-wise template
(:class:`RowwiseStep`), a NumPy view or the NumPy fallback
(:class:`HostStep`). Each step knows what it reads and writes (for the memory
plan) and carries a :class:`Kernel` record that users inspect as
``fn.kernels``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from graphnet.compiler.registry import Lowerings
from graphnet.compiler.render import cpu as render
from graphnet.compiler.runtime import blas_symbols, cache, threads
from graphnet.compiler.runtime.entry import Call, Ref
from graphnet.compiler.runtime.program import annotate
from graphnet.compiler.runtime.provenance import check_finite, node_error
from graphnet.compiler.runtime.tiered import CompiledVariants, KernelCall
from graphnet.compiler.schedule.plan import GemmKernel, HostKernel, LoopKernel, RowwiseKernel, ViewKernel
from graphnet.errors import NumericsError


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
    #: how the last call ran a generated kernel: "compiled", "numpy" (its compile still running in the
    #: background, runtime/tiered.py) or "numpy (compiling failed: ...)"; None: not a generated kernel
    tier: str = None
    #: a GEMM's epilogue kernel (its own record: it is compiled and tiered on its own)
    epilogue: object = field(default=None, repr=False)
    #: the bound calls of this kernel still waiting (or that waited) for it on the NumPy tier
    background: list = field(default_factory=list, repr=False)
    #: seconds spent loading or compiling this kernel in the foreground, not yet reported
    compile_s: float = field(default=0.0, repr=False)

    @property
    def ops(self):
        return [n.op.name for n in self.nodes]

    @property
    def current_tier(self):
        """``tier``, for a GEMM that of its epilogue."""
        return self.epilogue.tier if self.epilogue is not None else self.tier

    def all_background(self):
        return self.background + (self.epilogue.background if self.epilogue is not None else [])

    def take_compile_seconds(self):
        """Seconds spent loading or compiling (with its epilogue) since the last time asked."""
        spent, self.compile_s = self.compile_s, 0.0
        return spent + (self.epilogue.take_compile_seconds() if self.epilogue is not None else 0.0)

    @property
    def dispatcher(self):
        """The Numba dispatcher this kernel runs with (None for BLAS-only and NumPy steps)."""
        return self.compiled_parallel if self.ran_parallel else self.compiled


def kernel_record(planned, name, record=Kernel, **fields):
    """The ``fn.kernels`` entry of planned kernel ``planned``: its nodes, what it reads and writes."""
    return record(name, list(planned.nodes), list(planned.reads), list(planned.writes), **fields)


def call_kernel(kernel, *args):
    """``kernel(*args)``; if Numba's cache files for it (or the helpers it calls) are
    corrupt, they are flushed and the kernel is compiled afresh, once."""
    try:
        kernel(*args)
    except Exception:
        if not cache.repair_numba_cache(kernel, *cache.kernel_helpers()):
            raise
        kernel(*args)


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


def named_source(body, source):
    """``body`` with its positional arguments renamed after the variables they carry.

    The module compiled and cached is the positional text, so structurally
    identical kernels (the momentum update of every layer) share one compile;
    what users read is the same program with ``x_W``, ``out_h1``... where the
    variable names are unique identifiers (a comment maps the rest).
    """
    renames = {}
    used = set()
    for positional, var in zip(source.positional_arguments(), source.argument_variables()):
        stem = {"in": "x", "out": "out", "red": "red", "epi": "epi"}[re.match(r"[a-z]+", positional).group()]
        name = f"{stem}_{var.name}" if var.name and var.name.isidentifier() else None
        if name is None or name in used:
            continue
        used.add(name)
        renames[positional] = name
    if not renames:
        return body
    # in0 and its row slices in0_r, in0_r_1 (a register block's second row), as whole words:
    # x0 (a value) and in10 stay as they are.
    pattern = re.compile(r"\b(" + "|".join(sorted(renames, key=len, reverse=True)) + r")(_r(?:_\d+)?)?\b")
    return pattern.sub(lambda m: renames[m.group(1)] + (m.group(2) or ""), body)


class Step:
    """A lowered planned kernel: what the memory plan and the program need of it."""

    kind = "host"
    #: whether the step writes into buffers the memory plan gives it
    needs_buffers = True
    #: a loop body's ``tiered.CompileHold`` (set by the loop's step), else None
    compile_hold = None

    def __init__(self, planned, kernel, program_name="function"):
        self.planned, self.kernel, self.program_name = planned, kernel, program_name
        self.nodes, self.reads, self.writes = planned.nodes, planned.reads, planned.writes
        self.scratch = planned.scratch
        self.is_view = planned.is_view
        #: whether running this step can still raise once the program's up-front
        #: checks (shapes, fed labels) passed; an in-place update must not precede it
        self.may_fail = planned.may_fail
        #: the fn.kernels entries whose variant this step's choice decides
        self.records = [kernel]

    def run(self, env, buffers, shapes):
        raise NotImplementedError

    def hold_compiles(self, hold):
        """Let ``hold`` (a loop body's ``tiered.CompileHold``) hold back this step's kernel compiles."""
        self.compile_hold = hold

    def bind(self, frame):
        """``call(env)`` running this step on ``frame``: what depends only on the shapes
        (views of the frame's buffers, row counts, thread choices) is done here, once
        per input-shape signature, so a call does little more than launch the kernel.
        ``env`` holds every value, the frame's buffers included."""
        shapes = frame.shapes
        return lambda env: self.run(env, env, shapes)

    def calls(self, frame):
        """What this step runs on ``frame``, as :class:`~graphnet.compiler.runtime.entry.Call` s
        for the frame's generated entry (None: it has none, and the program keeps ``bind``)."""
        return None

    def compiled_step(self, program):
        """This step as a compiled kernel, for a driver (``driver.py``): itself, except a
        NumPy step over 0-d values, whose kernel is compiled only now (when it is worth it)."""
        return self

    def check_numerics(self, env):
        """Raise NumericsError naming the first node of this step whose output holds NaN or Inf."""
        for var in self.writes:
            if var in env:
                check_finite(var.owner, var, np.asarray(env[var]))

    def ran(self, variant):
        """Record which variant (0 serial, 1 parallel) the kernel runs, for ``fn.kernels``
        (an epilogue's choice is its GEMM kernel's too)."""
        for kernel in self.records:
            kernel.ran_parallel = bool(variant)

    def variant(self, rows, cols):
        """(dispatcher, leading arguments ``R, C, n_chunks``) of a generated kernel over
        ``rows`` x ``cols``: the parallel variant only where it pays (``threads``)."""
        parallel = threads.use_parallel(rows * cols, rows)
        self.kernel.ran_parallel = parallel
        return (self.parallel if parallel else self.serial), [rows, cols, threads.chunks(rows) if parallel else 1]


CPU_LOWERINGS = Lowerings("cpu kernel lowering")


# ------------------------------------------------------------------ fused loops
class FusedStep(Step):
    """A generated kernel over the (rows, columns) of its domain."""

    kind = "fused"

    def __init__(self, planned, source, module, kernel, program_name="function"):
        super().__init__(planned, kernel, program_name)
        self.group = planned.group
        self.source = source
        self.serial = module.kernel_serial
        self.parallel = module.kernel_parallel
        self.domain_var = planned.domain_var
        #: check_numerics: set by the kernel when a value it computed is NaN or Inf
        self.flags = np.zeros(1, np.uint8) if source.flagged else None

    def check_numerics(self, env):
        found = self.first_non_finite(env)
        if found:
            node, var, what = found
            raise NumericsError(f"check_numerics: {what} in the output of {node.op} ({var.describe()}), "
                                f"built at {node.source}")

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

    def wanted(self, frame):
        """(rows, cols) of the domain, and (variable, the shape the kernel takes it in) per argument."""
        rows, cols = rows_cols(frame.shapes[self.domain_var])
        views = {"full2d": (rows, cols), "cols": (cols,), "rows": (rows,), "one": (1,)}
        wanted = [(var, views[view]) for var, view in self.source.inputs]
        wanted += [(var, (rows, cols)) for var in self.source.outputs]
        wanted += [(var, (-1,)) for var in self.source.reduced + self.source.epilogue_outputs]
        return rows, cols, wanted

    def calls(self, frame):
        if self.flags is not None:   # check_numerics: the step-by-step path resets and reads the flag
            return None
        rows, cols, wanted = self.wanted(frame)
        launch, head = threads.measured_kernel(self.serial, self.parallel, rows, cols, self.ran)
        return [Call(launch, head + [Ref(var, shape) for var, shape in wanted])]

    def bind(self, frame):
        rows, cols, wanted = self.wanted(frame)
        args, changing = frame.arguments(wanted)
        if self.flags is not None:
            args.append(self.flags)
        kernel, head = self.variant(rows, cols)
        flags = self.flags

        def arguments(env):
            for k, var, shape in changing:
                args[k] = env[var].reshape(shape)
            return (*head, *args)

        def call(env):
            for k, var, shape in changing:
                args[k] = env[var].reshape(shape)
            if flags is not None:
                flags[:] = 0
            call_kernel(kernel, *head, *args)
        return KernelCall(self, frame, kernel, arguments, call, self.reference)

    def reference(self, env):
        """The kernel's work done by its nodes' NumPy references, into the buffers the kernel writes.

        Every value is computed before any buffer is written, so an output
        sharing a buffer with an input (the memory plan reuses them) reads the
        input first, as the kernel does element by element."""
        values = {}
        with np.errstate(all="ignore"):   # the kernels' error model: inf and nan, no warning
            for node in self.group.nodes:
                try:
                    results = node.op.perform([values[v] if v in values else env[v] for v in node.inputs])
                except Exception as exc:  # noqa: BLE001 - re-raised with the node's provenance
                    node_error(node, exc)
                for var, value in zip(node.outputs, results):
                    values[var] = np.asarray(value, dtype=var.dtype)
        if self.flags is not None:   # check_numerics: as the kernel flags a non-finite value it computed
            self.flags[0] = any(non_finite(values[n.outputs[0]]) for n in self.source.flagged)
        for var in self.source.outputs + self.source.reduced + self.source.epilogue_outputs:
            env[var][...] = values[var].reshape(env[var].shape)


def fused_step(planned, program, name, step_class=None):
    """A loop kernel's step (``step_class``, a :class:`FusedStep` by default): its source
    generated, loaded from the cache or compiled."""
    source = render.FusedKernelSource(planned, check_numerics=program.check_numerics,
                                      in_place=[v for v in planned.outputs if v in program.in_place])
    module = program.load(source.body)
    kernel = kernel_record(planned, name, source=annotate(named_source(source.body, source), planned.nodes),
                           compiled=module.kernel_serial, compiled_parallel=module.kernel_parallel)
    return (step_class or FusedStep)(planned, source, module, kernel, program.name)


@CPU_LOWERINGS.register(LoopKernel)
def lower_loop(planned, program, index):
    if planned.domain == ():
        # 0-d values: a compiled kernel would cost more to compile (~0.3 s) than NumPy to run (~1 us).
        label = ", ".join(planned.ops)
        return host_step(planned, program, index,
                         f"# NumPy reference of {label} (0-d values: not worth a compiled kernel)", f"k{index}_scalar")
    return fused_step(planned, program, f"k{index}_fused")


# ------------------------------------------------------------------------ GEMMs
class GemmStep(Step):
    """``np.dot`` into a preallocated buffer (one BLAS call, transposes as flags), then the epilogue loop.

    The plan fused the epilogue into the product; on the CPU it runs as a
    second loop over the product. A product with a shallow inner dimension (a
    weight gradient ``x.T @ dz`` at a small batch) whose elementwise epilogue is an
    optimizer update may instead run in panels of ``PANEL_ROWS`` rows, the
    epilogue taking each panel while it is in cache (the whole product never
    reaches memory); the two ways are measured against each other per frame.
    """

    kind = "blas"

    def __init__(self, planned, kernel, epilogue=None):
        super().__init__(planned, kernel)
        self.dot, self.epilogue = planned.dot, epilogue
        if epilogue is not None:
            epilogue.records.append(kernel)

    def hold_compiles(self, hold):
        super().hold_compiles(hold)
        if self.epilogue is not None:
            self.epilogue.hold_compiles(hold)

    def dims(self, frame):
        """(m, n, k) of the product at this frame's shapes."""
        shape_a, shape_b = frame.shapes[self.dot.inputs[0]], frame.shapes[self.dot.inputs[1]]
        return (shape_a[0] if len(shape_a) == 2 else 1), (shape_b[1] if len(shape_b) == 2 else 1), shape_a[-1]

    def calls(self, frame):
        p = self.planned
        epilogue = []
        if self.epilogue is not None:
            epilogue = self.epilogue.calls(frame)
            if epilogue is None:
                return None
        operands = [Ref(p.a, transpose=p.trans_a), Ref(p.b, transpose=p.trans_b), Ref(p.product)]
        product = self.product_call(frame, operands)
        whole = [product] + epilogue
        if not self.takes_panels(frame, epilogue):
            return whole
        # Both ways as one call: the product in panels of rows, each taken by the epilogue while
        # in cache, or the whole product then the epilogue; measured, the panels as the serial one.
        epilogue_args = epilogue[0].args
        n_operands, library = len(operands), product.args[len(operands):]
        # The panels run the epilogue's serial kernel, which the first calls may not have
        # compiled (they ran the parallel one): until it is loaded, the whole product runs.
        n_kernel_args = len(self.epilogue.source.inputs) + len(self.epilogue.source.outputs)
        serial = CompiledVariants([(self.epilogue.serial, (PANEL_ROWS, frame.shapes[p.product][1], 1))])

        def in_whole(*args):
            product.fn(*args[:n_operands], *library)
            epilogue[0].fn(*args[n_operands:])

        def ready(*args):
            return [0, 1] if serial(*args[len(args) - n_kernel_args:]) else [1]

        panelled = panel_launch(self.epilogue, p.product, *frame.shapes[p.product], self.python_multiply(frame))
        return [Call(threads.MeasuredChoice([panelled, in_whole], ready=ready), operands + epilogue_args,
                     compiled=None)]

    def product_call(self, frame, operands):
        """The product's Call. One small enough to stay on one BLAS thread (``measured_blas``)
        between 2-d arrays also runs inside compiled code (a driver, a compiled loop), as
        ``blas_symbols.gemm_into(a, b, out, library)``: ``library`` (its last argument, a
        ``blas_symbols.Library``, an integer of the compiled code) is the OpenBLAS build
        measured faster at its shape. From Python it runs on NumPy's (:meth:`python_multiply`)
        whatever ``library`` says: SciPy's would be ``gemm_into`` called from Python, compiled
        for the operands' layout in line."""
        p = self.planned
        m, n, k = self.dims(frame)
        if not p.blas_ready:
            return Call(threads.measured_blas(m, n, k, dot_into, self.kernel.background), operands, compiled=None)
        multiply = self.python_multiply(frame)
        launch = threads.measured_blas(m, n, k, multiply, self.kernel.background)
        if not getattr(launch, "single_thread", False):
            return Call(launch, operands, compiled=None)
        if not self.between_matrices(frame):
            return Call(launch, operands, compiled=np.dot)   # a matrix-vector product: Numba's np.dot
        library = blas_symbols.Library(m, n, k, p.product.dtype, p.trans_a, p.trans_b)
        return Call(threads.measured_blas(m, n, k, WITH_LIBRARY[multiply]), operands + [library],
                    compiled=blas_symbols.gemm_into)

    def between_matrices(self, frame):
        """Whether both operands and the product are 2-d at this frame's shapes."""
        p = self.planned
        return all(len(frame.shapes[var]) == 2 for var in (p.a, p.b, p.product))

    def python_multiply(self, frame):
        """``np.dot`` or ``np.matmul``, what the product runs from Python (:func:`python_product`)."""
        return python_product(self.planned.trans_a, self.between_matrices(frame))

    def takes_panels(self, frame, epilogue_calls):
        """Whether the product may run in panels of rows, each followed by the epilogue on it.

        The epilogue must be elementwise over the product's rows (no column or total
        reduction, no flat element index: a dropout counter) and the product scratch (only
        the epilogue reads it); the product's inner dimension at most ``PANEL_MAX_K``: with a
        deep one, BLAS runs a panel less efficiently than the whole (measured: k = 16 gained
        22%, k = 128 lost 8-30%)."""
        p, epilogue = self.planned, self.epilogue
        if epilogue is None or not p.blas_ready or p.product not in self.scratch:
            return False
        source = epilogue.source
        m, n, k = self.dims(frame)
        return (not source.reduced and not source.epilogue_outputs and k <= PANEL_MAX_K
                and m >= 4 * PANEL_ROWS and not any(nd.op.uses_element_index for nd in epilogue.group.nodes)
                and len(epilogue_calls) == 1)

    def bind(self, frame):
        p = self.planned
        m, n, k = self.dims(frame)
        (a, b, out), changing = frame.arguments([(p.a, None), (p.b, None), (p.product, None)])
        epilogue = self.epilogue.bind(frame) if self.epilogue is not None else None
        if self.epilogue is not None:   # the variant the epilogue runs is this kernel's (fn.kernels)
            self.kernel.ran_parallel = self.epilogue.kernel.ran_parallel
        trans_a, trans_b, blas_ready, product = p.trans_a, p.trans_b, p.blas_ready, p.product
        multiply = self.python_multiply(frame)
        args = [a, b, out]

        def call(env):
            for i, var, _ in changing:
                args[i] = env[var]
            left, right, target = args
            threads.blas_threads(m, n, k)
            if blas_ready:
                multiply(left.T if trans_a else left, right.T if trans_b else right, out=target)
            else:
                target[...] = np.dot(left.T if trans_a else left, right.T if trans_b else right)
            env[product] = target
            if epilogue is not None:
                epilogue(env)
        return call

    def check_numerics(self, env):
        check_finite(self.dot, self.planned.product, env[self.planned.product])
        if self.epilogue is not None:
            self.epilogue.check_numerics(env)


#: rows of a product per panel: 32 rows of 1024 float32 (128 KiB), with the rows of the two
#: arrays an optimizer update reads and writes, stay in a 512 KiB L2 (64 rows did not)
PANEL_ROWS = 32
#: products with a deeper inner dimension run whole (see ``GemmStep.takes_panels``)
PANEL_MAX_K = 64


def panel_launch(epilogue, product, rows, cols, multiply=np.dot):
    """``launch(a, b, product buffer, *epilogue arguments)``: the product ``PANEL_ROWS`` rows at a
    time (``multiply``: see :func:`python_product`) on one BLAS thread into the buffer's first
    rows, the epilogue's serial kernel on each panel while it is in cache (the rest of the
    buffer is never written).

    The epilogue's arguments are its :meth:`FusedStep.calls` arguments after the leading
    integers: its inputs (the product among them), then its outputs; those with a row per
    product row ("full2d" and "rows" views, the outputs) are sliced to the panel's rows."""
    source = epilogue.source
    views = [view for _, view in source.inputs] + ["full2d"] * len(source.outputs)
    is_product = [var is product for var, _ in source.inputs] + [False] * len(source.outputs)
    per_row = [k for k, view in enumerate(views) if view in ("full2d", "rows") and not is_product[k]]
    products = [k for k, is_it in enumerate(is_product) if is_it]
    kernel = epilogue.serial
    bounds = [(i, min(rows, i + PANEL_ROWS)) for i in range(0, rows, PANEL_ROWS)]

    def launch(a, b, buffer, *args):
        args = list(args[len(args) - len(views):])   # without the measured kernel's leading integers
        whole = list(args)
        threads.use_one_blas_thread()
        for start, stop in bounds:
            panel = buffer[:stop - start]
            multiply(a[start:stop], b, out=panel)
            for k in per_row:
                args[k] = whole[k][start:stop]
            for k in products:
                args[k] = panel
            kernel(stop - start, cols, 1, *args)
    return launch


def python_product(trans_a, matrices=True):
    """What a product runs from Python: ``np.matmul`` for matrices whose left operand is
    transposed (a weight gradient ``x.T @ dz``), else ``np.dot``; both on NumPy's BLAS.

    With ``out=`` and a transposed left operand, ``np.dot`` makes an extra pass over its
    output (one thread: 784x16 @ 16x1024 743 against 531 us, 1024x128 @ 128x1024 2236
    against 2049 us, 784x20 @ 20x500 209 against 179 us); elsewhere ``np.matmul`` was
    0-3% slower (its ufunc dispatch)."""
    return np.matmul if trans_a and matrices else np.dot


def numpy_dot(a, b, out, library):
    """``np.dot(a, b, out=out)``: a product's Python call, beside the ``library`` its compiled call takes."""
    np.dot(a, b, out=out)


def numpy_matmul(a, b, out, library):
    """``np.matmul(a, b, out=out)``, for a transposed left operand (see :func:`python_product`)."""
    np.matmul(a, b, out=out)


#: the Python call of a product that also takes its compiled call's ``library``, by what it multiplies with
WITH_LIBRARY = {np.dot: numpy_dot, np.matmul: numpy_matmul}


def dot_into(a, b, out):
    """``out[...] = a @ b`` where ``out`` cannot take BLAS's result directly."""
    out[...] = np.dot(a, b)


@CPU_LOWERINGS.register(GemmKernel)
def lower_gemm(planned, program, index):
    a, b = (f"{v.describe()}{'.T' if t else ''}" for v, t in ((planned.a, planned.trans_a), (planned.b, planned.trans_b)))
    text = f"np.dot({a}, {b}, out={planned.product.describe()})"
    epilogue = None
    if planned.epilogue is not None:
        epilogue = fused_step(planned.epilogue, program, f"k{index}_epilogue")
        text += "\n# then the epilogue, on the product:\n" + epilogue.kernel.source
    kernel = kernel_record(planned, f"k{index}_gemm" + ("_epilogue" if epilogue else ""), is_blas=True, kind="blas",
                           source=text, compiled=epilogue.kernel.compiled if epilogue else None,
                           compiled_parallel=epilogue.kernel.compiled_parallel if epilogue else None,
                           epilogue=epilogue.kernel if epilogue else None)
    return GemmStep(planned, kernel, epilogue)


# -------------------------------------------------------------------- row-wise
class RowwiseStep(Step):
    """A row-wise template (softmax, log-softmax, cross-entropy, ...) over the rows of a matrix,
    or the template of a joined pair (the loss and its gradient in one pass)."""

    kind = "rowwise"

    def __init__(self, planned, module, kernel, program_name="function"):
        super().__init__(planned, kernel, program_name)
        self.node = planned.node
        self.serial, self.parallel = module.kernel_serial, module.kernel_parallel

    def calls(self, frame):
        shapes = frame.shapes
        rows, cols = shapes[self.planned.rows_var]
        launch, head = threads.measured_kernel(self.serial, self.parallel, rows, cols, self.ran)
        run = [Call(launch, head + [Ref(v) for v in self.planned.arguments])]
        checks = []
        for node in self.nodes if self.may_fail else ():   # a joined kernel: each node's labels
            checked = node.op.checked_inputs
            if checked:
                checks.append(Call(self._check_of(node, checked, [shapes[v] for v in node.inputs]),
                                   [Ref(node.inputs[i]) for i in checked]))
        return checks + run

    @staticmethod
    def _check_of(node, checked, input_shapes):
        def check(*values):   # values the graph computed (fed ones were checked up front)
            node.op.check_values(node, dict(zip(checked, values)), input_shapes)
        return check

    def bind(self, frame):
        shapes = frame.shapes
        rows, cols = shapes[self.planned.rows_var]
        arguments = self.planned.arguments
        # values the graph computed are checked here (fed ones were checked up front)
        checks = [(node, {i: arguments.index(node.inputs[i]) for i in node.op.checked_inputs},
                   [shapes[v] for v in node.inputs]) for node in self.nodes] if self.may_fail else []
        args, changing = frame.arguments([(v, None) for v in arguments])
        kernel, head = self.variant(rows, cols)

        def arguments(env):
            for i, var, _ in changing:
                args[i] = env[var]
            return (*head, *args)

        def call(env):
            for i, var, _ in changing:
                args[i] = env[var]
            for node, positions, input_shapes in checks:
                node.op.check_values(node, {i: args[k] for i, k in positions.items()}, input_shapes)
            call_kernel(kernel, *head, *args)

        def reference(env):
            """The NumPy tier: each node's reference (a joined loss and gradient: both), with
            the same checks, every value computed before any output buffer is written."""
            results = []
            for node, positions, input_shapes in checks:
                node.op.check_values(node, {i: env[node.inputs[i]] for i in positions}, input_shapes)
            with np.errstate(all="ignore"):
                for node in self.nodes:
                    try:
                        results.append((node.outputs[0], node.op.perform([env[v] for v in node.inputs])[0]))
                    except Exception as exc:  # noqa: BLE001 - re-raised with the node's provenance
                        node_error(node, exc)
            for var, value in results:
                env[var][...] = value
        return KernelCall(self, frame, kernel, arguments, call, reference)


@CPU_LOWERINGS.register(RowwiseKernel)
def lower_rowwise(planned, program, index):
    template = render.ROWWISE_TEMPLATES[planned.template_key]
    module = program.load(template.body)
    kernel = kernel_record(planned, f"k{index}_{template.name}", source=annotate(template.body, planned.nodes),
                           compiled=module.kernel_serial, compiled_parallel=module.kernel_parallel, kind="rowwise")
    return RowwiseStep(planned, module, kernel, program.name)


# ------------------------------------------------------------ NumPy: views, host
class HostStep(Step):
    """Nodes run by their ops' NumPy ``perform``, in order.

    Used for views (free in NumPy), for ops without a kernel, and for fused
    groups over 0-d values, where a compiled kernel would cost more to compile
    than NumPy costs to run.
    """

    kind = "host"
    needs_buffers = False   # perform makes its own arrays

    def __init__(self, planned, kernel, kind="host"):
        super().__init__(planned, kernel)
        self.kind = kind
        self._compiled = None   # the compiled kernel of a 0-d group, made for a driver

    def run(self, env, buffers, shapes):
        for node in self.nodes:
            for var, value in zip(node.outputs, perform(node, [env[v] for v in node.inputs])):
                env[var] = value

    def calls(self, frame):
        return [Call(_performer(node), [Ref(v) for v in node.inputs], tuple(node.outputs)) for node in self.nodes]

    def compiled_step(self, program):
        if not (isinstance(self.planned, LoopKernel) and self.planned.domain == ()):
            return self
        if self._compiled is None:
            self._compiled = fused_step(self.planned, program, self.kernel.name + "_compiled")
        return self._compiled


def perform(node, values):
    """``node``'s outputs by its op's NumPy reference, as arrays of their dtypes; errors name the node."""
    try:
        results = node.op.perform(values)
    except Exception as exc:  # noqa: BLE001 - re-raised with the node's provenance
        node_error(node, exc)
    return tuple(np.asarray(value, dtype=var.dtype) for var, value in zip(node.outputs, results))


def _performer(node):
    return lambda *values: perform(node, list(values))


def host_step(planned, program, index, source, name=None, kind="host"):
    kernel = kernel_record(planned, name or f"k{index}_{planned.nodes[0].op.name}", kind=kind, source=source)
    return HostStep(planned, kernel, kind)


@CPU_LOWERINGS.register(ViewKernel)
def lower_view(planned, program, index):
    return host_step(planned, program, index, f"# NumPy view: {planned.node.op}", kind="view")


@CPU_LOWERINGS.register(HostKernel)
def lower_host(planned, program, index):
    return host_step(planned, program, index, f"# NumPy reference of {', '.join(planned.ops)}")


# The convolution family's lowerings live in their own module; importing it registers them.
from graphnet.compiler.runtime import conv_steps  # noqa: E402,F401
