"""A loop (``scan``) as one compiled Numba function over its steps.

The body is a program of its own (``scan_steps.py``). For one frame of it (the
shapes of one step) this module writes a function that loops over time and, at
every step, calls the body's compiled kernels and its products
(``blas_symbols.gemm_into``, on the BLAS measured faster at each shape) on the body
frame's planned buffers, exactly as a frame's driver (``driver.py``) calls a
step's kernels: the same :class:`~graphnet.compiler.runtime.driver.DriverSource`
writes the calls from the steps' ``Call`` lists. Around them the loop adds:

- the step's inputs as views, never copies: ``x_t = q0[t]`` for a sequence,
  ``s0[L + i + tap]`` for a state's tap (``(L + i + tap) % (L + 1)`` in a
  window of ``L + 1`` slots when only its last values are kept); a 0-d value
  (a random stream's step counter) as a 1-element view ``q0[t:t + 1]``, since
  Numba indexes a 0-d slot as a scalar, not an array;
- the body's NumPy steps (gate views ``z[:, :H]``, reshapes, slice
  accumulation) as lines of ``njit`` code (``loop_views.py``);
- the new states written into their slots of the state buffers, and the
  stacked outputs into row ``t`` of their stacks (the ``prune_loops`` pass has
  dropped those nothing outside the loop reads).

The body's kernels are called through ``loop_callees.inlined``: Numba inlines
their code into the loop instead of compiling each on its own and linking it.

The text depends on the loop's structure only (lengths come from the int64
array ``n``, as in a driver), so one compile serves every batch size, and
Numba's disk cache serves the next process. ``write_loop`` raises
:class:`~graphnet.compiler.runtime.loop_views.NotInLoop` when the body holds
something this cannot express; the loop then stays on the host.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from graphnet.compiler.runtime import blas_symbols, cache, small_gemm
from graphnet.compiler.runtime.driver import DriverSource
from graphnet.compiler.runtime.entry import EntryWriter, NotExpressible, Ref
from graphnet.compiler.runtime.loop_views import LOOP_VIEWS, NotInLoop
from graphnet.compiler.runtime.steps import HostStep

INDENT = " " * 8


class LoopSource(DriverSource):
    """The loop function's text: the driver's calls, plus names for the values made inside the loop.

    ``inner`` maps a body variable made inside the loop (a step's input, a view)
    to its local name; every other value is an array of the body's frame,
    passed in as a parameter (``a1``, ``a2``...), as a driver's are.
    """

    def __init__(self, writer):
        super().__init__()
        self.writer = writer
        self.inner = {}
        self.strided = set()
        #: 0-d step values, held inside the loop as 1-element arrays (Numba indexes a 0-d slot as a scalar)
        self.one_element = set()
        #: arrays of the body frame that a call's env would hold (fresh outputs), made once here
        self.fixed = {}
        #: body output -> (position, array, index) of its place (``_output_places``), and those
        #: written there in place: {variable: position}
        self.places, self.direct = {}, {}
        self.notes = []     # (line index, comment) shown in the listing, not compiled
        self.helpers = {}   # name -> source of the copy helpers the loop calls
        #: stacked output -> the earlier one holding the same value: one array serves both
        self.stack_aliases = {}
        #: lines run once before the loop: C-ordered copies of transposed loop-invariant operands
        self.before = []
        self._transposed = {}   # non-sequence -> the name of its C-ordered transpose
        self.invariant = set()  # the body's non-sequences: the same array at every step
        self._locals = 0

    # -- what loop_views.py writes with
    def shape(self, var):
        return self.writer.frame.shapes[var]

    def is_strided(self, var):
        return var in self.strided

    def value(self, var):
        return self.argument(self.writer, Ref(var))

    def line(self, text, node=None):
        self.lines.append(INDENT + text)
        if node is not None:
            self.notes.append((len(self.lines) - 1, f"{node.op} -> {node.outputs[0].describe()}"))

    def define(self, var, text, strided=False, node=None):
        """``var`` made inside the loop as ``text`` (a view; ``node`` computes it); returns its local name."""
        if text.isidentifier():   # an alias of a value that already has a name
            self.inner[var] = text
        else:
            name = self.inner[var] = f"v{self._locals}"
            self._locals += 1
            self.line(f"{name} = {text}", node)
        if strided:
            self.strided.add(var)
        return self.inner[var]

    def copy(self, target, value, ndim, node=None, add=False):
        """A line copying (or adding, ``add``) the array ``value`` into ``target`` of its shape,
        through a helper of explicit loops: Numba compiles array assignment between views
        (``a[i] = b``, ``a[:, k:m] += b``) through its broadcasting machinery, which cost
        ~2 s of a cold loop's compile against ~0.3 s for the helpers."""
        name = f"{'add' if add else 'copy'}_{ndim}d"
        self.helpers.setdefault(name, elementwise_helper(name, ndim, "+=" if add else "="))
        self.line(f"{name}({target}, {value})", node)

    def scratch(self, var):
        """Where a view line writes ``var``: its place in the loop's arrays when it is a body
        output not written in place yet (``_direct_outputs``), else a parameter, an array of its
        shape allocated once for this body frame."""
        if var in self.places and var not in self.direct:
            position, array, index = self.places[var]
            return self._bind_place(var, position, array, index)
        return self.parameter(self.writer.constant(np.empty(self.shape(var), var.dtype)))

    def _bind_place(self, var, position, array, index):
        name = self.inner[var] = f"y{len(self.direct)}"
        self.line(f"{name} = {array}[{index}]")
        self.notes.append((len(self.lines) - 1, f"{var.describe()}, written in place"))
        self.direct[var] = position
        return name

    # -- the driver's argument, for values made inside the loop
    def argument(self, writer, arg):
        if isinstance(arg, Ref) and arg.var in self.fixed:
            array = self.fixed[arg.var]
            view = array.reshape(arg.shape) if arg.shape is not None else array
            return self.parameter(writer.constant(view)) + (".T" if arg.transpose else "")
        if isinstance(arg, Ref) and arg.var in self.inner:
            text = self.inner[arg.var]
            held = (1,) if arg.var in self.one_element else self.shape(arg.var)
            if arg.var in self.one_element and arg.shape is None:
                raise NotInLoop(f"a step reads the 0-d value {arg.var.describe()} as a 0-d array")
            if arg.shape is not None and tuple(arg.shape) != held:
                if arg.var in self.strided:
                    raise NotInLoop(f"a kernel reads the strided view {arg.var.describe()} reshaped")
                text += f".reshape(({''.join(f'{self.integer(d)}, ' for d in self._lengths(arg))}))"
            return text + (".T" if arg.transpose else "")
        return super().argument(writer, arg)

    def transposed_once(self, var):
        """The name of a C-ordered copy of ``var.T`` made once before the loop, for a
        non-sequence (``w{k}``) that a product reads transposed at every step (W7's backward
        ``dz @ U.T``): OpenBLAS reads a transposed right operand slower (one thread, 32x512 @
        512x128: 46-60 us on ``U.T`` against 40-42 us on its copy), and the copy (a 128x512
        weight: ~10 us) is made once per call, not per step."""
        name = self._transposed.get(var)
        if name is None:
            name = self._transposed[var] = f"{self.inner[var]}_t"
            self.before.append(f"    {name} = np.ascontiguousarray({self.inner[var]}.T)")
        return name

    def _lengths(self, arg):
        """``arg.shape`` with a ``-1`` resolved from the value's size (the lengths are the loop's ints)."""
        size = int(np.prod((1,) if arg.var in self.one_element else self.shape(arg.var), dtype=np.int64))
        known = int(np.prod([d for d in arg.shape if d != -1], dtype=np.int64))
        return tuple(size // max(known, 1) if d == -1 else d for d in arg.shape)

    def listing(self, head, tail):
        """The source as users read it: the compiled text with a comment per line that computes a node."""
        notes = dict(self.notes)
        body = [line + (f"  # {notes[i]}" if i in notes else "") for i, line in enumerate(self.lines)]
        return "\n".join(head + body + tail)


def elementwise_helper(name, ndim, assign):
    """``name(dst, src)``: ``dst[...] {assign} src`` over ``ndim`` axes of equal lengths, as loops."""
    lines = ["@numba.njit(cache=True, nogil=True, error_model=\"numpy\")", f"def {name}(dst, src):"]
    d, s = "dst", "src"
    for axis in range(ndim):
        pad = "    " * (axis + 1)
        lines.append(f"{pad}for i{axis} in range(src.shape[{axis}]):")
        if axis < ndim - 1:
            lines.append(f"{pad}    d{axis} = {d}[i{axis}]")
            lines.append(f"{pad}    s{axis} = {s}[i{axis}]")
            d, s = f"d{axis}", f"s{axis}"
    lines.append(f"{'    ' * (ndim + 1)}{d}[i{ndim - 1}] {assign} {s}[i{ndim - 1}]")
    return "\n".join(lines) + "\n"


class LoopProgram:
    """One body frame's compiled loop: the module's ``loop``, the arguments fixed for the frame,
    ``stack_aliases`` ({stacked output: the earlier one it shares its array with}), and
    whether it multiplies."""

    def __init__(self, function, fixed, source, listing, stack_aliases, multiplies):
        self.function, self.fixed = function, fixed
        self.source, self.listing = source, listing
        self.stack_aliases = stack_aliases
        self.multiplies = multiplies   # whether the body runs matrix products (on one BLAS thread)


def write_loop(op, body, frame, load):
    """The compiled loop of ``op`` (a Scan) whose ``body`` program runs on ``frame``;
    ``load(source)`` imports the module. Raises NotInLoop with the reason it cannot be one."""
    if body.fgraph.updates or body.in_place:
        raise NotInLoop("the body updates shared variables")
    if frame.index_checks is not None or body.distinct_value_checks:
        raise NotInLoop("the body checks values at every step (symbolic bounds, labels)")
    writer = EntryWriter(frame)
    loop = LoopSource(writer)
    for var, shape in frame.fresh:   # written by a kernel at every step, copied out by the loop
        loop.fixed[var] = np.empty(shape, var.dtype)
    _step_inputs(op, loop)
    direct = _direct_outputs(op, body.fgraph.outputs, loop)
    for index, step in enumerate(body.steps):
        _write_step(index, step, body, loop, writer)
    _step_outputs(op, body.fgraph.outputs, loop, direct)
    params = (["steps"] + [f"q{k}" for k in range(op.n_seqs)] + [f"s{k}" for k in range(op.n_states)]
              + [f"o{k}" for k in range(op.n_stacked)] + [f"w{k}" for k in range(op.n_nonseqs)] + loop.params)
    t = "steps - 1 - i" if op.reverse else "i"
    imports = "".join(_import_line(module, name, alias) for (module, name), alias in loop.imports.items())
    helpers = "".join(f"\n{text}\n" for _, text in sorted(loop.helpers.items()))
    top = [f"import numba\nimport numpy as np\nfrom graphnet.compiler.runtime.cache import sibling_module\n"
           f"from graphnet.compiler.runtime.loop_callees import inlined\n{loop.blas_note()}\n{imports}"
           f"{helpers}\n",
           "@numba.njit(cache=True, nogil=True, error_model=\"numpy\")",
           f"def loop({', '.join(params)}):",
           *loop.before,
           "    for i in range(steps):",
           f"        t = {t}"]
    compiled = "\n".join(top + loop.lines) + "\n"
    module = load(compiled)
    values = [np.array(loop.ints, np.int64)] + [writer.names[text] for text in loop.values[1:]]
    shown = (f"# {op}: {op.n_seqs} sequences (q), {op.n_states} states (s), {op.n_stacked} stacked "
             f"outputs (o), {op.n_nonseqs} non-sequences (w); the body frame's arrays a1.., lengths n[..]\n"
             + loop.listing(top, []))
    return LoopProgram(module.loop, values, compiled, shown, loop.stack_aliases, loop.multiplies())


def _import_line(module, name, alias):
    """The line binding ``alias`` to the function the loop calls: graphnet's own (``gemm_into``)
    by import, a generated kernel module's from its file beside the loop's (``sibling_module``),
    inlined into the loop (``loop_callees.inlined``)."""
    if module.startswith("graphnet."):
        return f"from {module} import {name} as {alias}\n"
    return f"{alias} = inlined(sibling_module(__file__, {_file_of(module)!r}).{name})\n"


def _file_of(module_name):
    """The cache entry's file name of a generated kernel module (``k_<key>.py``)."""
    path = getattr(sys.modules[module_name], "__file__", None)
    if path is None or cache.module_name_of(path) != module_name:
        raise NotInLoop(f"the body calls {module_name}, which is not a generated kernel module")
    return os.path.basename(path)


def _step_inputs(op, loop):
    """Lines binding the body's inputs for step ``i`` (time ``t``): views of the loop's arrays."""
    seqs, taps, nonseqs = op.inner_inputs()

    def bind(var, array, index):
        name = loop.inner[var] = f"x{len(loop.inner)}"
        if loop.shape(var):
            loop.line(f"{name} = {array}[{index}]")
        else:   # a 0-d value: a 1-element view (indexing would give a scalar)
            loop.line(f"{name} = {array}[{index}:{index} + 1]")
            loop.one_element.add(var)
        loop.notes.append((len(loop.lines) - 1, var.describe()))

    for k, var in enumerate(seqs):
        bind(var, f"q{k}", "t")
    for j, (state, offsets, lag, last) in enumerate(zip(taps, op.state_taps, op.lags, op.last_only)):
        for var, tap in zip(state, offsets):
            bind(var, f"s{j}", _slot(lag + tap, lag, last))
    for k, var in enumerate(nonseqs):
        loop.inner[var] = f"w{k}"   # a 0-d one is passed as a 1-element array (LoopRunner)
        loop.invariant.add(var)
        if not loop.shape(var):
            loop.one_element.add(var)


def _slot(offset, lag, last_only):
    """The slot of ``L + i + tap`` (``offset`` = L + tap) in a state buffer: all ``L + n`` values,
    or a window of ``L + 1`` (its last values only)."""
    index = f"i + {offset}" if offset else "i"
    return f"({index}) % {lag + 1}" if last_only else index


def _write_step(index, step, body, loop, writer):
    compiled = step.compiled_step(body)
    if compiled is not step:   # a 0-d group, compiled now: its outputs get arrays of the frame
        for var in compiled.writes:
            loop.fixed[var] = np.empty(writer.frame.shapes[var], var.dtype)
    loop.lines.append(f"{INDENT}# {step.kernel.name}: {', '.join(step.kernel.ops)}")
    if isinstance(compiled, HostStep):
        for node in compiled.nodes:
            write = LOOP_VIEWS.find(type(node.op))
            if write is None:
                raise NotInLoop(f"{node.op} ({node.outputs[0].describe()}) has no compiled form inside a loop")
            write(node, loop)
        return
    calls = compiled.calls(writer.frame)
    if calls is None:
        raise NotInLoop(f"step {step.kernel.name} has no calls (it checks numerics, or binds in Python)")
    for call in calls:
        if call.results or call.compiled is None:
            raise NotInLoop(f"step {step.kernel.name} runs Python (a measured thread choice, a check)")
        try:
            small = _small_rows_arguments(call, loop, writer)
            if small is not None:   # a per-step product with few rows: graphnet's kernel (small_gemm.py)
                args, fn = ", ".join(small), loop.function(small_gemm.small_gemm_into)
            else:
                args = ", ".join(_product_arguments(call, loop, writer) or [loop.argument(writer, a) for a in call.args])
                fn = loop.function(call.compiled)
        except NotExpressible as exc:
            raise NotInLoop(f"step {step.kernel.name} reads a value the loop has no name for ({exc})") from None
        loop.line(f"{fn}({args})")


def _product_arguments(call, loop, writer):
    """A product's arguments with a transposed non-sequence right operand read from its C-ordered
    copy made before the loop (:meth:`LoopSource.transposed_once`), the library measured for that
    layout; None for any other call."""
    if call.compiled is not blas_symbols.gemm_into:
        return None
    a, b, out, library = call.args
    if not _read_from_copy(b, loop):
        return None
    m, n, k, dtype, trans_a, _ = library.shape
    return [loop.argument(writer, a), loop.transposed_once(b.var), loop.argument(writer, out),
            loop.argument(writer, blas_symbols.Library(m, n, k, dtype, trans_a, False))]


def _read_from_copy(b, loop):
    """Whether a product's right operand ``b`` is a transposed 2-d non-sequence, which the loop
    reads from its C-ordered copy made before the loop (:meth:`LoopSource.transposed_once`)."""
    return b.transpose and b.shape is None and b.var in loop.invariant and len(loop.shape(b.var)) == 2


def _small_rows_arguments(call, loop, writer):
    """``(a, b, out)`` of a product that :mod:`.small_gemm` takes inside the loop (float32, at most
    ``small_gemm.MAX_ROWS`` rows, ``b`` C-ordered or a transposed non-sequence read from its copy
    made before the loop); None for any other call. The weights stay in cache from step to step,
    where the kernel beats OpenBLAS's one thread (W7's 32x128 @ 128x512: 18 against 27-30 us)."""
    if call.compiled is not blas_symbols.gemm_into:
        return None
    a, b, out, library = call.args
    m, n, k, dtype, _, trans_b = library.shape
    copied = _read_from_copy(b, loop)
    if not small_gemm.wanted(m, n, k, dtype, trans_b and not copied):
        return None
    right = loop.transposed_once(b.var) if copied else loop.argument(writer, b)
    return [loop.argument(writer, a), right, loop.argument(writer, out)]


def _output_places(op):
    """(array, index) of each body output's place: a state's new slot, a stacked output's row ``t``."""
    places = [(f"s{j}", _slot(lag, lag, last)) for j, (lag, last) in enumerate(zip(op.lags, op.last_only))]
    return places + [(f"o{k}", "t") for k in range(op.n_stacked)]


def _direct_outputs(op, outputs, loop):
    """Body outputs that a kernel writes, bound to their places in the loop's arrays: the kernel
    writes the new state into its slot and a stacked value into row ``t`` itself, instead of
    into an array of the body frame that the loop then copies. Returns {variable: the output
    position it is written at}; a value output twice is copied from there to its other place."""
    for position, (var, (array, index)) in enumerate(zip(outputs, _output_places(op))):
        if var in loop.places or var in loop.inner or not loop.shape(var):
            continue   # output twice, a step's input, or 0-d: copied
        if var in loop.fixed:
            del loop.fixed[var]
            loop._bind_place(var, position, array, index)
        else:   # a view line may write it there (LoopSource.scratch)
            loop.places[var] = (position, array, index)
    return loop.direct


def _step_outputs(op, outputs, loop, direct):
    """Lines writing the step's results (``outputs``, the body program's, in the op's order)
    that no kernel wrote in place: the new states into their slots, the stacked outputs at ``t``."""
    loop.lines.append(f"{INDENT}# the new states, the stacked outputs")
    places = _output_places(op)

    def write(array, index, var):
        if direct.get(var) == places.index((array, index)):
            return   # the kernel wrote it there
        if loop.shape(var):
            loop.copy(f"{array}[{index}]", loop.value(var), len(loop.shape(var)))
        else:   # a 0-d value into a 1-element view of its slot
            loop.copy(f"{array}[{index}:{index} + 1]", loop.argument(loop.writer, Ref(var, (1,))), 1)

    for j, (lag, last) in enumerate(zip(op.lags, op.last_only)):
        write(f"s{j}", _slot(lag, lag, last), outputs[j])
    first_stack = {}
    for k in range(op.n_stacked):
        var = outputs[op.n_states + k]
        if var in first_stack:   # the same value stacked twice (a weight's and a bias's gradient read dz)
            loop.stack_aliases[k] = first_stack[var]
            continue
        first_stack[var] = k
        write(f"o{k}", "t", var)
