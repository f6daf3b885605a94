"""The time around the kernels: what one call of a tiny compiled function costs, and what a
training step loses beside another busy process.

- ``per_call``: ``gn.function([x], x + 1)`` on a 4x10 array against NumPy's ``x + 1``, and a
  4x10 softmax-cross-entropy + SGD step against the same step written by hand in NumPy;
  interleaved in one process (the shapes are far too small for any thread pool to matter).
- ``cotenant``: the W1 training step at B=16, quiet and then beside a child process running a
  2-thread GEMM loop (the load a newcomer's other work puts on a 2-core machine).

Run alone as ``python -m bench.call_overhead [--quick]``; ``python -m bench`` runs it too and
puts the ratios in its report.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

from bench.peers import numpy_softmax_xent
from graphnet.compiler.runtime.driver import DRIVER_AFTER
from bench.timing import interleaved


def _tiny_problem():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((4, 10)).astype("float32"), np.array([0, 1, 2, 1]),
            (0.1 * rng.standard_normal((10, 3))).astype("float32"), np.zeros(3, "float32"))


def per_call(blocks=9, block_seconds=0.05):
    """Medians (s) of the four variants and the two ratios the runtime issue targets."""
    import graphnet as gn
    xb, yb, W0, b0 = _tiny_problem()
    x = gn.placeholder("x", (None, 10))
    plus_one = gn.function([x], x + 1)
    y = gn.placeholder("y", (None,), "int64")
    W, b = gn.shared(W0, name="W"), gn.shared(b0, name="b")
    loss = gn.mean(gn.nn.cross_entropy(gn.dot(x, W) + b, y))
    gW, gb = gn.grad(loss, [W, b])
    step = gn.function([x, y], loss, updates=[(W, W - 0.1 * gW), (b, b - 0.1 * gb)])
    state = {"W": W0.copy(), "b": b0.copy()}
    rows = np.arange(len(yb))

    def numpy_step():
        value, d = numpy_softmax_xent(xb @ state["W"] + state["b"], yb, rows)
        state["W"] = state["W"] - 0.1 * (xb.T @ d)
        state["b"] = state["b"] - 0.1 * d.sum(axis=0)
        return value

    np.testing.assert_allclose(step(xb, yb), numpy_step(), rtol=1e-5)   # the same step, before timing
    plus_one(xb)
    step.wait_compiled()      # tiered: the first calls ran on NumPy while the kernels compiled
    plus_one.wait_compiled()
    for _ in range(2 * DRIVER_AFTER):   # past the point where a small step gets its compiled driver
        step(xb, yb)
        plus_one(xb)
    timings = interleaved({"graphnet x + 1": lambda: plus_one(xb), "numpy x + 1": lambda: xb + 1,
                           "graphnet CE+SGD step": lambda: step(xb, yb), "numpy CE+SGD step": numpy_step},
                          blocks, block_seconds)
    medians = {name: t.median for name, t in timings.items()}
    return {"medians_s": medians, "kernels_in_step": len(step.kernels),
            "x_plus_1_vs_numpy": medians["graphnet x + 1"] / medians["numpy x + 1"],
            "step_vs_numpy": medians["graphnet CE+SGD step"] / medians["numpy CE+SGD step"]}


GEMM_LOOP = """
import os, time
os.environ["OPENBLAS_NUM_THREADS"] = "2"
import numpy as np
a = np.random.default_rng(0).standard_normal((1024, 1024), dtype=np.float32)
end = time.time() + float(os.environ["GRAPHNET_BENCH_SECONDS"])
while time.time() < end:
    a @ a
"""


def cotenant(seconds=6.0, blocks=7, block_seconds=0.1, quick=False):
    """W1 B=16 step time, quiet and beside a 2-thread GEMM loop in another process."""
    from bench.workloads import GraphnetRunner, all_cases, make_problem
    case = next(c for c in all_cases(quick) if c.family == "W1" and c.id.endswith("B16"))
    runner = GraphnetRunner(case, make_problem(case))
    runner.check()   # compiled and warm before the quiet figure
    quiet = interleaved({"quiet": runner.run}, blocks, block_seconds)["quiet"].median
    env = dict(os.environ, GRAPHNET_BENCH_SECONDS=str(seconds))
    neighbour = subprocess.Popen([sys.executable, "-c", GEMM_LOOP], env=env)
    try:
        time.sleep(0.5)   # let it start its threads
        busy = interleaved({"busy": runner.run}, blocks, block_seconds)["busy"].median
    finally:
        neighbour.kill()
        neighbour.wait()
    return {"case": case.id, "quiet_s": quiet, "beside_gemm_s": busy, "slowdown": busy / quiet}


def run(quick=False):
    settings = {"blocks": 3, "block_seconds": 0.01} if quick else {}
    return {"per_call": per_call(**settings), "cotenant": cotenant(quick=quick, seconds=2.0 if quick else 6.0,
                                                                   **settings)}


def lines(results):
    """The report's lines for these results."""
    p, c = results["per_call"], results["cotenant"]
    us = {k: 1e6 * v for k, v in p["medians_s"].items()}
    return [f"per call: x + 1 on 4x10 {us['graphnet x + 1']:.1f} us vs NumPy {us['numpy x + 1']:.1f} us "
            f"({p['x_plus_1_vs_numpy']:.1f}x; target <= 4x); CE+SGD step ({p['kernels_in_step']} kernels) "
            f"{us['graphnet CE+SGD step']:.1f} us vs hand NumPy {us['numpy CE+SGD step']:.1f} us "
            f"({p['step_vs_numpy']:.2f}x; target <= 0.5x)",
            f"beside a 2-thread GEMM process: {c['case']} {1e3 * c['quiet_s']:.2f} ms quiet, "
            f"{1e3 * c['beside_gemm_s']:.2f} ms busy ({c['slowdown']:.1f}x; target <= 2.5x)"]


if __name__ == "__main__":
    for line in lines(run(quick="--quick" in sys.argv)):
        print(line)
