"""Tiered execution: a step runs on NumPy until its compiled kernel is ready, then compiled.

A generated kernel (a fused loop, a GEMM's epilogue, a row-wise template) is
compiled by Numba for the argument types of its first call, which costs
0.2-0.9 s a kernel and holds the GIL. So on its first call, a step whose
kernel is not compiled in this process yet runs its nodes' NumPy references
(each op's ``perform``: the oracle, with the same counter-based dropout
masks) into the same buffers, while

- a kernel not in Numba's disk cache either is compiled by a worker process
  (:mod:`compile_pool`), which writes the machine code to the disk cache;
- the loader thread (:class:`Loader`) loads it from there into this process
  (milliseconds; the first load also sets up Numba's CPU target).

The call after the load runs compiled and takes itself out of the frame's
call list: from then on the frame calls the kernel directly.

``GRAPHNET_TIERED=0`` turns tiering off: a step whose kernel is new compiles
it in line on its first call, as a compiled-only program does, timed apart
from the kernel's run for ``GRAPHNET_DEBUG=2``.

When the worker was lost (killed, out of memory), the loader thread
compiles the kernel in this process instead; when Numba itself could not
compile it, the step keeps running on NumPy. Either is said once on stderr;
``GRAPHNET_DEBUG=1`` also says when each kernel switched, and the whole reason
of a failure.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
import time
import weakref

import numba
from numba.core.compiler_lock import global_compiler_lock

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


class BackgroundCompile:
    """One dispatcher brought into this process for one signature, off the user's thread.

    From Numba's disk cache it goes straight to the loader thread; otherwise a
    worker process compiles it first (``ticket``). ``wait()`` ends when it is
    loaded (``error`` None) or could not be (``error`` says why).
    """

    def __init__(self, dispatcher, signature):
        self.dispatcher, self.signature = dispatcher, signature
        self.ticket, self.error, self.load_s = None, None, 0.0
        self._ready = threading.Event()
        if cache.numba_cached_signature(dispatcher, signature):
            LOADER.load(self)
            return
        module = sys.modules[dispatcher.py_func.__module__]
        self.ticket = compile_pool.submit(CompileJob(module.__file__, module.__name__, dispatcher.py_func.__name__,
                                                     signature))
        LOADER.warm_up()
        this = weakref.ref(self)   # a dropped function's compile does not keep its steps alive
        self.ticket.when_resolved(lambda ticket: _compiled_elsewhere(this(), ticket))

    @property
    def ready(self):
        return self._ready.is_set()

    def wait(self, timeout=None):
        return self._ready.wait(timeout)

    def compiled_elsewhere(self, ticket):
        """The worker finished (on the pool's thread): load it here, compile it here, or give up."""
        if ticket.reason is None or ticket.lost:
            LOADER.load(self)
        else:
            self.error = ticket.reason
            self._ready.set()

    def load(self):
        """On the loader thread: from Numba's disk cache, else compiled here (the worker was lost)."""
        start = time.perf_counter()
        try:
            cache.compile_or_repair(self.dispatcher, self.signature)
        except Exception as exc:  # noqa: BLE001 - any failure: NumPy keeps the step working
            self.error = f"{type(exc).__name__}: {exc}"
        self.load_s = time.perf_counter() - start
        self._ready.set()


class CompiledVariants:
    """``ready(*args)``: the indices of the variants (a kernel's serial and parallel dispatchers,
    each with its leading arguments) compiled for these arguments. The first calls compiled
    one of them; the first time another is missing, its compile starts in the background,
    so that measuring it never stops a call for a second or so (the Theano MLP's first
    minibatches after ``wait_compiled()``: 1 s, its serial update kernel compiled in line).

    With tiering off every variant counts as ready: it compiles in line, as any kernel then
    does. A compile that failed leaves its variant never ready. ``started``, when given, is
    passed each background compile as it starts (a kernel's ``background.append``: what
    ``fn.wait_compiled`` waits for).
    """

    def __init__(self, variants, started=None):
        self.variants = [(dispatcher, tuple(head)) for dispatcher, head in variants]
        self.started = started
        #: per variant: None until first asked, then True (compiled) or its BackgroundCompile
        self.state = [None] * len(self.variants)

    def __call__(self, *args):
        if not tiered_enabled():
            return list(range(len(self.variants)))
        ready = []
        for index, (dispatcher, head) in enumerate(self.variants):
            state = self.state[index]
            if state is None:
                signature = tuple(numba.typeof(a) for a in head + args)
                state = self.state[index] = (True if signature in dispatcher.overloads
                                             else BackgroundCompile(dispatcher, signature))
                if state is not True and self.started is not None:
                    self.started(state)
            if state is True or (state.ready and state.error is None):
                ready.append(index)
        return ready


class CompileHold:
    """Holds back the background compiles of a loop body's kernels while the compiled loop
    that inlines them (``loop_callees.py``) is to come: the host loop running the first
    calls meanwhile runs those kernels on NumPy, instead of a worker compiling each a second
    time, on its own, for a tier the loop replaces. ``release()`` (the loop could not be
    compiled) lets them compile. A kernel already in Numba's disk cache is loaded either way.
    """

    def __init__(self):
        self.held = False

    def hold(self):
        self.held = True

    def release(self):
        self.held = False


def _compiled_elsewhere(background, ticket):
    if background is not None:
        background.compiled_elsewhere(ticket)


class KernelCall:
    """A step's bound call of a generated kernel, on the tier that is ready.

    ``arguments(env)`` gives the kernel's arguments for this call (their Numba
    types pick the compiled signature); ``run_compiled(env)`` and
    ``run_reference(env)`` run the step compiled or on NumPy, writing the same
    buffers. The states, each entered once: first call; waiting (on NumPy)
    for its :class:`BackgroundCompile`; compiled, or NumPy for good when
    compiling failed.
    """

    def __init__(self, step, frame, dispatcher, arguments, run_compiled, run_reference):
        self.kernel, self.program_name = step.kernel, step.program_name
        self.frame, self.dispatcher = frame, dispatcher
        self.arguments, self.run_compiled, self.run_reference = arguments, run_compiled, run_reference
        self.background = None
        self.compile_hold = step.compile_hold
        self.progress = FrameProgress.of(frame, self.program_name)
        self.progress.bound += 1
        self.current = self._first_call

    def __call__(self, env):
        self.current(env)

    def wait(self, timeout=None):
        """Block until this step can leave the NumPy tier (loaded, or compiling failed)."""
        return self.background is None or self.background.wait(timeout)

    def _first_call(self, env):
        signature = tuple(numba.typeof(a) for a in self.arguments(env))
        if signature in self.dispatcher.overloads or not tiered_enabled():
            self.progress.first_call(None)
            start = time.perf_counter()   # compiled in line, timed apart from the run (GRAPHNET_DEBUG=2)
            cache.compile_or_repair(self.dispatcher, signature)
            self.kernel.compile_s += time.perf_counter() - start
            self._switch(env)
            return
        hold = self.compile_hold
        if hold is not None and hold.held and not cache.numba_cached_signature(self.dispatcher, signature):
            self.current = self._while_held
            self._while_held(env)
            return
        self.background = BackgroundCompile(self.dispatcher, signature)
        self.kernel.background.append(self)
        self.progress.first_call(self.background.ticket)
        self.current = self._until_loaded
        self._until_loaded(env)

    def _while_held(self, env):
        if self.compile_hold.held:
            self.kernel.tier = "numpy"
            self.run_reference(env)
            return
        self.current = self._first_call
        self._first_call(env)

    def _until_loaded(self, env):
        background = self.background
        if not background.ready:
            self.kernel.tier = "numpy"
            self.run_reference(env)
            return
        ticket = background.ticket
        if ticket is not None and ticket.lost:
            say(f"{self.program_name}: {self.kernel.name}: {ticket.reason}; compiled in this process instead",
                always=True)
        if background.error is None:
            if ticket is not None:
                say(f"{self.program_name}: {self.kernel.name} compiled in the background "
                    f"({ticket.seconds:.2f} s in the worker, {1e3 * background.load_s:.1f} ms to load)")
            self._switch(env)
        else:
            self._keep_reference(env, background.error)
        if ticket is not None:
            self.progress.resolved(ticket, failed=background.error is not None)

    def _switch(self, env):
        """Run compiled from now on; a top-level step leaves the frame's call list for its kernel."""
        self.kernel.tier = "compiled"
        self.current = self.run_compiled
        calls = getattr(self.frame, "calls", None)
        if isinstance(calls, list):
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


class HelperCall:
    """An njit helper called from Python (a check of fed values), on its NumPy twin until it is compiled.

    ``HelperCall(dispatcher, twin)(*args)`` gives what both give. Without
    tiering, or once compiled for the first call's types, it calls the
    dispatcher (which compiles other types in line, as any njit function)."""

    def __init__(self, dispatcher, twin):
        self.dispatcher, self.twin = dispatcher, twin
        self.compiled, self.background = None, None

    def __call__(self, *args):
        compiled = self.compiled
        if compiled is not None:
            return compiled(*args)
        if self.background is None:
            if self.dispatcher.signatures or not tiered_enabled():
                self.compiled = self.dispatcher
                return self.dispatcher(*args)
            self.background = BackgroundCompile(self.dispatcher, tuple(numba.typeof(a) for a in args))
        elif self.background.ready and self.background.error is None:
            self.compiled = self.dispatcher
            return self.dispatcher(*args)
        return self.twin(*args)


class Loader:
    """The thread that brings kernels into this process while their steps run on NumPy.

    Loading a kernel from Numba's disk cache costs milliseconds, but the first
    one in a process also sets up Numba's CPU target (imports that took
    0.3-2 s here): on this thread it overlaps the user's steps instead of
    stalling one of them. Numba's compiler lock keeps it apart from any
    compile on the user's thread.
    """

    def __init__(self):
        self._forget()
        # The thread loads under Numba's compiler lock; a fork waits for it to be free (a child
        # would otherwise inherit it held, by a thread it does not have, and hang on its first
        # compile), and the child starts a loader of its own.
        os.register_at_fork(before=global_compiler_lock.acquire, after_in_parent=global_compiler_lock.release,
                            after_in_child=self._after_fork_in_child)

    def _forget(self):
        self._queue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread = None

    def _after_fork_in_child(self):
        global_compiler_lock.release()
        self._forget()

    def load(self, background):
        self._start()
        self._queue.put(background)

    def warm_up(self):
        """Set up Numba's CPU target now, while the first kernels compile elsewhere."""
        self._start()

    def _start(self):
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="graphnet-kernel-loader", daemon=True)
                self._thread.start()

    def _run(self):
        try:
            from numba.core.registry import cpu_target
            with global_compiler_lock:
                cpu_target.target_context.refresh()
        except Exception:  # noqa: BLE001 - only an early start; the first load does it otherwise
            pass
        while True:
            background = self._queue.get()
            with global_compiler_lock:
                background.load()


LOADER = Loader()


class FrameProgress:
    """The compile messages of one frame: which kernels went to the background, and when all are ready."""

    _of_frame = weakref.WeakKeyDictionary()
    _announced = weakref.WeakSet()   # tickets some frame's message counted already

    def __init__(self, name):
        self.name = name
        self.bound = self.first_calls = 0
        self.tickets = {}    # id -> ticket: distinct background compiles
        self.pending = set()
        self.failed = 0
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
        if self.first_calls != self.bound:
            return
        # Only compiles no other frame (another batch size, another function) announced.
        new = [t for t in self.tickets.values() if t not in FrameProgress._announced]
        if new:
            FrameProgress._announced.update(new)
            self.started = time.perf_counter()
            count = len(new)
            say(f"{self.name}: compiling {count} kernel{'s' if count != 1 else ''} in the background; "
                "until each is ready its step runs on NumPy", always=True)

    def resolved(self, ticket, failed):
        if id(ticket) in self.pending:
            self.pending.discard(id(ticket))
            self.failed += failed
        if not self.pending and self.started is not None:
            say(f"{self.name}: the background compiles ended "
                f"{time.perf_counter() - self.started:.1f} s after the first call"
                + (f"; {self.failed} kernel(s) keep running on NumPy" if self.failed
                   else "; every step runs compiled now"), always=True)
            self.started = None


def all_compiled(kernels):
    """Whether every generated kernel of ``kernels`` runs compiled (none on the NumPy tier, still
    compiling or for good): a frame's generated entry (``entry.py``) launches them directly."""
    return all(kernel.current_tier in (None, "compiled") for kernel in kernels)


def wait_compiled(kernels, timeout=None):
    """Block until every background compile of ``kernels`` (``fn.kernels``) has finished or failed.

    The next call then runs each step compiled (or, where compiling failed, on
    NumPy). Returns False if ``timeout`` seconds passed first. Deterministic:
    what tests and benchmarks wait on instead of sleeping.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    for kernel in kernels:
        for call in kernel.all_background():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not call.wait(left):
                return False
    return True
