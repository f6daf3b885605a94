"""The thread budget every variant gets, fixed before NumPy, Numba, PyTorch or JAX load.

OpenBLAS, OpenMP, MKL and Numba read their thread counts from the environment
when they start, so :func:`pin_threads` must run before anything imports
NumPy (``python -m bench`` calls it first thing). On a machine with more cores
than the budget it also narrows the process's CPU affinity to that many cores,
which is the one limit XLA's CPU thread pool obeys. PyTorch is told again with
``torch.set_num_threads`` when :mod:`bench.peers` imports it.

Nothing here imports NumPy.
"""
from __future__ import annotations

import os
import platform
import sys

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

_pinned = {"threads": None, "cpus": None}


def pin_threads(n):
    """Give every library ``n`` threads; returns the CPUs the process may run on."""
    n = max(1, int(n))
    for var in THREAD_VARIABLES:
        os.environ[var] = str(n)
    # No OpenMP wait policy here: graphnet sets its own pool's when it starts it (threads.py),
    # and a PASSIVE policy in the environment slowed PyTorch's OpenMP (W7 31.5 against 8.2 ms).
    flags = os.environ.get("XLA_FLAGS", "")
    if n == 1 and "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
    cpus = None
    if hasattr(os, "sched_getaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        if len(allowed) > n:
            os.sched_setaffinity(0, allowed[:n])
        cpus = sorted(os.sched_getaffinity(0))
    _pinned.update(threads=n, cpus=cpus)
    return cpus


def threads_from_argv(argv, default=2):
    """The ``--threads N`` of a command line, read before argparse runs (and NumPy loads)."""
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if arg.startswith("--threads="):
            return int(arg.split("=", 1)[1])
    return default


def machine_description():
    """What the numbers were measured on: CPU model, cores, load, versions (filled in lazily)."""
    info = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "threads": _pinned["threads"],
        "affinity": _pinned["cpus"],
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    return info


#: what this machine's environment may set to pin OpenBLAS's kernels (older OpenBLAS builds
#: computed wrong results on some processors); a current NumPy then runs older, slower kernels
BLAS_KERNEL_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def blas_kernels():
    """Which kernels each loaded BLAS runs, and the variables that chose them.

    On this project's AMD EPYC (Zen 5) the machine's environment sets
    ``OPENBLAS_CORETYPE=Haswell``: NumPy's and SciPy's OpenBLAS then run their AVX2
    kernels, 1.5x slower on every product than the AVX-512 ones they pick themselves
    (128x1024 @ 1024x1024: 1.17 against 0.78 ms on two threads). Every figure is only
    comparable with the kernels it was measured on, so the report names them.
    Call after NumPy (and SciPy, when used) loaded: OpenBLAS reads the variables then."""
    found = {"environment": {var: os.environ.get(var) for var in BLAS_KERNEL_VARIABLES}, "libraries": []}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        found["libraries"] = None   # threadpoolctl (in the bench extra) tells; absent, unknown
        return found
    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            found["libraries"].append({"library": os.path.basename(lib.get("filepath", "?")),
                                       "version": lib.get("version"), "kernels": lib.get("architecture"),
                                       "threads": lib.get("num_threads")})
    return found


def describe_blas(blas):
    """One line of :func:`blas_kernels`' findings, for the report."""
    if not blas:
        return "BLAS kernels: not recorded."
    env = ", ".join(f"{k}={v}" if v is not None else f"{k} unset" for k, v in blas["environment"].items())
    if blas["libraries"] is None:
        return f"BLAS kernels: unknown (threadpoolctl not installed); {env}."
    libs = "; ".join(f"{lib['library']} {lib['version']}: {lib['kernels']}" for lib in blas["libraries"])
    return f"BLAS kernels: {libs or 'none loaded'} ({env})."


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
