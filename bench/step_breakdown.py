"""``python -m bench.step_breakdown``: a W1 B=128 training step split into its GEMM time and the
rest, against the same GEMMs run through NumPy in the same process (issue 16's target).

The step is called as users call it (``fn(x, y)``, the frame's generated entry). Each BLAS
product of the step is timed where the entry launches it: the function is built with
``threads.measured_blas`` wrapped, so every launch (with the thread choice the step
measured for it) records its time, two ``perf_counter`` reads beside a product of
40 us - 4 ms. Per call: GEMM time = the sum of its products' launches, non-GEMM time =
the call's wall time minus that (the epilogue passes, the fused kernels, the loss, the
updates, the entry itself).

The NumPy reference runs the same products (the shapes and transposes the step's GEMM
kernels read, ``np.dot(a.T, b, out=c)`` or ``np.matmul``, the faster, with transposes as views) on arrays of
their own, on NumPy's BLAS at the benchmark's thread count and at one thread (the faster of
the two is the reference), in blocks interleaved with blocks of steps. Before anything is timed the step's loss is checked against the NumPy
MLP peer's (``bench.peers``) and each reference product against float64.

    python -m bench.step_breakdown [--threads 2] [--blocks 9] [--calls 20] [--case W1-B128]
"""
from __future__ import annotations

import sys

from bench.env import pin_threads, threads_from_argv

if __name__ == "__main__":
    pin_threads(threads_from_argv(sys.argv))

import argparse  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from time import perf_counter  # noqa: E402

import numpy as np  # noqa: E402

#: the issue's targets: GEMM time within the step / NumPy's, and the non-GEMM share of the step
GEMM_RATIO_TARGET, NON_GEMM_SHARE_TARGET = 1.0, 0.10


@contextmanager
def timed_blas_launches(samples):
    """While open, each BLAS launch a GEMM step makes records ``(m, n, k, seconds)`` in
    ``samples``; functions built inside keep their timed launches."""
    from graphnet.compiler.runtime import threads
    original = threads.measured_blas

    def measured(m, n, k, dot, *rest):
        launch = original(m, n, k, dot, *rest)

        def timed(*args):
            start = perf_counter()
            launch(*args)
            samples.append((m, n, k, perf_counter() - start))
        return timed   # no ``single_thread`` flag: a driver would call np.dot past the timer

    threads.measured_blas = measured
    try:
        yield
    finally:
        threads.measured_blas = original


def gemm_operands(fn):
    """``(m, k, n, transpose a, transpose b)`` of every BLAS product of ``fn``'s program (its
    first frame's shapes), in step order."""
    from graphnet.compiler.runtime.steps import GemmStep
    frame = next(iter(fn.program._frames.values()))[0]
    shapes = []
    for step in fn.program.steps:
        if isinstance(step, GemmStep):
            m, n, k = step.dims(frame)
            shapes.append((m, k, n, step.planned.trans_a, step.planned.trans_b))
    return shapes


def describe(m, k, n, trans_a, trans_b):
    return f"{m}x{k}x{n}" + (" a.T" if trans_a else "") + (" b.T" if trans_b else "")


def faster_call(left, right, out, repeats=7):
    """``np.dot`` or ``np.matmul`` (``@``), whichever multiplies ``left`` and ``right`` into ``out``
    faster here (with ``out=`` and a transposed left operand ``np.dot`` makes an extra pass over
    its output): the reference is the better of what a NumPy user writes."""
    best = {}
    for multiply in (np.dot, np.matmul) * 2:   # each twice, alternating; the faster median wins
        times = []
        for _ in range(repeats):
            start = perf_counter()
            multiply(left, right, out=out)
            times.append(perf_counter() - start)
        best[multiply] = min(best.get(multiply, float("inf")), statistics.median(times))
    return min(best, key=best.get)


def numpy_gemms(shapes, threads, seed=0):
    """``run()`` doing every product of ``shapes`` through NumPy's BLAS (``np.dot`` or ``np.matmul``,
    the faster: :func:`faster_call`) at ``threads`` threads, each checked against float64 first."""
    from graphnet.compiler.runtime.threads import _numpy_blas
    rng = np.random.default_rng(seed)
    products = []
    for m, k, n, trans_a, trans_b in shapes:
        a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
        left, right, out = (a.T if trans_a else a), (b.T if trans_b else b), np.empty((m, n), np.float32)
        np.dot(left, right, out=out)
        expected = left.astype(np.float64) @ right.astype(np.float64)
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
        products.append((left, right, out))
    blas = _numpy_blas()
    blas.use(threads)
    calls = [faster_call(*product) for product in products]

    def run(times=None):
        blas.use(threads)
        for index, ((left, right, out), multiply) in enumerate(zip(products, calls)):
            start = perf_counter()
            multiply(left, right, out=out)
            if times is not None:
                times[index].append(perf_counter() - start)
    return run


def measure(case_id="W1-B128", threads=2, blocks=9, calls=20, log=print):
    """The breakdown as a dict (seconds are medians over calls)."""
    import graphnet  # noqa: F401
    from bench.peers import build_numpy
    from bench.workloads import GraphnetRunner, all_cases, make_problem
    from graphnet.compiler.runtime import threads as gn_threads
    gn_threads.set_num_threads(threads)
    case = next(c for c in all_cases() if c.id == case_id)
    problem = make_problem(case)
    samples = []
    with timed_blas_launches(samples):
        runner = GraphnetRunner(case, problem, fuse=True)
        values = runner.check()   # the first two losses; then the compiles awaited, the entry warm
    expected = build_numpy(case, problem).check()
    np.testing.assert_allclose(np.asarray(values, np.float64), np.asarray(expected, np.float64), rtol=1e-3)
    shapes = gemm_operands(runner.fn)
    # NumPy at the benchmark's thread count and at one thread: the faster is the reference (beside
    # other work, two BLAS threads collapse, and the step's measured choice then runs one).
    counts = sorted({threads, 1})
    references = {n: numpy_gemms(shapes, n) for n in counts}
    step_s, gemm_s = [], []
    numpy_by_count = {n: [] for n in counts}
    each_step, each_numpy = [[] for _ in shapes], {n: [[] for _ in shapes] for n in counts}
    for _ in range(blocks):
        for _ in range(calls):
            del samples[:]
            start = perf_counter()
            runner.run()
            step_s.append(perf_counter() - start)
            if len(samples) != len(shapes):
                raise AssertionError(f"{len(samples)} BLAS launches timed in a step of {len(shapes)} GEMMs")
            gemm_s.append(sum(s[3] for s in samples))
            for index, sample in enumerate(samples):
                each_step[index].append(sample[3])
        for n, reference in references.items():
            for _ in range(calls):
                start = perf_counter()
                reference()
                numpy_by_count[n].append(perf_counter() - start)
            for _ in range(calls // 4):   # each product timed alone, for the per-shape lines
                reference(each_numpy[n])
    step, gemm = statistics.median(step_s), statistics.median(gemm_s)
    numpy_medians = {n: statistics.median(t) for n, t in numpy_by_count.items()}
    best = min(numpy_medians, key=numpy_medians.get)
    numpy_gemm = numpy_medians[best]
    non_gemm = statistics.median([s - g for s, g in zip(step_s, gemm_s)])
    result = {"case": case_id, "threads": threads, "gemms": len(shapes),
              "shapes": [describe(*s) for s in shapes],
              "step_s": step, "gemm_s": gemm, "non_gemm_s": non_gemm, "numpy_gemms_s": numpy_gemm,
              "numpy_threads": best, "numpy_gemms_by_threads_s": numpy_medians,
              "gemm_vs_numpy": gemm / numpy_gemm, "non_gemm_share": non_gemm / step,
              "each_in_step_s": [statistics.median(t) for t in each_step],
              "each_numpy_s": [statistics.median(t) for t in each_numpy[best]]}
    for name, inside, alone in zip(result["shapes"], result["each_in_step_s"], result["each_numpy_s"]):
        log(f"    {name:22s} in the step {1e6 * inside:8.1f} us, NumPy {1e6 * alone:8.1f} us ({inside / alone:.2f}x)")
    log(f"  {case_id}, {threads} threads: step {1e3 * step:.2f} ms = GEMMs {1e3 * gemm:.2f} ms "
        f"+ the rest {1e3 * non_gemm:.2f} ms ({100 * result['non_gemm_share']:.1f}%); the same {len(shapes)} "
        f"GEMMs through NumPy " + ", ".join(f"{1e3 * t:.2f} ms on {n} thread{'s' if n > 1 else ''}"
                                           for n, t in numpy_medians.items())
        + f" (GEMMs in the step / NumPy's faster {result['gemm_vs_numpy']:.2f}x)")
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.step_breakdown", description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="W1-B128")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--blocks", type=int, default=9)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args(argv)
    from graphnet.compiler.runtime import cache
    cache.set_cache_dir(os.environ.get("GRAPHNET_CACHE_DIR") or
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", ".cache"))
    print(f"load {open('/proc/loadavg').read().strip() if os.path.exists('/proc/loadavg') else 'n/a'}")
    measure(args.case, args.threads, args.blocks, args.calls)
    print(f"load at end {open('/proc/loadavg').read().strip() if os.path.exists('/proc/loadavg') else 'n/a'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
