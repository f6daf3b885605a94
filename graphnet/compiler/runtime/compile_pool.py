"""Worker processes that compile kernels in the background, and the tickets that say when each is ready.

:func:`submit` queues a :class:`~graphnet.compiler.runtime.compile_worker.CompileJob`
and returns its :class:`Ticket` at once; a worker process
(:mod:`~graphnet.compiler.runtime.compile_worker`) compiles it into Numba's
disk cache, and a reader thread per worker (blocked on a pipe, so it costs the
user's thread nothing) resolves the ticket. The same job submitted twice (the
momentum update of every layer) shares one ticket.

Workers exist only while there is work: one starts when a job waits and fewer
than ``GRAPHNET_COMPILE_WORKERS`` run (default: one per core but one, at
most four, at least one), and a worker with nothing left to do is told to
exit. A build about to submit jobs may start one ahead of them (:func:`prestart`):
it waits ``PRESTART_GRACE_S`` for its first job. While workers run, the user's matrix products leave them their cores
(``threads.compiling_elsewhere``). A job whose every ticket was dropped (the function was garbage
collected) is skipped. At exit the pool stops its workers; a worker whose
parent died sees its stdin close and exits too. So no worker outlives the
compiles it was started for.

A worker that dies (killed, out of memory) fails the ticket it held, with
the reason; the queued jobs go to a new worker, until
:data:`MAX_WORKER_DEATHS` deaths, after which every queued ticket fails.
Whoever holds a failed ticket compiles in its own process instead.
"""
from __future__ import annotations

import atexit
import collections
import contextlib
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
import weakref

from graphnet.compiler.runtime import threads
from graphnet.errors import GraphnetError

WORKERS_ENV = "GRAPHNET_COMPILE_WORKERS"
#: workers that may die before the pool stops starting new ones (a broken
#: environment would otherwise start one per queued job)
MAX_WORKER_DEATHS = 3
#: how long shutdown waits for a worker to finish its job before killing it
SHUTDOWN_GRACE_S = 1.0
SHUT_DOWN = "the compile pool is shut down (the interpreter is exiting)"
#: how long a worker started ahead of its first job (:meth:`CompilePool.prestart`) waits for one
PRESTART_GRACE_S = 5.0


def worker_limit():
    """How many worker processes may compile at once: ``GRAPHNET_COMPILE_WORKERS``, else by cores."""
    text = os.environ.get(WORKERS_ENV, "").strip()
    if not text:
        return max(1, min(4, (os.cpu_count() or 2) - 1))
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise GraphnetError(f"{WORKERS_ENV} must be a positive whole number of processes, got {text!r}")
    return count


class Ticket:
    """One background compile: pending until ``ready``; then ``reason`` is None (done) or why it failed."""

    def __init__(self, job):
        self.job = job
        self.reason = None
        #: the worker was lost (killed, never started), not the compile: compiling elsewhere may work
        self.lost = False
        self.seconds = None            # the compile's time in the worker
        self.submitted = time.perf_counter()
        self._resolved = threading.Event()
        self._callbacks = []
        self._callback_lock = threading.Lock()

    @property
    def ready(self):
        return self._resolved.is_set()

    @property
    def failed(self):
        return self.ready and self.reason is not None

    def wait(self, timeout=None):
        """Block until the compile finished or failed; False if ``timeout`` (s) passed first."""
        return self._resolved.wait(timeout)

    def resolve(self, seconds, reason, lost=False):
        self.seconds, self.reason, self.lost = seconds, reason, lost
        with self._callback_lock:
            self._resolved.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    def when_resolved(self, callback):
        """Call ``callback(ticket)`` once the ticket is resolved (now, if it is; else on the pool's thread)."""
        with self._callback_lock:
            if not self._resolved.is_set():
                self._callbacks.append(callback)
                return
        callback(self)

    def __repr__(self):
        state = "pending" if not self.ready else "failed: " + self.reason if self.reason else "done"
        return f"<Ticket {self.job.function} of {os.path.basename(self.job.path)}: {state}>"


class Worker:
    """One compile process, its pipes and the thread that reads its replies."""

    def __init__(self, pool):
        self.pool = pool
        self.ticket = None         # the job in flight
        self.closing = False
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "graphnet.compiler.runtime.compile_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=worker_environment(),
            close_fds=True)
        self.thread = threading.Thread(target=self._read_replies, name=f"graphnet-compile-{self.process.pid}",
                                       daemon=True)
        self.thread.start()

    @property
    def pid(self):
        return self.process.pid

    def send(self, ticket):
        self.ticket = ticket
        pickle.dump(ticket.job, self.process.stdin)
        self.process.stdin.flush()

    def close(self):
        """Ask the worker to exit (its stdin ends); it finishes the job it holds first."""
        self.closing = True
        with contextlib.suppress(OSError):
            self.process.stdin.close()

    def death_reason(self):
        """Why the worker is gone (call once its stdout ended)."""
        code = self.process.wait()
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        self.stderr.seek(0)
        tail = self.stderr.read().decode("utf-8", "replace").strip().splitlines()[-3:]
        return f"the compile worker (pid {self.pid}) {how}" + (f": {' | '.join(tail)}" if tail else "")

    def _read_replies(self):
        replies = self.process.stdout
        while True:
            try:
                _, seconds, reason = pickle.load(replies)
            except Exception:  # noqa: BLE001 - EOF, a torn reply: the worker is gone either way
                break
            self.pool._finished(self, seconds, reason)
        self.pool._exited(self)


class CompilePool:
    """The worker processes and the queue of jobs waiting for one."""

    def __init__(self):
        self._lock = threading.RLock()
        self._queue = collections.deque()            # weak references to pending tickets
        self._tickets = weakref.WeakValueDictionary()  # job key -> its ticket, while someone holds it
        self._workers = []                            # running, busy or idle
        self._idle = []
        self._deaths = 0
        self._paused = 0
        self._closed = False
        self._pid = os.getpid()
        self._expecting_until = 0.0   # until then an idle worker waits for jobs (prestart)

    # ------------------------------------------------------------ submitting
    def submit(self, job):
        """The ticket of ``job``: the pending or finished one if it was submitted before, else a new one."""
        with self._lock:
            ticket = self._tickets.get(job.key)
            if ticket is not None and not ticket.failed:
                return ticket
            ticket = Ticket(job)
            self._tickets[job.key] = ticket
            if self._closed:
                ticket.resolve(0.0, SHUT_DOWN, lost=True)
                return ticket
            self._queue.append(weakref.ref(ticket))
            self._dispatch()
            return ticket

    def prestart(self):
        """Start a worker now, ahead of the jobs a build is about to make: its start (importing
        Numba and graphnet, setting up Numba's CPU target: 0.5-0.9 s here) then overlaps the
        build and the first call instead of delaying the first compile. The worker waits
        ``PRESTART_GRACE_S`` for a job, then exits if none came; once a job came, idle workers
        exit as soon as the queue is empty, as before (an idle worker counts as compiling:
        the user's products leave it a core, measured choices wait)."""
        with self._lock:
            if self._closed or self._workers or os.getpid() != self._pid:
                return
            self._expecting_until = time.monotonic() + PRESTART_GRACE_S
            try:
                worker = Worker(self)
            except OSError:
                return   # the first job will try again, and fail its ticket with the reason
            self._workers.append(worker)
            self._idle.append(worker)
            threads.compiling_elsewhere(len(self._workers))
        timer = threading.Timer(PRESTART_GRACE_S + 0.05, self._stop_expecting)
        timer.daemon = True
        timer.start()

    def _stop_expecting(self):
        with self._lock:
            self._expecting_until = 0.0
            self._dispatch()

    @contextlib.contextmanager
    def paused(self):
        """Hold queued jobs back (the workers finish what they hold): a timing run, a test of the first tier."""
        with self._lock:
            self._paused += 1
        try:
            yield self
        finally:
            with self._lock:
                self._paused -= 1
                self._dispatch()

    @property
    def workers(self):
        """The worker processes running now (``subprocess.Popen`` objects)."""
        with self._lock:
            return [w.process for w in self._workers]

    def wait_idle(self, timeout=None):
        """Block until no job is queued or in flight and every worker exited; False if ``timeout`` passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._stop_expecting()   # the caller expects no more jobs: a prestarted worker may go
        while True:
            with self._lock:
                workers = list(self._workers)
                busy = bool(workers) or any(ref() is not None for ref in self._queue)
            if not busy:
                return True
            for worker in workers:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                worker.thread.join(left)
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def shutdown(self):
        """Stop every worker: each may finish its job for a moment, then is killed; queued tickets fail."""
        if os.getpid() != self._pid:   # a forked child's copy: the workers are its parent's
            return
        with self._lock:
            self._closed = True
            workers = list(self._workers)
            for worker in workers:
                worker.close()
            self._fail_queued(SHUT_DOWN)
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        for worker in workers:
            try:
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()

    # -------------------------------------------------------- the workers' side
    def _dispatch(self):
        """Give queued jobs to idle workers, starting workers up to the limit; close workers left idle."""
        if self._paused or self._closed:
            return
        limit = worker_limit()
        while True:
            ticket = self._next_ticket()
            if ticket is None:
                break
            if self._idle:
                worker = self._idle.pop()
            elif len(self._workers) < limit:
                try:
                    worker = Worker(self)
                except OSError as exc:
                    ticket.resolve(0.0, f"a compile worker could not start: {exc}", lost=True)
                    continue
                self._workers.append(worker)
                threads.compiling_elsewhere(len(self._workers))
            else:
                self._queue.appendleft(weakref.ref(ticket))
                break
            self._expecting_until = 0.0   # the jobs came: no worker waits idle for more
            try:
                worker.send(ticket)
            except OSError:   # died before it read the job: its reader thread reports why
                pass
        if not any(ref() is not None for ref in self._queue):
            self._queue.clear()
            if time.monotonic() < self._expecting_until:
                return   # a prestarted worker waits for the build's first jobs
            for worker in self._idle:
                worker.close()
            self._idle.clear()

    def _next_ticket(self):
        while self._queue:
            ticket = self._queue.popleft()()
            if ticket is not None and not ticket.ready:
                return ticket
        return None

    def _finished(self, worker, seconds, reason):
        with self._lock:
            ticket, worker.ticket = worker.ticket, None
            if ticket is not None:
                ticket.resolve(seconds, reason)
            if not worker.closing:
                self._idle.append(worker)
            self._dispatch()

    def _exited(self, worker):
        worker.process.wait()   # reaped: no zombie waits for the interpreter's exit
        reason = None if worker.closing else worker.death_reason()
        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)
                threads.compiling_elsewhere(len(self._workers))
            if worker in self._idle:
                self._idle.remove(worker)
            ticket, worker.ticket = worker.ticket, None
            if reason is not None:
                self._deaths += 1
                if ticket is not None:
                    ticket.resolve(0.0, reason, lost=True)
                if self._deaths >= MAX_WORKER_DEATHS:
                    self._fail_queued(f"{self._deaths} compile workers died (the last: {reason})")
            elif ticket is not None:   # closed by shutdown while compiling
                ticket.resolve(0.0, SHUT_DOWN, lost=True)
            self._dispatch()
        worker.stderr.close()

    def _fail_queued(self, reason):
        while self._queue:
            ticket = self._queue.popleft()()
            if ticket is not None and not ticket.ready:
                ticket.resolve(0.0, reason, lost=True)


def worker_environment():
    """The parent's environment, plus what makes the worker import the same graphnet and use the same caches."""
    import numba
    env = dict(os.environ)
    paths = [os.path.abspath(p) if p else os.getcwd() for p in sys.path]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    if numba.config.CACHE_DIR:   # as this process sees it (set in code or in the environment)
        env["NUMBA_CACHE_DIR"] = numba.config.CACHE_DIR
    else:
        env.pop("NUMBA_CACHE_DIR", None)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


_pool = None
_pool_lock = threading.Lock()


def pool():
    """The process's compile pool (made on first use, shut down at exit)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = CompilePool()
            atexit.register(_pool.shutdown)
        return _pool


def submit(job):
    return pool().submit(job)


def prestart():
    """Start a worker ahead of the jobs a build will submit (see :meth:`CompilePool.prestart`)."""
    pool().prestart()


def _forget_pool_in_child():
    # A forked child (a search trial) shares its parent's workers' pipes but not the threads
    # that read them: it starts a pool of its own when it has something to compile.
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_in_child)
