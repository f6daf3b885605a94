"""The machine's ceilings, measured first: GEMM GFLOP/s and memory-copy GB/s.

Every achieved rate in the report is read against these: a GEMM-bound
workload against the GEMM probe, a memory-bound one against the copy probe.

- GEMM: float32 ``np.dot(a, b, out)`` (OpenBLAS, the BLAS graphnet and NumPy
  share) at the MLP's own shape (128x784 @ 784x1024) and at 1024^3; the
  ceiling is the faster.
- Copy: 64 MiB float32, counted as one read plus one write (the convention of
  DESIGN.md). ``np.copyto`` runs on one thread; a Numba ``prange`` copy on the
  thread budget; the ceiling is the faster.
"""
from __future__ import annotations

import numpy as np

from bench.timing import interleaved


def gemm_probe(blocks=5, block_seconds=0.1, shapes=((128, 784, 1024), (1024, 1024, 1024))):
    rng = np.random.default_rng(0)
    results = {}
    for m, k, n in shapes:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        out = np.empty((m, n), np.float32)
        timing = interleaved({"dot": lambda a=a, b=b, out=out: np.dot(a, b, out=out)}, blocks, block_seconds)["dot"]
        results[f"{m}x{k}x{n}"] = 2.0 * m * k * n / timing.min / 1e9
    return {"gflops": max(results.values()), "by_shape": results}


def copy_probe(mib=64, blocks=5, block_seconds=0.1):
    n = mib * (1 << 20) // 4
    src = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    dst = np.empty_like(src)
    dst[:] = 0.0  # fault the pages in before timing
    variants = {"numpy copyto (1 thread)": lambda: np.copyto(dst, src)}
    parallel = _numba_parallel_copy()
    if parallel is not None:
        parallel(src, dst)  # compile
        variants["numba prange copy"] = lambda: parallel(src, dst)
    timings = interleaved(variants, blocks, block_seconds)
    by_method = {name: 2.0 * src.nbytes / t.min / 1e9 for name, t in timings.items() if t.samples}
    return {"gbs": max(by_method.values()), "by_method": by_method, "mib": mib}


def _numba_parallel_copy():
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(parallel=True, cache=False)
    def copy(src, dst):
        n = src.shape[0]
        chunks = numba.get_num_threads()
        for c in numba.prange(chunks):
            dst[c * n // chunks:(c + 1) * n // chunks] = src[c * n // chunks:(c + 1) * n // chunks]

    return copy


def run_probes(quick=False):
    blocks, seconds = (2, 0.02) if quick else (7, 0.15)
    gemm = gemm_probe(blocks, seconds, shapes=((128, 784, 1024),) if quick else ((128, 784, 1024), (1024, 1024, 1024)))
    copy = copy_probe(mib=8 if quick else 64, blocks=blocks, block_seconds=seconds)
    return {"gemm": gemm, "copy": copy}
