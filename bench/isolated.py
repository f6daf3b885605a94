"""Each framework in its own process: the W1 step of graphnet, PyTorch and JAX, timed apart.

In one process, every library's thread pool changes the others' times (by up to 3.5x seen
here on W1), so the main run's interleaved figures can favour one peer. Here each variant
of a case is timed in a new process of its own; the processes of a case take turns over
``rounds`` (so a burst of load elsewhere hits them alike) and each variant's figure is the
median over its processes. A last process imports PyTorch and JAX and runs their steps, then
times graphnet's: how much the peers' thread pools cost graphnet in a shared process.

    python -m bench.isolated [--quick] [--cases W1-B128,W1-B16] [--rounds 2]

``python -m bench`` runs it when PyTorch or JAX is installed and puts the ratios in its report.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

VARIANTS = ("graphnet fused", "pytorch", "jax")
CASES = ("W1-B128", "W1-B16")


def _builders(names, threads):
    from bench import peers
    from bench.workloads import GraphnetRunner
    builders, notes = peers.load_peers(threads, [n for n in names if n in peers.PEERS])
    if "graphnet fused" in names:
        builders["graphnet fused"] = lambda c, p: GraphnetRunner(c, p, fuse=True)
    return builders, notes


def time_in_this_process(case_id, variant, threads, blocks, block_seconds, with_peers=False, quick=False):
    """Median seconds of one call of ``variant`` on ``case_id`` (after building and checking it);
    with ``with_peers``, PyTorch's and JAX's runners are built and run here first."""
    from bench.timing import interleaved
    from bench.workloads import all_cases, make_problem
    from graphnet.compiler.runtime import threads as gn_threads
    gn_threads.set_num_threads(threads)
    case = next(c for c in all_cases(quick) if c.id == case_id)
    problem = make_problem(case)
    neighbours = [n for n in ("pytorch", "jax") if with_peers]
    builders, notes = _builders([variant, *neighbours], threads)
    if variant not in builders:
        return {"skipped": notes.get(variant, "not installed")}
    for name in neighbours:   # their thread pools started and busy once, as in a shared script
        if name in builders:
            runner = builders[name](case, problem)
            runner.check()
            for _ in range(20):
                runner.run()
    runner = builders[variant](case, problem)
    runner.check()
    for _ in range(20):
        runner.run()
    timing = interleaved({variant: runner.run}, blocks, block_seconds)[variant]
    return {"median_s": timing.median, "min_s": timing.min,
            "peers_in_process": [n for n in neighbours if n in builders]}


def _spawn(case_id, variant, threads, blocks, block_seconds, with_peers, quick):
    command = [sys.executable, "-m", "bench.isolated", "--child", case_id, variant, "--threads", str(threads),
               "--blocks", str(blocks), "--block-seconds", str(block_seconds)]
    command += ["--with-peers"] if with_peers else []
    command += ["--quick"] if quick else []
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, GRAPHNET_QUIET="1"))
    if done.returncode != 0:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(cases=CASES, rounds=2, threads=2, blocks=9, block_seconds=0.15, quick=False):
    """{case: {variant: median over its processes}, with ratios}: see the module's text."""
    import statistics

    from bench.workloads import all_cases
    known = {c.id for c in all_cases(quick)}
    results = {}
    for case_id in [c for c in cases if c in known]:
        runs = {v: [] for v in VARIANTS}
        runs["graphnet beside pytorch and jax"] = []
        for _ in range(rounds):
            for variant in VARIANTS:
                runs[variant].append(_spawn(case_id, variant, threads, blocks, block_seconds, False, quick))
            runs["graphnet beside pytorch and jax"].append(
                _spawn(case_id, "graphnet fused", threads, blocks, block_seconds, True, quick))
        row = {}
        for variant, measured in runs.items():
            times = [m["median_s"] for m in measured if "median_s" in m]
            row[variant] = {"median_s": statistics.median(times)} if times else {"skipped": measured[0]}
        graphnet = row["graphnet fused"].get("median_s")
        peers = {v: row[v]["median_s"] for v in ("pytorch", "jax") if "median_s" in row[v]}
        if graphnet and peers:
            best = min(peers, key=peers.get)
            row["vs_best_peer"] = {"peer": best, "ratio": graphnet / peers[best]}
        beside = row["graphnet beside pytorch and jax"].get("median_s")
        if graphnet and beside:
            row["beside_peers_vs_alone"] = beside / graphnet
        results[case_id] = row
    return results


def lines(results):
    out = []
    for case_id, row in results.items():
        parts = [f"{v} {1e3 * r['median_s']:.2f} ms" for v, r in row.items()
                 if isinstance(r, dict) and "median_s" in r]
        text = f"{case_id}, each in its own process: " + ", ".join(parts)
        if "vs_best_peer" in row:
            text += f"; graphnet/{row['vs_best_peer']['peer']} {row['vs_best_peer']['ratio']:.2f}x (target <= 0.9x)"
        if "beside_peers_vs_alone" in row:
            text += f"; graphnet with PyTorch and JAX in its process {row['beside_peers_vs_alone']:.2f}x alone " \
                    "(target <= 1.1x)"
        out.append(text)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.isolated", description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", nargs=2, metavar=("CASE", "VARIANT"), help=argparse.SUPPRESS)
    parser.add_argument("--with-peers", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--blocks", type=int, default=9)
    parser.add_argument("--block-seconds", type=float, default=0.15)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(time_in_this_process(*args.child, args.threads, args.blocks, args.block_seconds,
                                              args.with_peers, args.quick)))
        return 0
    results = run([c for c in args.cases.split(",") if c], args.rounds, args.threads, args.blocks,
                  args.block_seconds, args.quick)
    for line in lines(results):
        print(line)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
