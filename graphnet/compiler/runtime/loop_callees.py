"""How a compiled loop (``compiled_loop.py``) calls its body's kernels: inlined, not linked.

A Numba function calling another ``njit`` dispatcher compiles the callee as a
function of its own (typed, lowered, optimized by LLVM, made into machine code,
given a CPython wrapper and a disk cache entry), then links the callee's LLVM
module into its own, where LLVM optimizes it and makes machine code from it a
second time. Inlined at Numba's IR level (``inline="always"``), the callee is
typed and lowered once, as part of the loop, and never compiled alone. For
W7's two loops (their body kernels included) that is 0.9-1.0 s of compile each
instead of 1.1-1.3 s.

The body's kernels then have no compiled form of their own; the host loop that
runs the first calls while the loop compiles runs them on NumPy
(``tiered.CompileHold``), and only a loop that cannot be compiled compiles them.
"""
from __future__ import annotations

import functools

import numba


@functools.lru_cache(maxsize=None)
def _loop_options():
    """The target options of a function compiled as the loop is (its decorator, caching aside)."""
    return dict(numba.njit(nogil=True, error_model="numpy")(lambda: None).targetoptions)


def inlined(dispatcher):
    """``dispatcher`` as the loop calls it: a twin inlined into the loop when it was compiled
    with the loop's own options (``fastmath`` or ``parallel`` would change what its code means
    inside the loop, so such a kernel stays a linked callee)."""
    if dict(dispatcher.targetoptions) != _loop_options():
        return dispatcher
    return numba.njit(inline="always", nogil=True, error_model="numpy")(dispatcher.py_func)
