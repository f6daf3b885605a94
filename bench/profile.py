"""Where a graphnet call spends its time: each kernel's share and the Python around them.

``python -m bench --profile W1-B128`` builds the case's graphnet function
(fused, or unfused with ``--unfused``), wraps each step of the compiled
program with a timer, and prints per-kernel median times over many calls,
their achieved GB/s (from the program's own byte counts), and the overhead:
the call's wall time minus the time inside steps (feeding checks, buffer
lookups, output copies, the update commit).

The call is timed as users make it (through the frame's generated entry, see
``docs/architecture.md``); the kernels are then timed one by one on the step-by-step
path, reading ``fn.program.steps`` and the bound calls of its frames, internals of the
CPU backend (the same timings in a rougher form come from ``GRAPHNET_DEBUG=2``). Each
step there runs with the thread choice of its first call, not the measured one.
"""
from __future__ import annotations

import statistics
import time

from bench.workloads import GraphnetRunner, all_cases, make_problem


def profile_case(case_id, fuse=True, calls=30, quick=False):
    case = next(c for c in all_cases(quick) if c.id == case_id)
    runner = GraphnetRunner(case, make_problem(case), fuse=fuse)
    runner.run()  # compile and plan buffers
    program = runner.fn.program
    runner.warm()   # the background compiles awaited, the frame's entry made, thread choices measured
    totals = []
    for _ in range(calls):   # the call as users make it: the frame's generated entry
        start = time.perf_counter()
        runner.run()
        totals.append(time.perf_counter() - start)
    # Then each step alone: the step-by-step path, with every step bound to the frame's
    # buffers (``frame.calls``) wrapped in a timer.
    steps = program.steps
    samples = {id(s): [] for s in steps}
    program.step_by_step = True
    for found in program._frames.values():
        frame = found[0]
        frame.entry, frame.until_driver = None, 0
        for index, (call, step) in enumerate(zip(frame.calls, steps)):
            def timed(env, _call=call, _samples=samples[id(step)]):
                start = time.perf_counter()
                _call(env)
                _samples.append(time.perf_counter() - start)

            frame.calls[index] = timed
    for _ in range(calls):
        runner.run()
    rows = []
    for step in steps:
        k = step.kernel
        median = statistics.median(samples[id(step)])
        moved = (k.bytes_read or 0) + (k.bytes_written or 0)
        rows.append({"kernel": k.name, "kind": k.kind, "ops": ", ".join(k.ops), "median_s": median,
                     "bytes": moved, "gbs": moved / median / 1e9 if median > 0 else None,
                     "parallel": getattr(k, "ran_parallel", False)})
    total = statistics.median(totals)
    inside = sum(r["median_s"] for r in rows)
    return {"case": case_id, "fuse": fuse, "call_s": total, "kernels_s": inside, "overhead_s": total - inside,
            "rows": rows}


def format_profile(result):
    lines = [f"profile of {result['case']} ({'fused' if result['fuse'] else 'unfused'}): "
             f"call {1e3 * result['call_s']:.3f} ms = kernels {1e3 * result['kernels_s']:.3f} ms "
             f"+ overhead {1e3 * result['overhead_s']:.3f} ms",
             f"{'kernel':32s} {'kind':8s} {'us':>10s} {'share':>6s} {'GB/s':>7s} par  ops"]
    for r in sorted(result["rows"], key=lambda r: -r["median_s"]):
        gbs = f"{r['gbs']:7.1f}" if r["gbs"] else "      -"
        lines.append(f"{r['kernel']:32s} {r['kind']:8s} {1e6 * r['median_s']:10.1f} "
                     f"{100 * r['median_s'] / result['call_s']:5.1f}% {gbs} {'y' if r['parallel'] else 'n':3s}  "
                     f"{r['ops'][:80]}")
    return "\n".join(lines)
