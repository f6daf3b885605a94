"""Interleaved timing: every variant runs one block in turn, many times over.

A block is ``reps`` back-to-back calls of one variant, with ``reps`` chosen so
a block lasts about ``block_seconds``; the per-call time of a block is its
wall time over ``reps``. Variants take turns block by block (the order rotates
each round), so a burst of load from elsewhere on a shared machine hits every
variant alike instead of whichever happened to run then. The summary of each
variant is the median, min and max of its blocks' per-call times.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field


@dataclass
class Timing:
    """Per-call seconds of one variant over its blocks."""

    samples: list = field(default_factory=list)
    reps: int = 1
    error: str = None

    @property
    def median(self):
        return statistics.median(self.samples) if self.samples else None

    @property
    def min(self):
        return min(self.samples) if self.samples else None

    @property
    def max(self):
        return max(self.samples) if self.samples else None

    def as_dict(self):
        return {"median_s": self.median, "min_s": self.min, "max_s": self.max, "reps_per_block": self.reps,
                "blocks": len(self.samples), "samples_s": self.samples, "error": self.error}


def time_call(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def reps_for(fn, block_seconds, max_reps=10_000):
    """How many calls of ``fn`` (already warm) make a block of about ``block_seconds``."""
    once = min(time_call(fn) for _ in range(2))
    return max(1, min(max_reps, int(block_seconds / max(once, 1e-7))))


def interleaved(variants, blocks, block_seconds):
    """Time each callable of ``variants`` ({name: fn}); returns {name: Timing}.

    A variant that raises stops being timed; its Timing carries the error.
    """
    timings = {}
    for name, fn in variants.items():
        try:
            timings[name] = Timing(reps=reps_for(fn, block_seconds))
        except Exception as exc:  # noqa: BLE001 - reported, the others go on
            timings[name] = Timing(error=f"{type(exc).__name__}: {exc}")
    names = [n for n in variants if timings[n].error is None]
    for round_ in range(blocks):
        order = names[round_ % len(names):] + names[:round_ % len(names)] if names else []
        for name in order:
            timing = timings[name]
            if timing.error is not None:
                continue
            fn = variants[name]
            try:
                start = time.perf_counter()
                for _ in range(timing.reps):
                    fn()
                timing.samples.append((time.perf_counter() - start) / timing.reps)
            except Exception as exc:  # noqa: BLE001
                timing.error = f"{type(exc).__name__}: {exc}"
    return timings
