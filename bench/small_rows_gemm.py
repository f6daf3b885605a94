"""``python -m bench.small_rows_gemm``: graphnet's float32 product for few rows
(``graphnet/compiler/runtime/small_gemm.py``, accumulators in vector registers) against
OpenBLAS on one and two threads, on cache-hot and on evicted operands (issue 16's GEMM strategy).

Measured here (docs/benchmarks.md, sixth session): 1.3-2x OpenBLAS's one thread on hot
operands, about OpenBLAS's two threads on cold ones. So graphnet runs it where the operands
stay in cache: a compiled loop's per-step products (W7's ``h @ U``).

    python -m bench.small_rows_gemm [--rounds 30]
"""
import argparse
import time

import numpy as np

from graphnet.compiler.runtime.small_gemm import small_gemm_into

SHAPES = ((16, 784, 1024), (16, 1024, 1024), (20, 784, 500), (32, 128, 512), (9, 33, 47))


def measure(shape, rounds=30):
    """{variant: median seconds} for an (m x k) @ (k x n) float32 product, hot and cold (the
    operands evicted by a 64 MiB pass before each call); every variant checked against float64
    NumPy first."""
    from threadpoolctl import threadpool_limits
    m, k, n = shape
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    out = np.empty((m, n), np.float32)
    reference = a.astype(np.float64) @ b
    small_gemm_into(a, b, out)
    tolerance = 1e-5 * max(1.0, np.abs(reference).max())
    if np.abs(out - reference).max() > tolerance:
        raise AssertionError(f"small_gemm_into disagrees with NumPy at {shape}")
    evict = np.ones(16 << 20, np.float32)
    variants = [("small rows, 1 thread", lambda: small_gemm_into(a, b, out), 1),
                ("openblas, 1 thread", lambda: np.dot(a, b, out=out), 1),
                ("openblas, 2 threads", lambda: np.dot(a, b, out=out), 2)]
    medians = {}
    for name, run, threads in variants:
        with threadpool_limits(threads, user_api="blas"):
            for cold in (False, True):
                times = []
                for _ in range(rounds):
                    if cold:
                        evict += 1
                    start = time.perf_counter()
                    run()
                    times.append(time.perf_counter() - start)
                medians[name + (", cold" if cold else "")] = sorted(times)[len(times) // 2]
    return medians


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.small_rows_gemm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    for shape in SHAPES:
        medians = measure(shape, args.rounds)
        print(f"{shape[0]}x{shape[1]} @ {shape[1]}x{shape[2]}: "
              + ", ".join(f"{name} {1e6 * t:.0f} us" for name, t in medians.items()))


if __name__ == "__main__":
    main()
