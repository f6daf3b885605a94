"""The compiled call path: one generated Python function per frame that runs the whole step.

A frame's first call runs the steps one by one (announcing and timing
compiles, repairing a corrupt cache); after it, every call with the same
input signature runs the frame's *entry*: straight-line Python generated from
the steps' :class:`Call` lists, with every array fixed for the frame (the
planned buffers, the constants, the kernels' row counts and thread choices)
bound as a name of the function's globals and every value that changes from
call to call (feeds, shared values, fresh outputs) a local. No dictionary of
values, no loop over steps, no per-step closure: the kernels are launched one
after another, each in a ``try`` that costs nothing until it raises.

What it keeps of the step-by-step path: the fed labels are checked before any
kernel runs, a kernel that raises is reported with its nodes' provenance (the
same errors), and updates are handed back to the caller, which commits them
only when the whole call succeeded.

Measured against a whole step compiled as one ``njit`` function (see
``docs/architecture.md``, the call path): generated Python is within a few
microseconds on the tiny steps, as fast at training shapes (BLAS dominates),
and costs nothing to build, where the ``njit`` driver costs a compile of its
own (seconds, cold) on every new model and every new frame.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
from numba.core.dispatcher import Dispatcher
from numba.core.errors import NumbaError

from graphnet.compiler.runtime.program import describe_nodes
from graphnet.compiler.runtime.provenance import node_error
from graphnet.errors import CompileError, GraphnetError


@dataclass(frozen=True)
class Ref:
    """An argument that is a graph variable's value: the array itself, reshaped, or transposed."""

    var: object
    shape: tuple = None      # reshape to this shape (None: as it is)
    transpose: bool = False


@dataclass
class Call:
    """``results = fn(*args)`` of one step, for the generated entry.

    ``args`` are :class:`Ref` (a variable's value) or plain values fixed for the
    frame; ``results`` are the variables ``fn`` returns (a tuple), if any; ``compiled``
    is what a compiled driver calls instead (``driver.py``): ``fn`` itself when it is a
    Numba dispatcher, ``blas_symbols.gemm_into`` (``np.dot`` for a matrix-vector product) for
    a product on one BLAS thread, None where only Python can run it (a NumPy fallback, a
    measured thread choice, a check).
    """

    fn: object
    args: list
    results: tuple = ()
    compiled: object = "fn"

    def __post_init__(self):
        if self.compiled == "fn":
            self.compiled = self.fn if isinstance(self.fn, Dispatcher) else None


class NotExpressible(Exception):
    """A step reads a value the entry has no name for."""


def failed(step, exc):
    """Re-raise ``exc``, from ``step``'s kernel, as the step-by-step path reports it."""
    if isinstance(exc, GraphnetError):
        raise exc
    if isinstance(exc, NumbaError):
        raise CompileError(f"Numba could not compile kernel {step.kernel.name} "
                           f"({describe_nodes(step.nodes)}): {exc}") from exc
    node_error(step.nodes[-1], exc)


class EntryWriter:
    """Writes a frame's entry: names for the frame's values and the calls' lines."""

    def __init__(self, frame):
        self.frame = frame
        self.names = {"failed": failed, "np_empty": np.empty, "np_copy": np.array, "getrefcount": sys.getrefcount}
        self.locals = {}      # variable -> local name
        self.lines = []

    def constant(self, value):
        name = f"c{len(self.names)}"
        self.names[name] = value
        return name

    def local(self, var):
        name = self.locals.get(var)
        if name is None:
            name = self.locals[var] = f"v{len(self.locals)}"
        return name

    def argument(self, arg):
        if not isinstance(arg, Ref):
            return self.constant(arg)
        fixed = self.frame.env.get(arg.var)
        shape = arg.shape
        if arg.var not in self.locals:
            if fixed is None:   # computed by nothing this entry runs: keep the step-by-step path
                raise NotExpressible(arg.var)
            # fixed for the frame: reshape once, here
            return self.constant(fixed.reshape(shape) if shape is not None else fixed) + (".T" if arg.transpose else "")
        text = self.locals[arg.var]
        if shape is not None and tuple(shape) != self.frame.shapes.get(arg.var):
            text += f".reshape({tuple(shape)!r})"
        return text + (".T" if arg.transpose else "")

    def step(self, index, step, calls):
        guard = self.constant(step)
        self.lines.append("    try:")
        for call in calls:
            args = ", ".join(self.argument(a) for a in call.args)
            target = ""
            if call.results:
                target = ", ".join(self.local(v) for v in call.results) + ", = "
            self.lines.append(f"        {target}{self.constant(call.fn)}({args})")
        self.lines.append(f"    except Exception as exc:  # step {index}: {step.kernel.name}")
        self.lines.append(f"        failed({guard}, exc)")


def head_lines(program, frame, writer):
    """The entry's first lines: the feeds and shared values as locals, the checks of fed
    values (index bounds, labels), fresh output arrays, updates written in place."""
    head = []
    for var in program.fed_inputs:
        head.append(f"    {writer.local(var)} = feeds[{writer.constant(var)}]")
    for var in program.shared_inputs:
        head.append(f"    {writer.local(var)} = {writer.constant(var)}._value")
    if frame.index_checks is not None:
        inputs, check = frame.index_checks
        head.append(f"    {writer.constant(check)}({', '.join(writer.locals[v] for v in inputs)})")
    for node, _ in program.distinct_value_checks:
        fed = {i: node.inputs[i] for i in node.op.checked_inputs if node.inputs[i] in writer.locals}
        if fed:
            values = "{" + ", ".join(f"{i}: {writer.locals[v]}" for i, v in fed.items()) + "}"
            shapes = writer.constant([frame.shapes[v] for v in node.inputs])
            head.append(f"    {writer.constant(node.op.check_values)}({writer.constant(node)}, {values}, {shapes})")
    for var, shape in frame.fresh:
        # An output handed to the caller is the caller's: the next call writes a new array,
        # except into the last one when nothing but this frame refers to it any more (the
        # caller dropped it). A large fresh array costs page faults on first touch: 5 ms of a
        # 20 ms 4096x4096 bias+ReLU backward. (References: the slot, the local, the call.)
        name, slot = writer.local(var), writer.constant([None])
        head += [f"    {name} = {slot}[0]",
                 f"    if {name} is None or getrefcount({name}) > 3:",
                 f"        {name} = {slot}[0] = np_empty({shape!r}, {writer.constant(np.dtype(var.dtype))})"]
    for expr, shared in program.in_place.items():
        source = writer.locals.get(shared)
        head.append(f"    {writer.local(expr)} = " + (source or f"{writer.constant(shared)}._value"))
    return head


def define(writer, name):
    """The function ``run(feeds)`` of the writer's lines; its text is ``run.source``."""
    source = "def run(feeds):\n" + "\n".join(writer.lines) + "\n"
    namespace = dict(writer.names)
    exec(compile(source, f"<graphnet entry of {name}>", "exec"), namespace)  # noqa: S102 - our own text
    run = namespace["run"]
    run.source = source
    return run


def write_entry(program, frame):
    """The entry ``run(feeds) -> (outputs, updates)`` of ``frame``, or None when a
    step cannot be expressed as calls (it then keeps the step-by-step path)."""
    writer = EntryWriter(frame)
    writer.lines.extend(head_lines(program, frame, writer))
    try:
        for index, step in enumerate(program.steps):
            calls = step.calls(frame)
            if calls is None:
                return None
            writer.step(index, step, calls)
        returned = return_line(program, writer)
    except NotExpressible:
        return None
    writer.lines.append(returned)
    return define(writer, program.name)


def return_line(program, writer):
    """The entry's return line: outputs (fresh arrays handed over, the rest copied) and updates."""
    outputs, handed = [], set()
    for var in program.fgraph.outputs:
        value = writer.argument(Ref(var))
        fresh = var in program.fresh_outputs and id(var) not in handed
        outputs.append(value if fresh else f"np_copy({value}, copy=True)")
        handed.add(id(var))
    updates = [writer.argument(Ref(expr)) if expr in program.in_place
               else f"np_copy({writer.argument(Ref(expr))}, copy=True)" for _, expr in program.fgraph.updates]
    return f"    return [{', '.join(outputs)}], [{', '.join(updates)}]"
