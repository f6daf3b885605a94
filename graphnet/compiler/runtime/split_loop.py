"""A compiled loop run as two at once, each over half of the batch's rows, on two cores.

W7's LSTM loops are 50 steps of a 32x128 @ 128x512 product and a gate kernel:
too small for BLAS threads (waking them costs what they save), so the loop ran
on one core of two. Its body keeps every row of the batch apart
(``batch_rows.split_refusal``), so the rows ``[0, B/2)`` and ``[B/2, B)`` are two
independent loops: the same compiled function, called on row views of the
sequences, states and stacks, each half with a body frame of its own (its own
buffers: the halves run at the same time). Both halves run inside one generated
Numba function, ``both``, a ``prange`` of two iterations, one per half, on
Numba's threads (the kernels' own), and each half's products stay on one BLAS
thread as before. One parallel region a call, not a Python helper thread: the
handoff through ``concurrent.futures`` (a lock, a condition, the GIL passed back
and forth) cost 80-130 us more a loop (W7's forward loop, 32 rows: whole 1480 us,
halves on a helper thread 920-960, halves in ``both`` 825-845).

The views are strided ('A' layout), a signature the loop compiles for in the
background (``tiered.BackgroundCompile``) once it has run 20 compiled calls
(``scan_steps.HALVES_AFTER_CALLS``), and ``both`` beside it, which calls the loop
through its address (``call_address``): calling the loop by name compiled the
whole loop into ``both``'s ``prange`` body again, 4.8 s a loop on top of its own
1.5 s, and a W7 process trained ~19 s on the whole loops before its halves were
ready in the background. The halves run only in the calls
where graphnet takes the second core (``threads.cores_choice``, measured over
whole calls against BLAS threads, which spin on after their products and slow
the halves); otherwise, and until they are compiled, the loop runs whole.
"""
from __future__ import annotations

import os
import sys

import numba

from graphnet.compiler.runtime import cache
from graphnet.compiler.runtime.call_address import address_of
from graphnet.compiler.runtime.tiered import BackgroundCompile, tiered_enabled

#: rows each half takes at least: below, the products are too thin to pay for the handoff
MIN_HALF_ROWS = 8


def batch_of(op, seq_shapes, init_shapes):
    """The batch length shared by axis 1 of every sequence and state buffer (axis 0 of each
    step's value), or None when they do not share one or a half would be too small."""
    lengths = {s[1] for s in seq_shapes if len(s) > 1} | {s[1] for s in init_shapes if len(s) > 1}
    if len(lengths) != 1 or any(len(s) < 2 for s in list(seq_shapes) + list(init_shapes)):
        return None
    batch = lengths.pop()
    return batch if batch >= 2 * MIN_HALF_ROWS else None


def halved(shapes, rows):
    """``shapes`` of sequences or state buffers with ``rows`` rows on axis 1."""
    return [(s[0], rows) + tuple(s[2:]) for s in shapes]


class HalvesLoop:
    """``halves(args)``: the loop of ``whole`` arguments ``[n, *seqs, *buffers, *stacks,
    *nonseqs]`` run as two halves of the rows at once. ``programs``: the two halves'
    LoopPrograms (same compiled function, their own frames); ``cut``: the first half's rows;
    ``n_row_args``: how many arguments after ``n`` are row-split (the rest are non-sequences)."""

    def __init__(self, programs, cut, n_row_args):
        self.programs, self.cut, self.n_row_args = programs, cut, n_row_args
        self.loop = programs[0].function
        self.function = None   # ``both``, written on the first start (for the halves' signature)
        self.signature = None  # the loop's for one half's arguments
        self.address = None    # of the loop compiled for ``signature`` (call_address.address_of)
        self.background, self.compiled = [], False
        self.failed = None   # why the halves never run (their compile failed)

    def arguments(self, args):
        rows = 1 + self.n_row_args
        first = [args[0]] + [a[:, :self.cut] for a in args[1:rows]] + list(args[rows:])
        second = [args[0]] + [a[:, self.cut:] for a in args[1:rows]] + list(args[rows:])
        return first + list(self.programs[0].fixed), second + list(self.programs[1].fixed)

    def fits(self, args):
        """Whether the halves' compiled signature takes these arguments: with one step (or one
        slot), a half's view of an array is C-contiguous, a type it was not compiled for."""
        return all(a.shape[0] > 1 for a in args[1:1 + self.n_row_args])

    def start(self, args):
        """Bring the halves' signatures into this process (the loop's for a half's views, and
        ``both``'s): at once from Numba's cache or when tiering is off, else in the background
        (``wait``). Returns whether they are ready now."""
        if self.function is None and self.failed is None:
            first, second = self.arguments(args)
            half = tuple(numba.typeof(a) for a in first)
            if half != tuple(numba.typeof(a) for a in second):
                # both calls the loop's code for one signature through its address
                self.failed = "the two halves' arguments have different types"
                return False
            self.signature = half
            self.function = both_halves(self.loop, half)
            for dispatcher, signature in ((self.loop, half), (self.function, (numba.int64,) + half + half)):
                if signature not in dispatcher.overloads and tiered_enabled():
                    self.background.append(BackgroundCompile(dispatcher, signature))
                elif signature not in dispatcher.overloads:
                    dispatcher.compile(signature)   # tiering off: in line, as every kernel then
        return self.ready()

    def wait(self, timeout=None):
        """Block until the halves' background compiles ended (``fn.wait_compiled``)."""
        return all(compile.wait(timeout) for compile in self.background)

    def ready(self):
        if self.compiled:
            return True
        if self.function is None or not all(compile.ready for compile in self.background):
            return False
        errors = [compile.error for compile in self.background if compile.error is not None]
        if errors:
            self.failed = errors[0]
            return False
        self.address = address_of(self.loop, self.signature)
        # Only the signature the address was taken for: another would pass the loop arguments
        # of types its code was not compiled for (Numba raises TypeError instead of compiling).
        self.function.disable_compile()
        self.compiled = True
        return True

    def __call__(self, args):
        first, second = self.arguments(args)
        self.function(self.address, *first, *second)


def both_halves(loop, signature):
    """``both(address, *first, *second)``: the compiled loop at ``address`` on two argument
    lists of ``signature``'s types, at once, as the two iterations of a ``prange`` (one per
    Numba thread; with one thread they run one after the other, as right). Called through
    its address (``call_address``), the loop is not compiled into ``both`` again. Written
    into the kernel cache, one module per loop and signature (named in it), so that each
    ``both`` is locked to the one signature its address is for."""
    first = ", ".join(f"a{i}" for i in range(len(signature)))
    second = ", ".join(f"b{i}" for i in range(len(signature)))
    module = os.path.basename(sys.modules[loop.py_func.__module__].__file__)
    types = ", ".join(str(t) for t in signature)
    source = (f"# both halves of {module}:{loop.py_func.__name__}\n# for ({types})\n"
              f"import numba\nfrom graphnet.compiler.runtime.call_address import call_at\n\n\n"
              f"@numba.njit(cache=True, nogil=True, parallel=True)\n"
              f"def both(address, {first}, {second}):\n"
              f"    for half in numba.prange(2):\n"
              f"        if half == 0:\n"
              f"            call_at(address, ({first},))\n"
              f"        else:\n"
              f"            call_at(address, ({second},))\n")
    return cache.load_module(source, name_hint="halves").both
