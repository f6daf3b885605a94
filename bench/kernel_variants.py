"""``python -m bench.kernel_variants``: code-generation choices measured against each other.

Today one choice: how many rows a column reduction reads at a time
(``graphnet.compiler.render.cpu.COLUMN_BLOCK_ROWS``; 0 = one row at a time).
The same graphs are compiled with each setting in one process and called in
interleaved rounds, so the ratios (time / time with one row at a time) hold
under load; every variant's results are checked against the first before timing.

    python -m bench.kernel_variants [--rows 4096 --cols 4096 --rounds 7]
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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.kernel_variants", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--cols", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args(argv)
    os.environ.setdefault("GRAPHNET_QUIET", "1")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"column reductions, {args.rows}x{args.cols} float32, rows read at a time (load {load:.1f}):")
    for case in args.cases.split(","):
        medians = measure(case, args.rows, args.cols, args.rounds)
        base = medians[BLOCKS[0]]
        print(f"  {case:14s} " + "  ".join(f"{b or 1} row{'s' if b > 1 else ''}: {m * 1e3:8.2f} ms ({m / base:.2f}x)"
                                           for b, m in medians.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
