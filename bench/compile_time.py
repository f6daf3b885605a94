"""Compile time, cold and warm, each measured in a process of its own.

Cold: a new process with an empty graphnet kernel cache and an empty Numba
cache (both in a fresh temporary directory). Warm: a second new process on the
same directories, as a user's second run of a script. Each reports

- ``import_s``: ``import graphnet`` (Numba's import included);
- ``build_s``: ``gn.function(...)``: passes, fusion plan, generated modules;
- ``first_call_s``: the first call, where Numba compiles or loads each kernel;
- ``compile_s = build_s + first_call_s``, the issue's "compile + first step";
- ``modules_written``/``modules_loaded`` and ``numba_compiles``/``numba_cache_hits``,
  which show that the warm process compiled nothing.

Run as ``python -m bench.compile_time CASE_ID fused|unfused CACHE_DIR [--quick] [--threads N]``;
it prints one JSON line.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from bench.env import pin_threads, threads_from_argv

VARIANTS = {"graphnet fused": "fused", "graphnet unfused": "unfused"}


def measure_in_this_process(case_id, variant, cache_dir, quick):
    from bench.workloads import GraphnetRunner, all_cases, make_problem
    case = next(c for c in all_cases(quick) if c.id == case_id)
    problem = make_problem(case)
    start = time.perf_counter()
    import graphnet  # noqa: F401
    from graphnet.compiler.runtime import cache
    imported = time.perf_counter()
    cache.set_cache_dir(cache_dir)
    runner = GraphnetRunner(case, problem, fuse=variant == "fused")
    built = time.perf_counter()
    runner.run()
    called = time.perf_counter()
    dispatchers = {id(d): d for k in runner.fn.kernels for d in (k.compiled, getattr(k, "compiled_parallel", None))
                   if d is not None}
    stats = cache.compile_stats()
    return {"import_s": imported - start, "build_s": built - imported, "first_call_s": called - built,
            "compile_s": called - imported, "modules_written": stats["modules_written"],
            "modules_loaded": stats["modules_loaded"],
            "numba_compiles": sum(cache.count_numba_compiles(d) for d in dispatchers.values()),
            "numba_cache_hits": sum(cache.count_numba_cache_hits(d) for d in dispatchers.values()),
            "kernels": len(runner.fn.kernels)}


def measure(case_id, variant, threads, quick, timeout=600):
    """{"cold": {...}, "warm": {...}} for one graphnet variant of a case, or {"error": ...}."""
    directory = tempfile.mkdtemp(prefix="graphnet-bench-cache-")
    env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(directory, "numba"))
    env.pop("GRAPHNET_CACHE_DIR", None)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, "-m", "bench.compile_time", case_id, VARIANTS[variant], os.path.join(directory, "kernels"),
               "--threads", str(threads)] + (["--quick"] if quick else [])
    result = {}
    try:
        for phase in ("cold", "warm"):
            proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=repo, timeout=timeout)
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
                result[phase] = {"error": " | ".join(tail)}
                break
            result[phase] = json.loads(proc.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        result["error"] = f"timed out after {timeout} s"
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return result


def main(argv):
    case_id, variant, cache_dir = argv[:3]
    print(json.dumps(measure_in_this_process(case_id, variant, cache_dir, "--quick" in argv)))


if __name__ == "__main__":
    pin_threads(threads_from_argv(sys.argv))
    main(sys.argv[1:])
