"""Memory planning: which buffer each kernel writes, reused across calls and nodes.

For one signature of run-time input shapes, every variable a kernel writes gets
a buffer. A buffer returns to the pool after the last step that reads it (or a
view of it), and a later write of the same shape and dtype takes it; buffers
of outputs and updates live to the end. The plan, and its buffers, are made
once per signature and reused by every later call with those shapes.

An update ``W <- f(W, ...)`` computed elementwise writes straight into ``W``'s
array when nothing reads the old ``W`` afterwards: parameters are updated in
place (see :func:`in_place_updates`).
"""
from __future__ import annotations

import numpy as np


def storage_roots(steps):
    """{variable: the variable whose storage it is a view of} (itself if none)."""
    root = {}
    for step in steps:
        for var in step.writes:
            root[var] = var
        if step.is_view:
            for out in step.writes:
                root[out] = root.get(step.nodes[0].inputs[0], step.nodes[0].inputs[0])
    return root


def last_reads(steps, root):
    """{storage variable: index of the last step reading it or a view of it}."""
    last = {}
    for index, step in enumerate(steps):
        for var in step.reads:
            last[root.get(var, var)] = index
    return last


def in_place_updates(steps, updates, outputs):
    """{update expression variable: shared variable} that may be written in place.

    ``steps``: the plan's kernels (anything with ``reads``, ``writes``,
    ``elementwise_writes``, ``pattern_of``, ``may_fail`` and ``is_view``).
    Legal when a kernel writes the expression elementwise over the shared
    variable's full shape, no later step reads the old value (directly or through
    a view), neither the shared variable nor a view of it is fetched or is
    another update's new value, and no later step can still fail (a failed call
    must leave every shared variable as it was).
    """
    root = storage_roots(steps)
    result = {}
    for shared, expr in updates:
        # Outputs and the other updates are read after every step ran: one that
        # is (a view of) the shared variable must still see its old value.
        kept = list(outputs) + [e for _, e in updates if e is not expr]
        if any(root.get(v, v) is shared for v in kept) or expr in result:
            continue
        writer = next((i for i, s in enumerate(steps) if expr in s.writes), None)
        # A free (None) dimension may change size with the feeds: the new value
        # then needs an array of its own.
        if writer is None or expr.shape != shared.shape or None in shared.shape:
            continue
        step = steps[writer]
        if expr not in step.elementwise_writes or step.pattern_of(shared) not in (None, "full2d"):
            continue
        if any(s.may_fail for s in steps[writer + 1:]):
            continue   # a later step could still stop the call, after the parameter changed
        readers = [i for i, s in enumerate(steps) if any(root.get(v, v) is shared for v in s.reads)]
        if all(i <= writer for i in readers) and not any(
                v is shared for s in steps[writer + 1:] for v in s.writes):
            result[expr] = shared
    return result


def plan_buffers(steps, shapes, roots, in_place, empty=np.empty):
    """{variable: preallocated array} for every variable a step writes or uses as scratch.

    ``steps`` are a backend's lowered steps: only the backend knows which views
    it materializes and which steps make their own results (NumPy), which get
    no buffer (``step.needs_buffers``). An update written in place writes the
    variable's own array. Scratch (a GEMM's product before its epilogue) is
    taken from the pool and returned right after its step.
    ``empty(shape, dtype)`` allocates (device arrays for the CUDA backend).
    """
    root = storage_roots(steps)
    last = last_reads(steps, root)
    keep = {root.get(v, v) for v in roots}
    pool = {}      # (shape, dtype) -> free arrays
    buffers = {}
    releases = {}  # step index -> storages freed after it
    for var, index in last.items():
        releases.setdefault(index, []).append(var)
    for index, step in enumerate(steps):
        for var in (list(step.writes) + list(step.scratch)) if step.needs_buffers else ():
            if var in in_place:
                continue
            key = (tuple(shapes[var]), var.dtype.str)
            free = pool.get(key)
            buffers[var] = free.pop() if free else empty(shapes[var], var.dtype)
            if var not in last and var not in keep:
                # Written but never read (a dead output of a multi-output kernel,
                # scratch): free once this step is done.
                releases.setdefault(index, []).append(var)
        for var in releases.get(index, ()):
            if var in buffers and var not in keep:
                pool.setdefault((tuple(shapes[var]), var.dtype.str), []).append(buffers[var])
    return buffers
