"""The CPU lowering of a loop (``scan``): its body compiled once, the loop over time compiled too.

The body is a graph like any function's: it goes through the same passes and
kernel plan and becomes a :class:`CpuProgram` (fused loops, BLAS calls with
their epilogues), built when the outer function is. For each frame of the body
(the shapes of one step) the step writes the loop itself as one Numba function
(``compiled_loop.py``): at every step it calls the body's kernels and
``np.dot`` on the body frame's buffers, with the gate views as strided slices,
and writes the new states and the stacked outputs into preallocated arrays. No
Python runs between two steps.

The host loop :func:`graphnet.ops.scan.run_loop` (shared with the reference
backend: it calls the body program once per step) stays for what the compiled
loop cannot express, each with its reason in ``fn.kernels[i].runs``: a body
step that runs Python (an op without a kernel or a loop view, a kernel large
enough that its thread choice is measured per call, ``check_numerics``), shapes
that depend on values or change from step to step (the host loop then raises
the error naming the scan). It also runs the first calls while the compiled loop compiles in
the background (``runtime/tiered.py``), and for good if Numba cannot compile it.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numba
import numpy as np

from graphnet.compiler.runtime import cache, split_loop, threads
from graphnet.compiler.runtime.batch_rows import split_refusal
from graphnet.compiler.runtime.compiled_loop import write_loop
from graphnet.compiler.runtime.entry import Call, Ref
from graphnet.compiler.runtime.loop_views import NotInLoop
from graphnet.compiler.runtime.program import MAX_FRAMES
from graphnet.compiler.runtime.steps import CPU_LOWERINGS, Kernel, Step, kernel_record
from graphnet.compiler.runtime.tiered import BackgroundCompile, CompileHold, say, tiered_enabled, wait_compiled
from graphnet.compiler.schedule.plan import ScanKernel
from graphnet.errors import GraphnetError
from graphnet.ops.scan import check_lengths, loop_outputs, run_loop, state_buffers, step_count

COMPILED = "compiled loop"
#: ``GRAPHNET_COMPILED_LOOP=0`` keeps every loop on the host (what tests compare the compiled loop with)
ENABLED = os.environ.get("GRAPHNET_COMPILED_LOOP", "1") != "0"
#: ``GRAPHNET_SPLIT_LOOP``: whether a loop whose body keeps its batch rows apart runs as two
#: halves of the batch at once (``split_loop.py``): ``1`` (the default) when measured faster
#: on two threads, ``0`` never, ``always`` whenever the body allows it, on any thread count
#: (what tests compare with the whole loop). W7: 3.52-3.55 ms with the halves in one prange,
#: against 4.10-5.19 ms whole (docs/benchmarks.md, seventh session)
SPLIT_MODE = os.environ.get("GRAPHNET_SPLIT_LOOP", "1")
#: compiled calls of a loop before its halves start compiling (in the background): a short
#: run does not pay for their compile (W7's two: ~1 s of a worker), a training run soon has them
HALVES_AFTER_CALLS = 20


@dataclass(eq=False)
class LoopRecord(Kernel):
    """``fn.kernels`` entry of a loop; ``runs`` says how its last call ran: ``"compiled loop"``
    or ``"host loop (why)"``; ``split`` whether the compiled loop runs as two halves of its batch
    at once (``split_loop.py``)."""

    runs: str = None
    split: bool = False


class ScanStep(Step):
    """A Scan node: its loop compiled per body frame, or on the host where it cannot be."""

    kind = "loop"
    needs_buffers = False   # the loop makes its own arrays (states, stacked outputs)

    def __init__(self, planned, kernel, body, body_listing, program):
        super().__init__(planned, kernel, program.name)
        self.node, self.body, self.body_listing = planned.node, body, body_listing
        self.checks_numerics = program.check_numerics   # the body checks its values step by step
        self.compiles_loops = ENABLED   # read when the function is built
        self._loops = {}   # the body's input shapes -> LoopRunner
        #: the body's kernels wait for the compiled loop that inlines them (loop_callees.py)
        self.compile_hold = CompileHold()
        for step in body.steps:
            step.hold_compiles(self.compile_hold)

    def run(self, env, buffers, shapes):
        self._store(env, self.loop_for(shapes)(*[env[v] for v in self.node.inputs]))

    def bind(self, frame):
        runner, node = self.loop_for(frame.shapes), self.node
        return lambda env: self._store(env, runner(*[env[v] for v in node.inputs]))

    def calls(self, frame):
        return [Call(self.loop_for(frame.shapes), [Ref(v) for v in self.node.inputs], tuple(self.node.outputs))]

    def _store(self, env, results):
        for var, value in zip(self.node.outputs, results):
            env[var] = value

    def loop_for(self, shapes):
        """The runner of the loop for the outer shapes ``shapes`` (one per body frame)."""
        op = self.node.op
        seq_shapes, init_shapes, nonseq_shapes = op.split([tuple(shapes[v]) for v in self.node.inputs[1:]])
        key = tuple(s[1:] for s in seq_shapes) + tuple(s[1:] for s in init_shapes) + tuple(nonseq_shapes)
        runner = self._loops.get(key)
        if runner is None:
            if len(self._loops) >= MAX_FRAMES:   # as many as the body program keeps frames
                self._loops.pop(next(iter(self._loops)))
            program, stacks, reason = self._compiled_loop(seq_shapes, init_shapes, nonseq_shapes)
            runner = self._loops[key] = LoopRunner(self, program, stacks, reason)
            if program is not None:
                runner.halves = self._halves(seq_shapes, init_shapes, nonseq_shapes)
        return runner

    def halves_at(self, frame):
        """The HalvesLoop this step runs at ``frame``'s shapes, or None (``cpu.py`` asks, to know
        whether the frame has a choice of who takes the second core)."""
        runner = self.loop_for(frame.shapes)
        return runner.halves if runner.program is not None else None

    def split_refusal(self):
        """None when the body keeps its batch rows apart (``batch_rows``), else why not; once."""
        if not hasattr(self, "_split_refusal"):
            seqs, taps, nonseqs = self.node.op.inner_inputs()
            self._split_refusal = split_refusal(self.body.fgraph, seqs + [v for t in taps for v in t],
                                                list(nonseqs) + list(self.body._constants))
        return self._split_refusal

    def _halves(self, seq_shapes, init_shapes, nonseq_shapes):
        """The loop as two halves of the batch's rows (``split_loop``), or None: one thread, a
        batch too small, a body that mixes rows, or a half the compiled loop cannot express."""
        op = self.node.op
        if SPLIT_MODE == "0" or (threads.num_threads() < 2 and SPLIT_MODE != "always") \
                or self.split_refusal() is not None:
            return None
        batch = split_loop.batch_of(op, seq_shapes, init_shapes)
        if batch is None:
            return None
        cut = batch // 2
        programs = []
        for rows in (cut, batch - cut):
            # fresh: each half has buffers of its own (a cached frame would be shared by both)
            program, _, _ = self._compiled_loop(split_loop.halved(seq_shapes, rows),
                                                split_loop.halved(init_shapes, rows), nonseq_shapes, fresh=True)
            if program is None or (programs and program.function is not programs[0].function):
                return None   # the halves share one compiled function (their text is the same)
            programs.append(program)
        return split_loop.HalvesLoop(programs, cut, op.n_seqs + op.n_states + op.n_stacked)

    def _compiled_loop(self, seq_shapes, init_shapes, nonseq_shapes, fresh=False):
        """(LoopProgram, stack shapes, None), or (None, None, the reason the loop stays on the host).
        ``fresh``: on a body frame of its own, not the one the body keeps for these shapes."""
        op, body = self.node.op, self.body
        if not self.compiles_loops:
            return None, None, "GRAPHNET_COMPILED_LOOP=0"
        if self.checks_numerics:
            return None, None, "check_numerics checks the body's values step by step"
        if body.plan.value_dependent:
            return None, None, "shapes in the body depend on values"
        seqs, taps, nonseqs = op.inner_inputs()
        host = dict(body._constants)   # what a call's env holds besides the feeds (CpuProgram.run)
        host.update((var, np.zeros(s[1:], var.dtype)) for var, s in zip(seqs, seq_shapes))
        host.update((var, np.zeros(s[1:], var.dtype)) for state, s in zip(taps, init_shapes) for var in state)
        host.update((var, np.zeros(s, var.dtype)) for var, s in zip(nonseqs, nonseq_shapes))
        try:
            frame = body._new_frame(body._infer_shapes(host))[0] if fresh else body.frame(host)
        except GraphnetError as exc:   # the host loop raises it, naming the scan
            return None, None, f"the body's shapes do not check: {exc}"
        for j, init in enumerate(init_shapes):
            if frame.shapes[body.fgraph.outputs[j]] != tuple(init[1:]):
                return None, None, f"{op.output_names[j]} changes shape from step to step"
        try:
            program = write_loop(op, body, frame, lambda source: cache.load_module(source, name_hint="loop"))
        except NotInLoop as exc:
            return None, None, str(exc)
        if not fresh:
            self.kernel.source = f"{program.listing}\n\n# the body's kernels:\n{self.body_listing}"
        stacks = [frame.shapes[v] for v in body.fgraph.outputs[op.n_states:]]
        return program, stacks, None


class LoopRunner:
    """``runner(*inputs) -> outputs`` of one body frame's loop: compiled, or on the host.

    The compiled loop's first call compiles it for the arguments' types (from
    Numba's disk cache, in line when tiering is off, else in a worker process
    while the host loop runs the calls meanwhile, as ``runtime/tiered.py`` does
    for kernels)."""

    def __init__(self, step, program, stacks, reason):
        self.step, self.op, self.program, self.stacks, self.reason = step, step.node.op, program, stacks, reason
        self.background, self.signature = None, None   # the loop's compile in a worker, for these types
        self.halves = None   # split_loop.HalvesLoop, set by the step where the body allows it
        self._loop_call = None
        self._arrays = {}   # n_steps -> (state buffers, stacks), see _outputs
        self.current = self._first_call if program is not None else self._host
        if program is not None and tiered_enabled():
            step.compile_hold.hold()   # the host loop's kernels run on NumPy until the loop is compiled

    def __call__(self, *inputs):
        return self.current(inputs)

    def wait(self, timeout=None):
        """Block until the background compile ended (``fn.wait_compiled``): the loop's, then
        the body's kernels' (compiling only where the loop could not be compiled)."""
        if self.signature is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._background().wait(timeout):
            return False
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return wait_compiled(self.step.body.kernels, left)

    def _background(self):
        """The loop's background compile, started on the first call. It compiles the body's
        kernels inlined (``loop_callees.py``): none of them is compiled on its own meanwhile
        (``tiered.CompileHold``), which before compiled each twice (W7's forward loop: 5.7 s
        cold beside the workers compiling its kernels for the host loop)."""
        if self.background is None:
            self.background = BackgroundCompile(self.program.function, self.signature)
        return self.background

    def _host(self, inputs):
        self.step.kernel.runs = f"host loop ({self.reason})"
        body = self.step.body
        return run_loop(self.op, inputs, lambda feeds: body.run(feeds)[0])

    def _arguments(self, inputs):
        op = self.op
        n = step_count(op, inputs[0])
        seqs, inits, nonseqs = op.split([np.asarray(a, order="C") for a in inputs[1:]])
        check_lengths(op, [s.shape for s in seqs], [b.shape for b in inits], n)
        nonseqs = [v.reshape(1) if v.ndim == 0 else v for v in nonseqs]   # 0-d: 1-element inside the loop
        buffers, stacked = self._outputs(n, inits)
        return n, [n, *seqs, *buffers, *stacked, *nonseqs], buffers, stacked

    def _outputs(self, n, inits):
        """The state buffers (initial values written in) and the stacks of an ``n``-step call.

        Allocated once per ``n``, reused by later calls: fresh arrays cost their page faults on
        first touch (1.7 of the 8.5 ms of W7's backward loop). That is safe because no kernel
        writes a loop's outputs (they are not planned buffers) and a function hands back copies
        of every value it did not write into a fresh array itself."""
        op = self.op
        kept = self._arrays.get(n)
        if kept is None or any(b.shape[1:] != i.shape[1:] for b, i in zip(kept[0], inits)):
            if len(self._arrays) >= 4:
                self._arrays.pop(next(iter(self._arrays)))
            stacked = []
            for k, (shape, var) in enumerate(zip(self.stacks, op.body.outputs[op.n_states:])):
                alias = self.program.stack_aliases.get(k)
                stacked.append(stacked[alias] if alias is not None else np.empty((n,) + shape, var.dtype))
            kept = self._arrays[n] = (state_buffers(op, inits, n), stacked)
            return kept
        for buffer, init, lag in zip(kept[0], inits, op.lags):
            buffer[:lag] = init[:lag]
        return kept

    def _compiled(self, inputs):
        n, args, buffers, stacked = self._arguments(inputs)
        if self.program.multiplies:
            threads.compiled_code_blas()   # the body's products run on one BLAS thread
        if self.halves is None:
            self.program.function(*args, *self.program.fixed)
        else:
            self._whole_or_halves()(args)
        self.step.kernel.runs = COMPILED
        return loop_outputs(self.op, buffers, stacked, n)

    def _whole_or_halves(self):
        """``run(args)``: the loop's two halves at once (``split_loop``) while this call's second
        core is graphnet's (``threads.own_cores``, chosen over whole calls in ``cpu.py``) and they
        are compiled, else the whole loop; with ``GRAPHNET_SPLIT_LOOP=always``, the halves."""
        if self._loop_call is None:
            fixed, halves, kernel = self.program.fixed, self.halves, self.step.kernel
            calls = [0]

            def run(args):
                calls[0] += 1
                if calls[0] == HALVES_AFTER_CALLS and halves.fits(args):   # a loop called this often:
                    halves.start(args)   # its halves compile meanwhile (fn.wait_compiled waits from now)
                    kernel.background.append(halves)
                kernel.split = ((SPLIT_MODE == "always" or threads.own_cores()) and halves.fits(args)
                                and halves.start(args))
                if kernel.split:
                    halves(args)
                else:
                    self.program.function(*args, *fixed)
            self._loop_call = run
        return self._loop_call

    def _first_call(self, inputs):
        function = self.program.function
        args = self._arguments(inputs)[1]
        signature = tuple(numba.typeof(a) for a in args + self.program.fixed)
        if self.halves is not None and SPLIT_MODE == "always" and self.halves.fits(args):   # beside the whole
            self.halves.start(args)
            self.step.kernel.background.append(self.halves)
        if signature in function.overloads or not tiered_enabled():
            start = time.perf_counter()
            try:
                cache.compile_or_repair(function, signature)
            except numba.core.errors.NumbaError as exc:
                return self._give_up(inputs, f"{type(exc).__name__}: {exc}")
            finally:
                self.step.kernel.compile_s += time.perf_counter() - start
            return self._switch(inputs)
        self.signature = signature
        self.step.kernel.background.append(self)
        self.current = self._until_compiled
        return self._until_compiled(inputs)

    def _until_compiled(self, inputs):
        background = self._background()
        if not background.ready:
            self.step.kernel.tier = "host loop"
            self.reason = "the compiled loop is compiling in the background"
            return self._host(inputs)
        if background.error is not None:
            return self._give_up(inputs, background.error)
        ticket = background.ticket
        took = f" ({ticket.seconds:.2f} s in the worker)" if ticket is not None else ""
        say(f"{self.step.program_name}: {self.step.kernel.name}: the compiled loop runs from now on{took}")
        return self._switch(inputs)

    def _switch(self, inputs):
        self.step.kernel.tier = "compiled"
        self.current = self._compiled
        return self._compiled(inputs)

    def _give_up(self, inputs, reason):
        first_line = reason.strip().splitlines()[0] if reason.strip() else "no reason given"
        say(f"{self.step.program_name}: the loop {self.step.kernel.name} could not be compiled ({first_line}); "
            "it keeps running on the host", always=True)
        self.step.kernel.tier = None   # the host loop is as final as a NumPy step: the entry may call it
        self.step.compile_hold.release()   # the host loop for good: its kernels compile on their own
        self.reason = f"compiling it failed: {first_line}"
        self.current = self._host
        return self._host(inputs)


@CPU_LOWERINGS.register(ScanKernel)
def lower_scan(planned, program, index):
    from graphnet.compiler import pipeline
    op = planned.node.op
    body = pipeline.build(op.body, {"check_numerics": program.check_numerics,
                                    "name": f"{program.name}/{op.scan_name}"})
    listing = "\n\n".join(f"# {k.name}: {', '.join(k.ops)}\n{k.source}" for k in body.kernels)
    kernel = kernel_record(planned, f"k{index}_scan", record=LoopRecord, kind="loop",
                           source=f"# {op}: the loop is written when its first call gives the shapes; "
                                  f"the body's kernels:\n{listing}")
    return ScanStep(planned, kernel, body, listing, program)
