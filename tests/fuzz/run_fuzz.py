"""The long differential fuzz run, in chunks of worker processes.

Every compiled kernel stays in memory for the life of a process (Numba does
not free machine code), about 1.5 MB per fuzzed graph, so 10,000 graphs run as
chunks of ``--chunk`` graphs, each in a fresh process, ``--jobs`` at a time.
A worker does not stop at a failure: it records the recipe and goes on, so one
run reports every mismatch it met (shrink them by hand; ``test_fuzz_findings``
keeps the minimal graphs of those already fixed). Every third graph also runs
with ``check_numerics=True`` on reference and fused cpu.

    python tests/fuzz/run_fuzz.py --examples 10000 --jobs 2

``pytest tests/fuzz --fuzz-long`` (or ``GRAPHNET_FUZZ_LONG=1``) runs it too.
Exit status 0 when every graph agreed; the summary is one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def worker(examples, seed, out, max_steps=10):
    """Fuzz ``examples`` graphs (of up to ``max_steps`` steps) from hypothesis seed ``seed``;
    append failures to ``out`` (JSON lines)."""
    sys.path[:0] = [HERE, REPO]
    warnings.simplefilter("ignore")
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as with_seed

    from differential import CHECKED_VARIANTS, disagreement, run_variants
    from graph_recipes import recipes

    tally = {"graphs": 0, "checked": 0, "failures": 0, "ops": []}
    ops = set()

    @with_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(recipes(max_steps=max_steps))
    def check(recipe):
        tally["graphs"] += 1
        ops.update(step.op for step in recipe.steps)
        checked = tally["graphs"] % 3 == 0
        tally["checked"] += checked
        try:
            problem = disagreement(run_variants(recipe, CHECKED_VARIANTS) if checked else run_variants(recipe))
        except Exception as exc:  # noqa: BLE001 - the harness itself failing is reported too
            problem = f"harness error {type(exc).__name__}: {exc}"
        if problem:
            tally["failures"] += 1
            with open(out, "a") as file:
                file.write(json.dumps({"seed": seed, "graph": tally["graphs"], "check_numerics": checked,
                                       "recipe": repr(recipe), "problem": problem}) + "\n")

    check()
    tally["ops"] = sorted(ops)
    return tally


def run(examples, jobs=2, chunk=1000, seed=0, out=None, log=sys.stderr, max_steps=10):
    """Fuzz ``examples`` graphs in chunks; returns the summary (failures listed in ``out``)."""
    out = out or os.path.join(os.getcwd(), "fuzz-failures.jsonl")
    chunks = [(min(chunk, examples - start), seed + k) for k, start in enumerate(range(0, examples, chunk))]
    started = time.time()

    def one(args):
        count, chunk_seed = args
        done = subprocess.run([sys.executable, __file__, "--worker", "--examples", str(count),
                               "--seed", str(chunk_seed), "--out", out, "--max-steps", str(max_steps)],
                              capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO))
        if done.returncode != 0:
            return {"graphs": 0, "checked": 0, "failures": 1, "ops": [],
                    "crash": f"worker seed {chunk_seed} exited {done.returncode}: {done.stderr[-2000:]}"}
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"[fuzz] seed {chunk_seed}: {result['graphs']} graphs, {result['failures']} failures, "
              f"{time.time() - started:.0f} s", file=log, flush=True)
        return result

    with ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(one, chunks))
    return {"graphs": sum(r["graphs"] for r in results), "checked": sum(r["checked"] for r in results),
            "failures": sum(r["failures"] for r in results), "seconds": round(time.time() - started),
            "distinct_ops": len({op for r in results for op in r["ops"]}), "max_steps": max_steps,
            "crashes": [r["crash"] for r in results if "crash" in r], "failures_file": out}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON lines file the failures are appended to")
    parser.add_argument("--max-steps", type=int, default=10, help="the most ops a graph applies (longer chains fuse deeper)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.examples, args.seed, args.out, args.max_steps)))
        return 0
    summary = run(args.examples, args.jobs, args.chunk, args.seed, args.out, max_steps=args.max_steps)
    print(json.dumps(summary))
    return 0 if summary["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
