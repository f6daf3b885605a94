"""``python -m bench.gpu``: the benchmark workloads on an NVIDIA GPU, graphnet CUDA vs graphnet CPU.

    python -m bench.gpu                 # every workload (W1..W5 of bench/README.md)
    python -m bench.gpu --quick         # tiny shapes, few repeats
    python -m bench.gpu --only W1,W5    # some workloads (a family or a case id)
    python -m bench.gpu --simulator     # the correctness checks only, in NVIDIA's simulator (slow)

The graphs are the workloads' own (:func:`bench.workloads._build_graphnet`),
compiled with ``backend="cuda"``. Before timing, the CUDA variant must agree
with the CPU one (rtol 1e-3; dropout masks are the same bits on both). Then
both are timed in interleaved blocks (:mod:`bench.timing`). A CUDA call is
timed as users see it: feeds copied up, fetches and updated shared variables
copied back (see docs/cuda.md), so a call ends when its results are on the
host. Each row also says which GEMM ran (the tiled kernel, or cuBLAS through
CuPy), which steps fell back to the host, and the bytes that crossed the bus.

Without a GPU (or without numba-cuda) it says so and exits 0: there is nothing
to measure. Results go to ``bench/results/gpu-<timestamp>.json`` and ``.md``.
Exit status 2 when a correctness check failed.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import sys
import time

RTOL = 1e-3
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes and few repeats")
    parser.add_argument("--only", default="", help="comma-separated workloads (W1..W5) or case ids")
    parser.add_argument("--blocks", type=int, default=None, help="interleaved blocks per variant")
    parser.add_argument("--block-seconds", type=float, default=None, help="length of one block")
    parser.add_argument("--simulator", action="store_true",
                        help="run the correctness checks in the CUDA simulator (no timing)")
    parser.add_argument("--out", default=RESULTS_DIR, help="directory for the JSON and Markdown results")
    return parser.parse_args(argv)


def gpu_unavailable(simulator):
    """Why the CUDA backend cannot run here, or None."""
    if importlib.util.find_spec("numba_cuda") is None:
        return "numba-cuda is not installed (pip install -e '.[cuda]')"
    if simulator:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"   # before numba.cuda is imported
        return None
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return "NUMBA_ENABLE_CUDASIM=1 is set: simulator timings mean nothing (use --simulator for the checks)"
    from numba import cuda
    if not cuda.is_available():
        return f"no usable NVIDIA GPU ({str(cuda.cuda_error() or 'no CUDA driver').strip()})"
    return None


class _OnDevice:
    """``graphnet`` whose ``function`` compiles for the CUDA backend: the workloads' graphs, unchanged."""

    def __init__(self, gn):
        self._gn = gn

    def __getattr__(self, name):
        return getattr(self._gn, name)

    def function(self, *args, **kwargs):
        return self._gn.function(*args, backend="cuda", **kwargs)


def build_runners(case, problem):
    import graphnet as gn
    from bench.workloads import GraphnetRunner, _build_graphnet

    class CudaRunner(GraphnetRunner):
        def __init__(self, case, problem):
            self.case, self.problem = case, problem
            self.feeds, self.fn, self.check_outputs = _build_graphnet(_OnDevice(gn), case, problem, True)

    return {"graphnet cuda": CudaRunner(case, problem), "graphnet cpu": GraphnetRunner(case, problem, fuse=True)}


def mismatch(values, reference):
    import numpy as np
    for k, (a, b) in enumerate(zip(values, reference)):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        scale = float(np.max(np.abs(b))) if b.size else 0.0
        if a.shape != b.shape or not np.allclose(a, b, rtol=RTOL, atol=RTOL * max(scale, 1e-30)):
            return f"output {k}: max |diff| {float(np.max(np.abs(a - b))) if a.shape == b.shape else 'shape'}"
    return None


def describe_kernels(fn):
    """Which GEMM variants ran, and which steps ran on the host."""
    gemms = [f"{k.name}:{k.ran}" for k in fn.kernels if k.kind == "gemm"]
    host = [f"{k.name}({','.join(k.ops)})" for k in fn.kernels if k.device == "host"]
    return {"kernels": len(fn.kernels), "gemms": gemms, "host_fallbacks": host}


def run_case(case, settings, log):
    from bench.timing import interleaved
    from bench.workloads import make_problem
    row = {"case": case.id, "title": case.title, "notes": []}
    problem = make_problem(case)
    start = time.perf_counter()
    runners = build_runners(case, problem)
    values = {name: runner.check() for name, runner in runners.items()}
    row["build_and_check_s"] = time.perf_counter() - start
    why = mismatch(values["graphnet cuda"], values["graphnet cpu"])
    cuda_fn = runners["graphnet cuda"].fn
    row.update(describe_kernels(cuda_fn))
    row["device"] = cuda_fn.program.device
    if why:
        row["check"] = f"FAILED: {why}"
        log(f"  CHECK FAILED: graphnet cuda disagrees with graphnet cpu: {why}")
        return row
    row["check"] = "passed"
    log(f"  check passed (rtol {RTOL}); GEMMs {row['gemms'] or '-'}; host fallbacks {row['host_fallbacks'] or '-'}")
    if settings["simulator"]:
        return row
    before = cuda_fn.program.transfers
    runners["graphnet cuda"].run()
    after = cuda_fn.program.transfers
    row["bus_bytes_per_call"] = {"up": after["bytes_uploaded"] - before["bytes_uploaded"],
                                 "down": after["bytes_downloaded"] - before["bytes_downloaded"]}
    timings = interleaved({name: r.run for name, r in runners.items()}, settings["blocks"], settings["block_seconds"])
    row["timings"] = {name: t.as_dict() for name, t in timings.items()}
    row["gemms"] = describe_kernels(cuda_fn)["gemms"]   # what the timed calls ran
    cpu, gpu = timings["graphnet cpu"].median, timings["graphnet cuda"].median
    if cpu and gpu:
        row["speedup"] = cpu / gpu
        log(f"  cuda {gpu * 1e3:9.4f} ms   cpu {cpu * 1e3:9.4f} ms   cpu/cuda {cpu / gpu:6.2f}   "
            f"bus {row['bus_bytes_per_call']['up']} B up, {row['bus_bytes_per_call']['down']} B down")
    for name, t in timings.items():
        if t.error:
            row["notes"].append(f"{name} failed while timed: {t.error}")
    return row


def markdown(results):
    lines = [f"# graphnet CUDA vs CPU ({results['date']})", "", f"Device: {results['device']}", "",
             "| case | cuda ms | cpu ms | cpu/cuda | GEMMs | host fallbacks | bus up/down (B) |",
             "|---|---:|---:|---:|---|---|---|"]
    for row in results["rows"]:
        t = row.get("timings", {})
        ms = lambda name: f"{t[name]['median_s'] * 1e3:.4f}" if t.get(name, {}).get("median_s") else "-"  # noqa: E731
        bus = row.get("bus_bytes_per_call", {})
        lines.append(f"| {row['case']} | {ms('graphnet cuda')} | {ms('graphnet cpu')} | "
                     f"{row.get('speedup', float('nan')):.2f} | {' '.join(row.get('gemms', [])) or '-'} | "
                     f"{' '.join(row.get('host_fallbacks', [])) or '-'} | {bus.get('up', '-')}/{bus.get('down', '-')} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    why = gpu_unavailable(args.simulator)
    if why:
        log(f"bench.gpu: nothing to measure: {why}.")
        return 0
    from bench.workloads import all_cases
    only = [w.strip() for w in args.only.split(",") if w.strip()]
    cases = [c for c in all_cases(args.quick) if not only or c.family in only or c.id in only]
    settings = {"blocks": args.blocks or (3 if args.quick else 15),
                "block_seconds": args.block_seconds or (0.005 if args.quick else 0.15), "simulator": args.simulator}
    results = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "settings": settings, "rows": []}
    failed = False
    for case in cases:
        log(f"{case.id}: {case.title}")
        row = run_case(case, settings, log)
        results["rows"].append(row)
        results.setdefault("device", row.get("device"))
        failed |= row["check"] != "passed"
    if not args.simulator:
        os.makedirs(args.out, exist_ok=True)
        stem = os.path.join(args.out, "gpu-" + results["date"].replace(":", "-"))
        with open(stem + ".json", "w") as file:
            json.dump(results, file, indent=1, default=str)
        with open(stem + ".md", "w") as file:
            file.write(markdown(results))
        log(f"wrote {stem}.json and {stem}.md")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
