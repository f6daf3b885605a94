"""``python -m bench.gemm_strategy``: BLAS then the epilogue pass, or a tiled Numba GEMM applying
the epilogue per tile while it is in cache, for the GEMM shapes of the W1 step.

Fusion rule 3 leaves the choice to measurement, per shape. This measures, in
one process with interleaved calls, ``relu(a @ b + bias)`` three ways:

- ``blas+pass``: ``np.dot(a, b, out=c)`` (NumPy's OpenBLAS), then a Numba pass
  over ``c`` applying bias and ReLU (what graphnet's CPU GEMM step runs);
- ``blas only``: the product alone (the floor of the first);
- ``tiled numba``: a Numba GEMM over blocks of 64 rows x 256 columns, k in
  blocks of 256, accumulating each tile in a local float32 block and applying
  bias + ReLU to the tile before it leaves the cache (written by hand here).

Every variant is checked against NumPy first. The result decides the CPU
lowering: the tiled GEMM is used only for shapes where it wins (none, so far:
see docs/benchmarks.md).

    python -m bench.gemm_strategy [--rounds 15]
"""
from __future__ import annotations

import argparse
import os
import time

import numba
import numpy as np
from numba import prange

#: (m, k, n) of the W1 B=128 forward products and the backward's weight gradients
SHAPES = ((128, 784, 1024), (128, 1024, 1024), (128, 1024, 10), (784, 128, 1024), (1024, 128, 1024))
TILE_M, TILE_N, TILE_K = 64, 256, 256


@numba.njit(parallel=True, cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def tiled_gemm_bias_relu(a, b, bias, c):
    m, k = a.shape
    n = b.shape[1]
    tiles_m = (m + TILE_M - 1) // TILE_M
    tiles_n = (n + TILE_N - 1) // TILE_N
    for t in prange(tiles_m * tiles_n):
        i0 = (t // tiles_n) * TILE_M
        j0 = (t % tiles_n) * TILE_N
        i1, j1 = min(i0 + TILE_M, m), min(j0 + TILE_N, n)
        width = j1 - j0
        acc = np.zeros((TILE_M, TILE_N), np.float32)
        for k0 in range(0, k, TILE_K):
            k1 = min(k0 + TILE_K, k)
            for i in range(i0, i1):
                row = acc[i - i0, :width]   # zero-based slices: offset indexing does not vectorize
                ar = a[i]
                for kk in range(k0, k1):
                    av = ar[kk]
                    br = b[kk, j0:j1]
                    for jj in range(width):
                        row[jj] += av * br[jj]
        bias_tile = bias[j0:j1]
        for i in range(i0, i1):     # the epilogue, on the tile while it is in cache
            row, cr = acc[i - i0, :width], c[i, j0:j1]
            for jj in range(width):
                cr[jj] = max(row[jj] + bias_tile[jj], np.float32(0))


@numba.njit(parallel=True, cache=True, error_model="numpy")
def bias_relu_pass(c, bias):
    for i in prange(c.shape[0]):
        cr = c[i]
        for j in range(c.shape[1]):
            cr[j] = max(cr[j] + bias[j], np.float32(0))


def variants(a, b, bias, c):
    def blas_pass():
        np.dot(a, b, out=c)
        bias_relu_pass(c, bias)

    return {"blas+pass": blas_pass, "blas only": lambda: np.dot(a, b, out=c),
            "tiled numba": lambda: tiled_gemm_bias_relu(a, b, bias, c)}


def measure(shape, rounds):
    m, k, n = shape
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    c = np.empty((m, n), np.float32)
    expected = np.maximum(a @ b + bias, 0)
    runs = variants(a, b, bias, c)
    for name in ("blas+pass", "tiled numba"):
        runs[name]()
        np.testing.assert_allclose(c, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.gemm_strategy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"relu(a @ b + bias), float32, {numba.get_num_threads()} Numba threads (load {load:.1f}); "
          "GFLOP/s, and time / blas+pass:")
    for shape in SHAPES:
        medians = measure(shape, args.rounds)
        flops = 2.0 * shape[0] * shape[1] * shape[2]
        base = medians["blas+pass"]
        print(f"  {'x'.join(map(str, shape)):15s} " + "  ".join(
            f"{name}: {flops / t / 1e9:6.1f} ({t / base:.2f}x)" for name, t in medians.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
