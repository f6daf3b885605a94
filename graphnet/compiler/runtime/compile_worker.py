"""A background compile worker: a process that compiles kernels into Numba's disk cache.

Numba holds the GIL while it compiles, so compiling on a thread would stall
the user's step as surely as compiling in line; a process does not. The
parent (:mod:`graphnet.compiler.runtime.compile_pool`) writes jobs to this
process's stdin and reads one reply per job from its stdout, both pickled:

- job: ``CompileJob`` (the generated module's file, the name it is imported
  under, the dispatcher's name in it, the argument types); a module of
  graphnet's own (a helper called from Python) is imported by name;
- reply: ``(key, seconds, None)`` when the machine code is in Numba's disk
  cache, ``(key, seconds, reason)`` when compiling raised.

The worker imports the module file that the parent published to the kernel
cache (under the same module name, as Numba needs to find it again), calls
``dispatcher.compile(argument types)`` (flushing corrupt Numba cache files
first, as the parent would), and Numba writes the machine code to
its cache, where the parent's dispatcher loads it in milliseconds. The worker
exits when its stdin closes: when the pool has nothing left for it, or when
the parent dies, so it never outlives its parent for long.

Run as ``python -m graphnet.compiler.runtime.compile_worker``.
"""
from __future__ import annotations

import importlib
import os
import pickle
import signal
import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class CompileJob:
    """One dispatcher to compile for one signature."""

    path: str           # the generated module's file in the kernel cache
    module_name: str    # the name the parent imported it under
    function: str       # the dispatcher's name in the module (kernel_serial, kernel_parallel)
    signature: tuple    # Numba types of the arguments

    @property
    def key(self):
        return (self.path, self.function, self.signature)


def compile_job(job, modules):
    """Compile ``job`` into Numba's disk cache; the reason (a string) if that raised, else None."""
    from graphnet.compiler.runtime import cache
    try:
        module = modules.get(job.path)
        if module is None:   # a generated module from the kernel cache, or one of graphnet's own
            module = modules[job.path] = (cache.import_module_file(job.path, job.module_name)
                                          if cache.module_name_of(job.path) == job.module_name
                                          else importlib.import_module(job.module_name))
        cache.compile_or_repair(getattr(module, job.function), job.signature)
    except Exception as exc:  # noqa: BLE001 - any failure is the parent's to report
        return f"{type(exc).__name__}: {exc}".strip()
    return None


def serve(jobs, replies):
    """Answer every job read from ``jobs`` on ``replies`` until ``jobs`` ends."""
    modules = {}
    while True:
        try:
            job = pickle.load(jobs)
        except EOFError:
            return
        start = time.perf_counter()
        reason = compile_job(job, modules)
        pickle.dump((job.key, time.perf_counter() - start, reason), replies)
        replies.flush()


def warm_up():
    """What every job needs, done before the first is read: a worker started ahead of its jobs
    (``CompilePool.prestart``) does it while the parent is still building."""
    from graphnet.compiler.render import scalar_prelude  # noqa: F401 - what every generated kernel imports
    from graphnet.compiler.runtime import cache  # noqa: F401
    from numba.core.registry import cpu_target
    cpu_target.target_context.refresh()


def main():
    # Ctrl-C in a terminal reaches the whole process group: the user's script
    # handles it; the worker ends when the script does (its stdin closes).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The replies get stdout's file of their own; whatever else writes to
    # stdout (a warning, a print in user code) goes to stderr instead.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        warm_up()
    except Exception:  # noqa: BLE001 - only an early start: the first job does it otherwise, and reports
        pass
    serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
