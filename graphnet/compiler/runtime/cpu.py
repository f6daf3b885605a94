"""A compiled CPU program: the kernel plan lowered to steps with generated Numba code.

Building lowers each planned kernel through ``CPU_LOWERINGS`` (loading its
kernel module from the on-disk cache, compiling only what is new). Running
checks the fed shapes and labels before any kernel runs (so a bad call fails
without touching state), then runs the steps on preallocated buffers (one
memory plan per input-shape signature) and hands back outputs and update values.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

from graphnet.compiler.render import cpu as render
from graphnet.compiler.runtime import cache, compile_pool, driver, threads, tiered
from graphnet.compiler.runtime.entry import failed, write_entry
from graphnet.compiler.runtime.program import DEBUG, SMALL_VALUE, CompiledProgram
from graphnet.compiler.runtime import scan_steps  # noqa: F401 - registers the lowering of loops (scan)
from graphnet.compiler.runtime.steps import CPU_LOWERINGS, non_finite
from graphnet.compiler.schedule.memory import plan_buffers
from graphnet.errors import GraphnetError, NumericsError, ShapeError
from graphnet.graph.ir import Constant, SharedVariable, shape_str


class CpuProgram(CompiledProgram):
    backend = "cpu"

    def __init__(self, fgraph, plan, check_numerics=False, name="function"):
        super().__init__(fgraph, plan, CPU_LOWERINGS, check_numerics=check_numerics, name=name)
        inputs = fgraph.variables()
        # Writable copies: a read-only array is another type to Numba, and another compile.
        self._constants = {v: np.array(v.data) for v in inputs if isinstance(v, Constant)}
        self.shared_inputs = [v for v in inputs if isinstance(v, SharedVariable)]
        # Outputs a kernel writes get a fresh array on every call, handed to the
        # caller as is: no copy out of a pooled buffer.
        written = {v for step in self.steps if step.needs_buffers for v in step.writes}
        self.fresh_outputs = {v: None for v in fgraph.outputs if v in written and v not in self.in_place}
        # What a frame's generated entry reads (see entry.py), with shared_inputs and fresh_outputs.
        self.fed_inputs = [v for v in self._signature_inputs if not isinstance(v, SharedVariable)]
        self._signature = write_signature(self)
        #: the step-by-step path on every call (GRAPHNET_DEBUG=2 timing, check_numerics)
        self.step_by_step = DEBUG >= 2 or check_numerics

    @staticmethod
    def load(body):
        written = cache.compile_stats()["modules_written"]
        module = cache.load_module(render.module_source(body), name_hint="k")
        if cache.compile_stats()["modules_written"] != written and tiered.tiered_enabled():
            # A new module has no machine code anywhere: its kernel will compile in a worker
            # once the first call gives its types. Start the worker now, while the build goes on.
            compile_pool.prestart()
        return module

    #: run() hands back updates as fresh arrays or the variables' own, of checked shapes
    owns_updates = True

    def wait_compiled(self, timeout=None):
        """Block until every kernel compiling in the background is ready (or failed): the next call
        runs compiled. False if ``timeout`` seconds passed first (see ``runtime/tiered.py``)."""
        return tiered.wait_compiled(self.kernels, timeout)

    def make_frame(self, shapes, shape_values):
        for shared, expr in self.fgraph.updates:   # before any kernel: a call that fails changes nothing
            if not shared.type.accepts_shape(shapes[expr]):
                raise ShapeError(f"shared {shared.describe()}: new value has shape {shapes[expr]}, "
                                 f"expected {shape_str(shared.shape)}")
        buffers = plan_buffers(self.steps, shapes, self.fgraph.roots, self.in_place)
        return CpuFrame(self, shapes, buffers, shape_values)

    # ----------------------------------------------------------------- running
    def run(self, feeds):
        signature = self._signature(feeds)
        found = self._frames.get(signature)
        if found is not None and found[0].entry is not None:
            frame = found[0]
            if found[1] is not self._shown_traffic:
                self.show(found)
            if frame.until_driver:
                frame.until_driver -= 1
                if not frame.until_driver:
                    self._upgrade(frame)
            return frame.entry(feeds)
        env = dict(feeds)
        env.update(self._constants)
        for var in self.shared_inputs:
            env[var] = var.get_value(copy=False)
        frame = self.frame(env, signature)
        if frame.compiling is None:
            frame.compiling = announce_compiles(self)
        if frame.index_checks is not None:
            inputs, check = frame.index_checks
            check(*[env[v] for v in inputs])
        self.check_fed_values(env, frame.shapes)
        env.update(frame.env)
        for var, shape in frame.fresh:
            env[var] = np.empty(shape, var.dtype)
        for expr, shared in self.in_place.items():
            env[expr] = env[shared] if shared in env else shared.get_value(copy=False)
        timing, check = DEBUG >= 2, self.check_numerics
        for call, step in zip(frame.calls, self.steps):
            if timing:
                start = time.perf_counter()
            try:
                call(env)
            except Exception as exc:  # noqa: BLE001 - re-raised as the entry reports it (entry.failed)
                failed(step, exc)
            if timing:
                print_step_time(step.kernel, time.perf_counter() - start)
            if check:
                step.check_numerics(env)
        if check:
            self._check_simplified_roots(env)
        if frame.compiling:
            print(f"[graphnet] {self.name}: compiled in {time.perf_counter() - frame.compiling:.1f} s",
                  file=sys.stderr)
            frame.compiling = 0.0
        if not (self.step_by_step or frame.entry or frame.no_entry) and tiered.all_compiled(self.kernels):
            # every kernel loaded (none still on the NumPy tier): later calls take the entry
            frame.entry = write_entry(self, frame)
            frame.no_entry = frame.entry is None   # a step without Calls (a convolution): keep binding
            halves = self._halves(frame)
            if frame.entry is not None and halves:
                # a loop can run as two halves of its batch: who takes the second core, BLAS or
                # the loop, is measured over whole calls (threads.cores_choice)
                frame.entry = threads.cores_choice(frame.entry, lambda: all(h.ready() for h in halves))
            if frame.entry is not None and driver.wants_driver(self, self._frames[signature][1]):
                frame.until_driver = driver.DRIVER_AFTER
        fresh = self.fresh_outputs
        outputs, handed = [], set()
        for var in self.fgraph.outputs:
            outputs.append(env[var] if var in fresh and id(var) not in handed else np.array(env[var], copy=True))
            handed.add(id(var))
        # Pooled buffers are reused next call: an update that was not written in
        # place is handed over as a copy the shared variable can own.
        updates = [env[expr] if expr in self.in_place else np.array(env[expr], copy=True)
                   for _, expr in self.fgraph.updates]
        return outputs, updates

    def _halves(self, frame):
        """The loops of ``frame`` that can run as two halves of their batch (``split_loop.py``)."""
        found = [step.halves_at(frame) for step in self.steps if hasattr(step, "halves_at")]
        return [h for h in found if h is not None]

    def load_driver(self, source):
        return cache.load_module(source, name_hint="step")

    def _upgrade(self, frame):
        """Give ``frame`` the whole step as one compiled driver (``driver.py``), when it can have one."""
        start = time.perf_counter()
        known = cache.compile_stats()
        try:
            entry = driver.write_driver_entry(self, frame)
        except GraphnetError as exc:   # the Python entry keeps working; say why under GRAPHNET_DEBUG
            if DEBUG:
                print(f"[graphnet] {self.name}: no compiled driver ({exc})", file=sys.stderr)
            return
        if entry is None:
            return
        entry.driver_load_seconds = time.perf_counter() - start
        frame.driver_entry = entry
        # One launch into compiled code against one per kernel from Python: measured, since
        # the driver's arguments cost too (a one-kernel step gains nothing); load does not
        # change which wins, so the first choice is kept.
        frame.entry = threads.MeasuredChoice([frame.entry, entry], settle=lambda chosen: setattr(frame, "entry", chosen),
                                             threads=False)
        if DEBUG:
            fresh = cache.compile_stats() != known
            print(f"[graphnet] {self.name}: the step runs as one compiled driver from now on "
                  f"({'written and ' if fresh else ''}loaded in {entry.driver_load_seconds:.2f} s)", file=sys.stderr)

    def _check_simplified_roots(self, env):
        for before, after in self.simplified_roots:
            what = non_finite(env[after])
            if what:
                raise NumericsError(f"check_numerics: {what} in the output of {before.owner.op} "
                                    f"({before.describe()}), built at {before.owner.source} "
                                    f"(simplified to the value of {after.describe()})")


def write_signature(program):
    """``signature(feeds)``: the key of a call's frame (as ``CompiledProgram.frame`` makes it),
    generated so that a call computes it without a loop: each fed and shared value's shape,
    then the small values that may decide shapes."""
    names, parts = {"small": _small_bytes}, []
    for k, var in enumerate(program._signature_inputs):
        names[f"c{k}"] = var
        parts.append(f"c{k}._value.shape" if isinstance(var, SharedVariable) else f"feeds[c{k}].shape")
    for k, var in enumerate(program._value_inputs):
        names[f"d{k}"] = var
        parts.append(f"small(d{k}._value)" if isinstance(var, SharedVariable) else f"small(feeds[d{k}])")
    source = f"def signature(feeds):\n    return ({', '.join(parts)}{',' if parts else ''})\n"
    exec(compile(source, f"<graphnet signature of {program.name}>", "exec"), names)  # noqa: S102 - our own text
    return names["signature"]


def _small_bytes(value):
    return value.tobytes() if value.size <= SMALL_VALUE else None

def print_step_time(kernel, seconds):
    """``GRAPHNET_DEBUG=2``: one step's time, its tier, and apart from it the time spent loading or compiling."""
    loading = kernel.take_compile_seconds()
    tier = kernel.current_tier
    print(f"[graphnet] {kernel.name:28s} {1e6 * (seconds - loading):9.1f} us ({', '.join(kernel.ops)})"
          + (f" [{tier}]" if tier and tier != "compiled" else "")
          + (f"  (+ {1e3 * loading:.1f} ms loading or compiling the kernel, apart)" if loading else ""),
          file=sys.stderr)


def announce_compiles(program):
    """Say on stderr how many kernels the first call must compile, before it waits for them.

    Returns the start time when something compiles (the call then says how long
    it took), else 0.0. ``GRAPHNET_QUIET=1`` keeps it silent.
    """
    fresh = {id(d): d for d in (s.kernel.dispatcher for s in program.steps)
             if d is not None and not d.signatures}
    if not fresh or os.environ.get("GRAPHNET_QUIET") or tiered.tiered_enabled():   # tiered: it says so itself
        return 0.0
    cached = sum(cache.numba_cached(d) for d in fresh.values())
    if cached == len(fresh):
        return 0.0
    kernels = f"{len(fresh)} kernel{'s' if len(fresh) != 1 else ''}"
    print(f"[graphnet] {program.name}: compiling {kernels} ({cached} from cache)...",
          file=sys.stderr, flush=True)
    return time.perf_counter()


class CpuFrame:
    """What a program makes once per input-shape signature: shapes, buffers, bound steps.

    ``env`` holds every value fixed for the frame (the planned buffers, the
    constants, the shape arithmetic); a call adds its feeds, the shared
    values, fresh arrays for the outputs it hands over and the arrays of the
    updates written in place, then runs ``calls``, each step bound to the frame.
    """

    def __init__(self, program, shapes, buffers, shape_values):
        self.shapes = shapes
        changing = set(program.fresh_outputs) | set(program.in_place)
        self.env = {v: b for v, b in buffers.items() if v not in changing}
        self.env.update(program._constants)
        self.env.update(shape_values)
        self.fresh = [(v, shapes[v]) for v in program.fresh_outputs]
        #: the value rules to run again on every call (see CompiledProgram.index_checks)
        self.index_checks = program.index_checks(shapes)
        self.calls = [step.bind(self) for step in program.steps]
        #: None until the first call; then when compiling started, or 0.0 (nothing to announce)
        self.compiling = None
        #: the generated call path (entry.py), made by the first call
        self.entry = None
        #: a step could not be written into an entry: every call runs the steps one by one
        self.no_entry = False
        #: calls left before the frame's entry becomes a compiled driver (driver.py); 0: never
        self.until_driver = 0
        #: the entry calling that driver, once made (measured against the Python entry)
        self.driver_entry = None

    def arguments(self, wanted):
        """For ``wanted`` (variable, shape or None) pairs: the argument list, with the arrays fixed
        in this frame already in place (reshaped), and (position, variable, shape) of the others,
        which a call fills from its env."""
        args, changing = [], []
        for position, (var, shape) in enumerate(wanted):
            array = self.env.get(var)
            if array is None:
                args.append(None)
                changing.append((position, var, shape))
            else:
                args.append(array.reshape(shape) if shape is not None else array)
        return args, changing
