"""``python -m bench.blas_libraries``: sgemm at the W1 step's shapes, NumPy's OpenBLAS against
Intel's MKL runtime (``pip install mkl``: ``libmkl_rt``, called through ctypes ``cblas_sgemm``).

Issue 16 allows another BLAS from the package registries if it wins, measured, with a
fallback when absent. This measures the eight products of a W1 B=128 training step as the
step runs them (the backward ones with transpose flags, no copies), on 1 and 2 threads each,
in one process, in blocks of calls per library (alternating twice); every product is checked against NumPy (float64)
before it is timed.

    python -m bench.blas_libraries [--mkl PATH/libmkl_rt.so.N] [--rounds 40]

Without ``--mkl`` it looks for ``libmkl_rt.so*`` beside this Python (``sys.prefix/lib``) and
in ``$MKL_LIB``; without MKL it measures OpenBLAS alone and says so.

``--builds`` measures instead the two OpenBLAS builds this process loads, on one thread, at
the products graphnet runs on one thread (W7's, the Theano MLP's, W1 B=16's): NumPy's through
``np.dot(out=)``, ``np.matmul(out=)`` and, from compiled code, ``blas_symbols.gemm_into``; SciPy's
through Numba's ``np.dot`` (``gemm_into`` with ``SCIPY_BLAS``); and which one
``blas_symbols.faster_library`` chose. CPU time of this thread (``time.thread_time``), medians
of calls interleaved round by round.
"""
from __future__ import annotations

import argparse
import ctypes
import glob
import os
import sys
import time

import numpy as np

#: (name, m, k, n, transpose a, transpose b) of the W1 B=128 products (784-1024-1024-10)
SHAPES = (("x @ W0", 128, 784, 1024, False, False),
          ("h1 @ W1", 128, 1024, 1024, False, False),
          ("h2 @ W2", 128, 1024, 10, False, False),
          ("dz @ W2.T", 128, 10, 1024, False, True),
          ("dh2 @ W1.T", 128, 1024, 1024, False, True),
          ("h2.T @ dz", 1024, 128, 10, True, False),
          ("h1.T @ dh2", 1024, 128, 1024, True, False),
          ("x.T @ dh1", 784, 128, 1024, True, False))

CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_TRANS = 101, 111, 112


def find_mkl(explicit=None):
    """The path of ``libmkl_rt``, or None."""
    if explicit:
        return explicit
    for directory in (os.environ.get("MKL_LIB"), os.path.join(sys.prefix, "lib")):
        if directory:
            found = sorted(glob.glob(os.path.join(directory, "libmkl_rt.so*")))
            if found:
                return found[-1]
    return None


class Mkl:
    """``cblas_sgemm`` and the thread count of an MKL runtime library."""

    def __init__(self, path):
        self.library = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        self.sgemm = self.library.cblas_sgemm
        f, i, p = ctypes.c_float, ctypes.c_int, ctypes.c_void_p
        self.sgemm.argtypes = [i, i, i, i, i, i, f, p, i, p, i, f, p, i]
        self.sgemm.restype = None
        self.set_threads = self.library.MKL_Set_Num_Threads
        self.set_threads.argtypes, self.set_threads.restype = [i], None
        version = ctypes.create_string_buffer(256)
        self.library.MKL_Get_Version_String(version, 256)
        self.version = version.value.decode(errors="replace").strip()

    def matmul(self, a, b, out, trans_a, trans_b):
        """``out = op(a) @ op(b)``, with ``a``, ``b`` the stored (untransposed) C-order arrays."""
        m, n = out.shape
        k = a.shape[0] if trans_a else a.shape[1]
        self.sgemm(CBLAS_ROW_MAJOR, CBLAS_TRANS if trans_a else CBLAS_NO_TRANS,
                   CBLAS_TRANS if trans_b else CBLAS_NO_TRANS, m, n, k, 1.0, a.ctypes.data, a.shape[1],
                   b.ctypes.data, b.shape[1], 0.0, out.ctypes.data, n)


def openblas_threads():
    """A setter of NumPy's OpenBLAS thread count (graphnet's own, through its C API)."""
    from graphnet.compiler.runtime import threads
    return threads._numpy_blas().use


def operands(m, k, n, trans_a, trans_b, rng):
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    return a, b, np.empty((m, n), np.float32)


def measure(rounds=40, mkl_path=None, thread_counts=(1, 2), log=print):
    """{shape name: {"openblas/1": s, "mkl/1": s, ...}} medians; and the MKL version (or None)."""
    mkl = Mkl(mkl_path) if mkl_path else None
    use_openblas = openblas_threads()
    rng = np.random.default_rng(0)
    results = {}
    for name, m, k, n, trans_a, trans_b in SHAPES:
        a, b, out = operands(m, k, n, trans_a, trans_b, rng)
        left, right = (a.T if trans_a else a), (b.T if trans_b else b)
        expected = left.astype(np.float64) @ right.astype(np.float64)
        runs = {}
        for threads in thread_counts:
            runs[f"openblas/{threads}"] = (lambda t=threads: (use_openblas(t), np.dot(left, right, out=out)))
            if mkl is not None:
                runs[f"mkl/{threads}"] = (lambda t=threads: (mkl.set_threads(t),
                                                             mkl.matmul(a, b, out, trans_a, trans_b)))
        for variant, run in runs.items():   # correctness first
            out[...] = np.nan
            run()
            np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max(),
                                       err_msg=f"{variant} {name}")
        # In blocks, not call by call: one library's threads still spinning after its call
        # (MKL's for KMP_BLOCKTIME) slowed the other's next call up to 50x when interleaved.
        samples = {variant: [] for variant in runs}
        for block in range(2):
            for variant, run in (runs.items() if block == 0 else reversed(runs.items())):
                time.sleep(0.3)   # the other library's threads back asleep
                for _ in range(3):
                    run()
                for _ in range(rounds // 2):
                    start = time.perf_counter()
                    run()
                    samples[variant].append(time.perf_counter() - start)
        results[name] = {variant: float(np.median(t)) for variant, t in samples.items()}
        flops = 2.0 * m * k * n
        log(f"  {name:11s} {m:4d}x{k:4d}x{n:4d} " + "  ".join(
            f"{variant} {1e6 * t:8.1f} us ({flops / t / 1e9:5.1f} GF/s)" for variant, t in results[name].items()))
    return results, (mkl.version if mkl else None)


#: (name, m, k, n, transpose a, transpose b) of products graphnet runs on one BLAS thread
ONE_THREAD_SHAPES = (("W7 h @ U", 32, 128, 512, False, False),
                     ("W7 dz @ U.T", 32, 512, 128, False, True),
                     ("MLP x @ W", 20, 784, 500, False, False),
                     ("W1 x @ W0 (B=16)", 16, 784, 1024, False, False),
                     ("W1 x.T @ dh1 (B=16)", 784, 16, 1024, True, False),
                     ("1024x128 @ 128x1024", 1024, 128, 1024, True, False),
                     ("128x784 @ 784x1024", 128, 784, 1024, False, False))


def measure_builds(rounds=40, log=print):
    """{shape name: {variant: median s}} of NumPy's and SciPy's OpenBLAS at ``ONE_THREAD_SHAPES``."""
    from graphnet.compiler.runtime import blas_symbols, threads
    from graphnet.compiler.runtime.blas_symbols import NUMPY_BLAS, SCIPY_BLAS, gemm_into
    threads.compiled_code_blas()   # both builds on one thread
    rng = np.random.default_rng(0)
    results = {}
    for name, m, k, n, trans_a, trans_b in ONE_THREAD_SHAPES:
        a, b, out = operands(m, k, n, trans_a, trans_b, rng)
        left, right = (a.T if trans_a else a), (b.T if trans_b else b)
        expected = left.astype(np.float64) @ right.astype(np.float64)
        runs = {"numpy np.dot": lambda: np.dot(left, right, out=out),
                "numpy np.matmul": lambda: np.matmul(left, right, out=out),
                "numpy gemm_into": lambda: gemm_into(left, right, out, NUMPY_BLAS),
                "scipy gemm_into": lambda: gemm_into(left, right, out, SCIPY_BLAS)}
        for variant, run in runs.items():   # correctness first (and the compiles)
            out[...] = np.nan
            run()
            np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max(),
                                       err_msg=f"{variant} {name}")
        samples = {variant: [] for variant in runs}
        for round_ in range(rounds):
            for variant, run in (runs.items() if round_ % 2 else reversed(runs.items())):
                start = time.thread_time()
                run()
                samples[variant].append(time.thread_time() - start)
        results[name] = {variant: float(np.median(t)) for variant, t in samples.items()}
        chosen = blas_symbols.faster_library(m, n, k, np.float32, trans_a, trans_b)
        log(f"  {name:20s} {m:4d}x{k:4d}x{n:4d} " + "  ".join(
            f"{variant} {1e6 * t:7.1f}" for variant, t in results[name].items())
            + f" us; chosen: {'SciPy' if chosen == SCIPY_BLAS else 'NumPy'}'s")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.blas_libraries", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mkl", default=None, help="path of libmkl_rt.so (default: looked for)")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--builds", action="store_true", help="NumPy's OpenBLAS against SciPy's, one thread")
    args = parser.parse_args(argv)
    if args.builds:
        load = open("/proc/loadavg").read().strip() if os.path.exists("/proc/loadavg") else "n/a"
        print(f"sgemm on one thread, NumPy's OpenBLAS against SciPy's, CPU-time medians over {args.rounds} "
              f"interleaved calls (load {load})")
        measure_builds(args.rounds)
        return 0
    # MKL sizes its OpenMP pool at its first call: with the count set only then by
    # MKL_Set_Num_Threads, and its threads sleeping at once (KMP_BLOCKTIME=0, graphnet's
    # default), 2 threads ran 1.3x *slower* than 1; with these, 1.8x faster.
    os.environ.setdefault("MKL_NUM_THREADS", "2")
    os.environ.setdefault("KMP_BLOCKTIME", "200")
    os.environ.setdefault("KMP_AFFINITY", "compact,granularity=fine")
    path = find_mkl(args.mkl)
    load = open("/proc/loadavg").read().strip() if os.path.exists("/proc/loadavg") else "n/a"
    print(f"sgemm at the W1 B=128 shapes, medians over {args.rounds} calls in two blocks (load {load}); "
          f"MKL: {path or 'not found (pip install mkl; or --mkl PATH)'}")
    results, version = measure(args.rounds, path)
    if version:
        print(f"MKL {version}")
    totals = {}
    for by_variant in results.values():
        for variant, t in by_variant.items():
            totals[variant] = totals.get(variant, 0.0) + t
    print("  all eight: " + "  ".join(f"{variant} {1e3 * t:.2f} ms" for variant, t in totals.items()))
    print(f"load at end: {open('/proc/loadavg').read().strip() if os.path.exists('/proc/loadavg') else 'n/a'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
