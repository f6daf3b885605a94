"""``python -m bench.kernel_variants``: code-generation choices measured against each other.

Two choices. How many rows a column reduction reads at a time
(``graphnet.compiler.render.cpu.COLUMN_BLOCK_ROWS``; 0 = one row at a time).
And, with ``--recompute``, fusion rule 8 off and on (``schedule.recompute.ENABLED``:
a cheap elementwise chain recomputed in its reader instead of stored and read back),
beside the hand-written Numba kernels of ``bench.hand_kernels``.
The same graphs are compiled with each setting in one process and called in
interleaved rounds, so the ratios (time / time of the first setting) hold
under load; every variant's results are checked against the first before timing.

    python -m bench.kernel_variants [--rows 4096 --cols 4096 --rounds 7] [--recompute]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

#: register-block sizes compared (0: one row at a time, the baseline)
BLOCKS = (0, 2, 4)
CASES = ("column_sum", "bias_relu_bwd", "bn_relu_fwd", "bn_relu_bwd")


def build(gn, case, cols, block_rows):
    """The function of ``case`` compiled with ``block_rows`` (render reads the constant at compile time)."""
    from graphnet.compiler.render import cpu as render
    render.COLUMN_BLOCK_ROWS = block_rows
    x, dy = gn.placeholder("x", (None, cols)), gn.placeholder("dy", (None, cols))
    name = f"{case}_{block_rows}"
    if case == "column_sum":
        return gn.function([x], gn.sum(x * 2.0, axis=0), name=name), 1
    if case == "bias_relu_bwd":
        b = gn.shared(np.zeros(cols, np.float32), name="b")
        return gn.function([x, dy], gn.grad(gn.sum(gn.relu(x + b) * dy), [x, b]), name=name), 2
    gamma = gn.shared(np.ones(cols, np.float32), name="gamma")
    beta = gn.shared(np.zeros(cols, np.float32), name="beta")
    y = gn.relu(gn.nn.batch_norm(x, gamma, beta))
    if case == "bn_relu_fwd":
        return gn.function([x], y, training=True, name=name), 1
    return gn.function([x, dy], gn.grad(gn.sum(y * dy), [x, gamma, beta]), training=True, name=name), 2


def as_list(result):
    return [np.asarray(r).copy() for r in (result if isinstance(result, list) else [result])]


def measure(case, rows, cols, rounds):
    import graphnet as gn
    rng = np.random.default_rng(0)
    feeds = [rng.standard_normal((rows, cols)).astype(np.float32) for _ in range(2)]
    functions = {}
    for block_rows in BLOCKS:
        fn, arity = build(gn, case, cols, block_rows)
        functions[block_rows] = (fn, feeds[:arity])
    reference = as_list(functions[BLOCKS[0]][0](*functions[BLOCKS[0]][1]))
    for fn, args in functions.values():
        for got, want in zip(as_list(fn(*args)), reference):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    times = {block_rows: [] for block_rows in BLOCKS}
    for _ in range(rounds):
        for block_rows, (fn, args) in functions.items():
            start = time.perf_counter()
            fn(*args)
            times[block_rows].append(time.perf_counter() - start)
    return {block_rows: float(np.median(t)) for block_rows, t in times.items()}


def measure_recompute(case, rows, cols, rounds):
    """{"rule 8 off": s, "rule 8 on": s, "hand numba": s} medians for ``case``, and the minimum-traffic
    lines of the two graphnet plans (``fn.report()``)."""
    import graphnet as gn
    from bench import hand_kernels
    from bench.workloads import all_cases, make_problem
    from graphnet.compiler.schedule import recompute
    rng = np.random.default_rng(0)
    feeds = [rng.standard_normal((rows, cols)).astype(np.float32) for _ in range(2)]
    runs, traffic = {}, {}
    for label, enabled in (("rule 8 off", False), ("rule 8 on", True)):
        recompute.ENABLED = enabled
        try:
            fn, arity = build(gn, case, cols, 4 if case == "column_sum" else 0)
        finally:
            recompute.ENABLED = True
        fn(*feeds[:arity])   # the first call plans its buffers and starts the background compiles
        fn.wait_compiled()
        runs[label] = (lambda f=fn, a=feeds[:arity]: f(*a))
        traffic[label] = next((line for line in fn.report().splitlines() if line.startswith("minimum traffic")), "")
    task = {"bn_relu_bwd": "bn_relu_bwd", "bn_relu_fwd": "bn_relu_fwd", "bias_relu_bwd": "bias_relu_bwd"}.get(case)
    if task:
        hand_case = next(c for c in all_cases() if c.task == task and c.dims.get("rows") == 4096
                         and c.dims.get("cols") == 4096)
        if (rows, cols) == (4096, 4096):
            runs["hand numba"] = hand_kernels.build_hand(hand_case, make_problem(hand_case)).run
    reference = as_list(runs["rule 8 off"]())
    got = as_list(runs["rule 8 on"]())
    for a, b in zip(got, reference):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(b).max())))
    for run in runs.values():
        run()
    times = {label: [] for label in runs}
    for _ in range(rounds):
        for label, run in runs.items():
            start = time.perf_counter()
            run()
            times[label].append(time.perf_counter() - start)
    return {label: float(np.median(t)) for label, t in times.items()}, traffic


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.kernel_variants", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--cols", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--recompute", action="store_true", help="fusion rule 8 off vs on, and the hand kernels")
    args = parser.parse_args(argv)
    os.environ.setdefault("GRAPHNET_QUIET", "1")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if args.recompute:
        print(f"fusion rule 8 off and on, {args.rows}x{args.cols} float32, {args.rounds} interleaved rounds "
              f"(load {load:.1f}); time / rule 8 off:")
        for case in args.cases.split(","):
            medians, traffic = measure_recompute(case, args.rows, args.cols, args.rounds)
            base = medians["rule 8 off"]
            print(f"  {case:14s} " + "  ".join(f"{label}: {m * 1e3:8.2f} ms ({m / base:.2f}x)"
                                               for label, m in medians.items()))
            for label, line in traffic.items():
                print(f"      {label}: {line}")
        return 0
    print(f"column reductions, {args.rows}x{args.cols} float32, rows read at a time (load {load:.1f}):")
    for case in args.cases.split(","):
        medians = measure(case, args.rows, args.cols, args.rounds)
        base = medians[BLOCKS[0]]
        print(f"  {case:14s} " + "  ".join(f"{b or 1} row{'s' if b > 1 else ''}: {m * 1e3:8.2f} ms ({m / base:.2f}x)"
                                           for b, m in medians.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
