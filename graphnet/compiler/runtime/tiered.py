"""Tiered execution: a step runs on NumPy until its compiled kernel is ready, then compiled.

A generated kernel (a fused loop, a GEMM's epilogue, a row-wise template) is
compiled by Numba for the argument types of its first call, which costs
0.2-0.9 s a kernel and holds the GIL. So on its first call, a step whose
kernel is neither compiled in this process nor in Numba's disk cache sends
the compile to a worker process (:mod:`compile_pool`) and runs its nodes'
NumPy references (each op's ``perform``: the oracle, with the same
counter-based dropout masks) into the same buffers; each later call looks at
the ticket and, once the worker wrote the machine code to the disk cache,
loads it (milliseconds), runs compiled from then on, and takes itself out of
the frame's call list. Loading or compiling is timed apart from the kernel's
run, for ``GRAPHNET_DEBUG=2``.

``GRAPHNET_TIERED=0`` turns tiering off: a step whose kernel is new compiles
it in line on its first call, as a compiled-only program does.

When the background compile fails: if the worker was lost (killed, out of
memory), the kernel is compiled here on the step's next call; if Numba
itself could not compile it (or compiling here fails too), the step keeps
running on NumPy, and says why once on stderr (every time a kernel
switches, under ``GRAPHNET_DEBUG``).
"""
from __future__ import annotations

import os
import sys
import time
import weakref

import numba

from graphnet.compiler.runtime import cache, compile_pool
from graphnet.compiler.runtime.compile_worker import CompileJob
from graphnet.compiler.runtime.program import DEBUG

TIERED_ENV = "GRAPHNET_TIERED"


def tiered_enabled():
    """Whether a new kernel compiles in the background while its step runs on NumPy (the default)."""
    return os.environ.get(TIERED_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def say(message, always=False):
    """Print a ``[graphnet]`` line on stderr: ``always`` unless ``GRAPHNET_QUIET``, else only under ``GRAPHNET_DEBUG``."""
    if (always and not os.environ.get("GRAPHNET_QUIET")) or DEBUG:
        print(f"[graphnet] {message}", file=sys.stderr, flush=True)


class KernelCall:
    """A step's bound call of a generated kernel, on the tier that is ready.

    ``arguments(env)`` gives the kernel's arguments for this call (their Numba
    types pick the compiled signature); ``run_compiled(env)`` and
    ``run_reference(env)`` run the step compiled or on NumPy, writing the same
    buffers.
    """

    def __init__(self, step, frame, dispatcher, arguments, run_compiled, run_reference):
        self.kernel, self.program_name = step.kernel, step.program_name
        self.frame, self.dispatcher = frame, dispatcher
        self.arguments, self.run_compiled, self.run_reference = arguments, run_compiled, run_reference
        self.signature = self.ticket = None
        self.progress = FrameProgress.of(frame, self.program_name)
        self.progress.bound += 1
        self.current = self._first_call

    def __call__(self, env):
        self.current(env)

    def _first_call(self, env):
        self.signature = tuple(numba.typeof(a) for a in self.arguments(env))
        dispatcher = self.dispatcher
        if self.signature in dispatcher.overloads or not tiered_enabled() \
                or cache.numba_cached_signature(dispatcher, self.signature):
            self.progress.first_call(None)
            self._switch(env)
            return
        module = sys.modules[dispatcher.py_func.__module__]
        self.ticket = compile_pool.submit(CompileJob(module.__file__, module.__name__, dispatcher.py_func.__name__,
                                                     self.signature))
        self.kernel.tickets.append(self.ticket)
        self.progress.first_call(self.ticket)
        self.current = self._while_compiling
        self._while_compiling(env)

    def _while_compiling(self, env):
        ticket = self.ticket
        if not ticket.ready:
            self.kernel.tier = "numpy"
            self.run_reference(env)
            return
        if ticket.reason is None:
            self._switch(env)
        elif ticket.lost:
            say(f"{self.program_name}: {self.kernel.name}: {ticket.reason}; compiling it here", always=True)
            try:
                self._switch(env)
            except Exception as exc:  # noqa: BLE001 - any failure: NumPy keeps the step working
                self._keep_reference(env, f"{type(exc).__name__}: {exc}")
        else:
            self._keep_reference(env, ticket.reason)
        self.progress.resolved(ticket)

    def _switch(self, env):
        """Load (or compile) the kernel for this signature, timed apart from its run; run compiled from now on."""
        start = time.perf_counter()
        self.dispatcher.compile(self.signature)
        spent = time.perf_counter() - start
        self.kernel.compile_s += spent
        if self.ticket is not None:
            say(f"{self.program_name}: {self.kernel.name} compiled in the background "
                f"({self.ticket.seconds:.2f} s in the worker, {1e3 * spent:.1f} ms to load)")
        self.kernel.tier = "compiled"
        self.current = self.run_compiled
        calls = getattr(self.frame, "calls", None)
        if isinstance(calls, list):   # a top-level step: the frame calls the kernel directly from now on
            for i, call in enumerate(calls):
                if call is self:
                    calls[i] = self.run_compiled
        self.run_compiled(env)

    def _keep_reference(self, env, reason):
        first_line = reason.strip().splitlines()[0] if reason.strip() else "no reason given"
        say(f"{self.program_name}: kernel {self.kernel.name} ({', '.join(self.kernel.ops)}) could not be compiled "
            f"({first_line}); it keeps running on NumPy", always=True)
        if DEBUG and reason.strip() != first_line:
            say(f"{self.kernel.name}: the whole reason:\n{reason}")
        self.kernel.tier = f"numpy (compiling failed: {first_line})"
        self.current = self.run_reference
        self.run_reference(env)


class FrameProgress:
    """The compile messages of one frame: which kernels went to the background, and when all are ready."""

    _of_frame = weakref.WeakKeyDictionary()

    def __init__(self, name):
        self.name = name
        self.bound = self.first_calls = 0
        self.tickets = {}    # id -> ticket: distinct background compiles
        self.pending = set()
        self.started = None

    @classmethod
    def of(cls, frame, name):
        try:
            progress = cls._of_frame.get(frame)
            if progress is None:
                progress = cls._of_frame[frame] = cls(name)
        except TypeError:   # a frame that takes no weak reference: messages per kernel only
            progress = cls(name)
        return progress

    def first_call(self, ticket):
        self.first_calls += 1
        if ticket is not None and id(ticket) not in self.tickets:
            self.tickets[id(ticket)] = ticket
            self.pending.add(id(ticket))
        if self.first_calls == self.bound and self.tickets:
            self.started = time.perf_counter()
            count = len(self.tickets)
            say(f"{self.name}: compiling {count} kernel{'s' if count != 1 else ''} in the background; "
                "until each is ready its step runs on NumPy", always=True)

    def resolved(self, ticket):
        self.pending.discard(id(ticket))
        if not self.pending and self.started is not None:
            failed = sum(t.reason is not None for t in self.tickets.values())
            say(f"{self.name}: the background compiles ended "
                f"{time.perf_counter() - self.started:.1f} s after the first call"
                + (f"; {failed} failed" if failed else "; every step runs compiled now"), always=True)
            self.started = None


def wait_compiled(kernels, timeout=None):
    """Block until every background compile of ``kernels`` (``fn.kernels``) has finished or failed.

    The next call then runs each step compiled (or, where compiling failed, on
    NumPy). Returns False if ``timeout`` seconds passed first. Deterministic:
    what tests and benchmarks wait on instead of sleeping.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    for kernel in kernels:
        for ticket in kernel.all_tickets():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not ticket.wait(left):
                return False
    return True
