"""Compile time, cold and warm, each measured in a process of its own, and the time to compiled speed.

Cold: a new process with empty caches (graphnet's kernel cache and Numba's,
in a fresh temporary directory; JAX and PyTorch keep no cache across processes
by default). Warm: a second new process on the same directories, as a user's
second run of a script. Each process builds the step, calls it once, then
keeps stepping until it runs at its compiled speed, and reports

- ``import_s``: importing the framework (Numba's import included);
- ``build_s``: ``gn.function(...)`` (passes, fusion plan, generated modules) or
  the peer's model and ``jit``/``torch.compile`` wrapper;
- ``first_call_s``: the first step (graphnet tiered: on NumPy while kernels
  compile in a worker; compiled-only: every kernel compiled or loaded in line;
  JAX and torch.compile: tracing and compiling);
- ``compile_s = build_s + first_call_s``, the issue's "compile + first step";
- ``compiled_speed_s``: from the start of the build to the end of the first
  step from which the steps run at their steady speed (the median of the
  next five steps within 1.25x of the median of the last ten);
- ``step_s``: that steady step time;
- graphnet only: ``all_compiled_s`` (build start to the first call after
  which every step ran compiled), ``modules_written``/``modules_loaded``, and
  ``numba_compiles`` (kernels compiled, in this process or by a background
  worker) and ``numba_cache_hits``, which show that a warm process compiled
  nothing.

Run as ``python -m bench.compile_time CASE_ID VARIANT CACHE_DIR [--quick] [--threads N]``
(VARIANT: tiered, compiled-only, unfused, jax, torch.compile); it prints one JSON line.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench.env import pin_threads, threads_from_argv

#: report variant -> (command-line variant, environment it runs under)
VARIANTS = {
    "graphnet fused": ("tiered", {"GRAPHNET_TIERED": "1"}),
    "graphnet compiled-only": ("compiled-only", {"GRAPHNET_TIERED": "0"}),
    "graphnet unfused": ("unfused", {"GRAPHNET_TIERED": "1"}),
    "jax": ("jax", {"JAX_PLATFORMS": "cpu"}),
    "torch.compile": ("torch.compile", {}),
}
#: the variants measured for the training steps (W1, W2); other cases measure graphnet's two
TRAINING_VARIANTS = ("graphnet fused", "graphnet compiled-only", "jax", "torch.compile")
STEADY_STEPS = 10       # the steady step time: the median of this many last steps
SETTLE_STEPS = 5        # a step is at compiled speed when the median of it and the next ones is
SETTLE_RATIO = 1.25     # within this ratio of the steady time
MAX_STEPPING_S = 120.0  # stop stepping after this long, compiled or not


def peer_available(variant):
    module = {"jax": "jax", "torch.compile": "torch"}.get(variant)
    if module is None:
        return True
    import importlib.util
    return importlib.util.find_spec(module) is not None


def _graphnet_runner(case, problem, cache_dir, fuse):
    from bench.workloads import GraphnetRunner
    from graphnet.compiler.runtime import cache
    cache.set_cache_dir(cache_dir)
    return GraphnetRunner(case, problem, fuse=fuse)


def _peer_runner(case, problem, variant):
    from bench import peers
    if variant == "jax":
        return peers.build_jax(case, problem)
    return peers.build_torch(case, problem, compile=True)


def _framework_import(variant):
    if variant in ("tiered", "compiled-only", "unfused"):
        import graphnet  # noqa: F401
    elif variant == "jax":
        import jax  # noqa: F401
    else:
        import torch  # noqa: F401


def compiled_speed(steps, start):
    """(seconds from ``start`` to the end of the first step at steady speed, steady step time)."""
    durations = [d for _, d in steps]
    steady = statistics.median(durations[-STEADY_STEPS:])
    for i in range(len(steps)):
        window = durations[i:i + SETTLE_STEPS]
        if statistics.median(window) <= SETTLE_RATIO * steady:
            return steps[i][0] - start, steady
    return steps[-1][0] - start, steady


def measure_in_this_process(case_id, variant, cache_dir, quick):
    from bench.workloads import all_cases, make_problem
    case = next(c for c in all_cases(quick) if c.id == case_id)
    problem = make_problem(case)
    start = time.perf_counter()
    _framework_import(variant)
    imported = time.perf_counter()
    graphnet = variant in ("tiered", "compiled-only", "unfused")
    runner = (_graphnet_runner(case, problem, cache_dir, fuse=variant != "unfused") if graphnet
              else _peer_runner(case, problem, variant))
    built = time.perf_counter()
    runner.run()
    called = time.perf_counter()
    steps, all_compiled = [(called, called - built)], None
    while time.perf_counter() - built < MAX_STEPPING_S:
        if graphnet and all_compiled is None and _all_compiled(runner.fn):
            all_compiled = steps[-1][0]
        if (not graphnet or all_compiled is not None) and len(steps) > STEADY_STEPS + SETTLE_STEPS:
            break
        begin = time.perf_counter()
        runner.run()
        end = time.perf_counter()
        steps.append((end, end - begin))
    reached, steady = compiled_speed(steps[1:], imported) if len(steps) > 1 else (called - imported, None)
    result = {"import_s": imported - start, "build_s": built - imported, "first_call_s": called - built,
              "compile_s": called - imported, "compiled_speed_s": reached, "step_s": steady, "steps": len(steps)}
    if graphnet:
        result.update(_graphnet_counts(runner.fn))
        result["all_compiled_s"] = None if all_compiled is None else all_compiled - imported
    return result


def _all_compiled(fn):
    return all(k.current_tier in (None, "compiled") for k in fn.kernels)


def _graphnet_counts(fn):
    from graphnet.compiler.runtime import cache
    dispatchers = {id(d): d for k in fn.kernels for d in (k.compiled, k.compiled_parallel) if d is not None}
    background = {id(call.background.ticket): call.background.ticket for k in fn.kernels
                  for call in k.all_background() if call.background.ticket is not None}
    stats = cache.compile_stats()
    return {"modules_written": stats["modules_written"], "modules_loaded": stats["modules_loaded"],
            "numba_compiles": sum(cache.count_numba_compiles(d) for d in dispatchers.values())
            + sum(t.reason is None for t in background.values()),
            "background_compiles": len(background),
            "numba_cache_hits": sum(cache.count_numba_cache_hits(d) for d in dispatchers.values())
            - sum(t.reason is None for t in background.values()),
            "kernels": len(fn.kernels)}


def measure(case_id, variant, threads, quick, timeout=600):
    """{"cold": {...}, "warm": {...}} for one variant of a case, or {"error": ...}."""
    directory = tempfile.mkdtemp(prefix="graphnet-bench-cache-")
    name, extra_env = VARIANTS[variant]
    env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(directory, "numba"), GRAPHNET_QUIET="1", **extra_env)
    env.pop("GRAPHNET_CACHE_DIR", None)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, "-m", "bench.compile_time", case_id, name, os.path.join(directory, "kernels"),
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
