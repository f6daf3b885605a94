"""``python -m bench``: graphnet fused vs unfused vs NumPy / PyTorch / JAX.

    python -m bench                  # everything (several minutes)
    python -m bench --quick          # tiny shapes, few repeats: the CI smoke test (< 1 min)
    python -m bench --only W1,W3     # some workloads (a family W1..W5 or a case id)
    python -m bench --profile W1-B128 [--unfused]   # per-kernel times of one graphnet case

Exit status: 0 when every correctness check passed, 2 when one failed (that
case was then not timed).
"""
import sys

from bench.env import pin_threads, threads_from_argv

if __name__ == "__main__":
    # Before NumPy loads anywhere: thread counts are read at library start-up.
    pin_threads(threads_from_argv(sys.argv))

import argparse  # noqa: E402
import datetime  # noqa: E402
import gc  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from bench import (  # noqa: E402
    call_overhead, compile_time, convnet, hand_kernels, isolated, lstm_w7, peers, probes, report, step_breakdown,
    theano_mlp,
)
from bench.env import blas_kernels, describe_blas, machine_description  # noqa: E402
from bench.timing import interleaved  # noqa: E402
from bench.workloads import GraphnetRunner, all_cases, make_problem  # noqa: E402

RTOL = 1e-3
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes and few repeats (CI smoke test)")
    parser.add_argument("--only", default="", help="comma-separated workloads (W1..W5) or case ids")
    parser.add_argument("--threads", type=int, default=2, help="threads for every variant (default 2)")
    parser.add_argument("--blocks", type=int, default=None, help="interleaved blocks per variant")
    parser.add_argument("--block-seconds", type=float, default=None, help="length of one block")
    parser.add_argument("--variants", default="", help="comma-separated subset of variants")
    parser.add_argument("--no-compile", action="store_true", help="skip the cold/warm compile subprocesses")
    parser.add_argument("--pytensor", default=os.environ.get("GRAPHNET_BENCH_PYTENSOR"),
                        help="W6: a Python with PyTensor (its own virtual environment) to run the Theano MLP on")
    parser.add_argument("--no-overhead", action="store_true",
                        help="skip the per-call and co-tenant measurements (skipped anyway with --only)")
    parser.add_argument("--out", default=RESULTS_DIR, help="directory for JSON, Markdown and PNG")
    parser.add_argument("--cache-dir", default=None, help="graphnet kernel cache for this process")
    parser.add_argument("--profile", metavar="CASE", help="print per-kernel times of one graphnet case")
    parser.add_argument("--unfused", action="store_true", help="with --profile: the unfused function")
    parser.add_argument("--render", metavar="JSON", help="rewrite the Markdown and chart of an earlier run")
    return parser.parse_args(argv)


def selected(case, only):
    if not only:
        return True
    return any(case.family == w or case.id == w for w in only)


def values_close(values, reference):
    """None when every value matches the reference within float32 tolerance, else why not."""
    if len(values) != len(reference):
        return f"{len(values)} values, expected {len(reference)}"
    for k, (a, b) in enumerate(zip(values, reference)):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a.shape != b.shape:
            return f"value {k}: shape {a.shape}, expected {b.shape}"
        scale = max(float(np.max(np.abs(b))) if b.size else 0.0, 1e-12)
        if not np.allclose(a, b, rtol=RTOL, atol=RTOL * scale):
            worst = float(np.max(np.abs(a - b)))
            return f"value {k}: max abs difference {worst:.3g} (scale {scale:.3g}, rtol {RTOL})"
    return None


def run_case(case, builders, settings, log):
    """Build, check, then time every variant of one case; returns the report row."""
    row = {"case": {"id": case.id, "family": case.family, "task": case.task, "title": case.title,
                    "dims": case.dims, "metric": case.metric, "work": case.work}, "notes": []}
    problem = make_problem(case)
    runners, first_calls = {}, {}
    for name, build in builders.items():
        try:
            start = time.perf_counter()
            runner = build(case, problem)
            if runner is None:
                continue   # this variant has nothing for the case (hand-written kernels: some tasks)
            runners[name] = runner
            first_calls[name] = time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001 - one variant's failure must not stop the others
            note = f"{name} skipped: could not build ({type(exc).__name__}: {exc})"
            row["notes"].append(note)
            log(f"  NOTE {note}")
    values = {}
    for name, runner in list(runners.items()):
        try:
            start = time.perf_counter()
            values[name] = runner.check()
            first_calls[name] += time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001
            note = f"{name} skipped: failed on its first call ({type(exc).__name__}: {str(exc)[:300]})"
            row["notes"].append(note)
            log(f"  NOTE {note}")
            del runners[name]
    row["first_call_s"] = first_calls
    oracle = "numpy" if "numpy" in values else next(iter(values), None)
    row["check"] = {"reference": oracle, "mismatches": {}}
    for name, vals in values.items():
        why = values_close(vals, values[oracle])
        if why:
            row["check"]["mismatches"][name] = why
    row["check"]["passed"] = not row["check"]["mismatches"] and oracle is not None
    if row["check"]["mismatches"]:
        row["refused"] = True
        for name, why in row["check"]["mismatches"].items():
            log(f"  CHECK FAILED: {name} disagrees with {oracle}: {why}")
        log("  refusing to time this case")
        return row
    log(f"  check passed: {', '.join(values)} agree with {oracle} (rtol {RTOL})")
    timings = interleaved({name: r.run for name, r in runners.items()}, settings["blocks"],
                          settings["block_seconds"])
    row["timings"] = {name: t.as_dict() for name, t in timings.items()}
    for name, t in timings.items():
        if t.error:
            row["notes"].append(f"{name} failed while timed: {t.error}")
    row["rate"] = {}
    ceiling = settings["ceilings"][case.metric]
    for name, t in timings.items():
        if t.median:
            value = case.work / t.median / 1e9
            row["rate"][name] = {"value": value, "percent_of_ceiling": 100 * value / ceiling}
    base = timings.get("graphnet fused")
    for name, t in timings.items():
        if t.median:
            r = t.median / base.median if base and base.median else float("nan")
            log(f"  {name:17s} median {t.median * 1e3:10.4f} ms  min {t.min * 1e3:10.4f}  max {t.max * 1e3:10.4f}"
                f"  x fused {r:6.2f}  {row['rate'][name]['value']:8.1f} {case.metric}")
    return row


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.render:
        import json
        with open(args.render) as file:
            results = json.load(file)
        results["targets"] = [] if results["settings"].get("quick") else report.evaluate_targets(results)
        directory, name = os.path.split(os.path.abspath(args.render))
        paths = report.write_all(results, directory, name[:-len(".json")])
        print(report.markdown(results))
        print("wrote " + ", ".join(paths.values()))
        return 0
    if args.profile:
        from bench.profile import format_profile, profile_case
        _use_cache(args)
        print(format_profile(profile_case(args.profile, fuse=not args.unfused, quick=args.quick)))
        return 0
    started = time.perf_counter()
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    only = [w.strip() for w in args.only.split(",") if w.strip()]
    cases = [c for c in all_cases(args.quick) if selected(c, only)]
    if not cases:
        log(f"no case matches --only {args.only}")
        return 1
    settings = {"blocks": args.blocks or (3 if args.quick else 15),
                "block_seconds": args.block_seconds or (0.005 if args.quick else 0.15),
                "threads": args.threads, "quick": args.quick}
    machine = machine_description()
    results = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine,
               "settings": settings, "rows": [], "notes": []}
    if machine["load_average"] and machine["load_average"][0] > 0.5 * (machine["logical_cpus"] or 1):
        note = (f"the machine was busy at start (load {machine['load_average'][0]:.1f} on "
                f"{machine['logical_cpus']} CPUs): timings are noisy, and 2-thread BLAS suffers most")
        results["notes"].append(note)
        log(f"NOTE {note}")

    _use_cache(args)
    import graphnet
    from graphnet.compiler.runtime import threads as gn_threads
    gn_threads.set_num_threads(args.threads)
    machine["blas"] = blas_kernels()   # once NumPy's (and SciPy's) OpenBLAS loaded
    log(describe_blas(machine["blas"]))

    wanted = [v for v in args.variants.split(",") if v] or list(report.VARIANT_ORDER)
    peer_builders, peer_notes = peers.load_peers(args.threads, [p for p in report.PEER_NAMES if p in wanted])
    for name, why in peer_notes.items():
        results["notes"].append(f"{name} skipped: {why}")
        log(f"NOTE {name} skipped: {why} (the command that installs it ends the run)")
    builders = {}
    if "graphnet fused" in wanted:
        builders["graphnet fused"] = lambda c, p: GraphnetRunner(c, p, fuse=True)
    if "graphnet unfused" in wanted:
        builders["graphnet unfused"] = lambda c, p: GraphnetRunner(c, p, fuse=False)
    builders.update(peer_builders)
    if hand_kernels.NAME in wanted:
        builders[hand_kernels.NAME] = hand_kernels.build_hand
    results["versions"] = dict(peers.versions(peer_builders), graphnet=graphnet.__version__,
                               numba=__import__("numba").__version__)

    log(f"probes: GEMM and memory copy ({args.threads} threads)")
    results["probes"] = probes.run_probes(quick=args.quick)
    settings["ceilings"] = {"GFLOP/s": results["probes"]["gemm"]["gflops"], "GB/s": results["probes"]["copy"]["gbs"]}
    log(f"  GEMM {settings['ceilings']['GFLOP/s']:.1f} GFLOP/s, copy {settings['ceilings']['GB/s']:.1f} GB/s")

    for case in cases:
        log(f"{case.id}: {case.title}")
        row = run_case(case, builders, settings, log)
        results["rows"].append(row)
        gc.collect()
    if not args.quick and any(c.id == "W1-B128" for c in cases) and "graphnet fused" in builders:
        log("W1-B128: the GEMM time within a step against the same GEMMs through NumPy (issue 16)")
        results["w1_gemm_breakdown"] = step_breakdown.measure("W1-B128", args.threads,
                                                              log=lambda text: log("  " + text.strip()))
        gc.collect()
    results["first_calls"] = {r["case"]["id"]: {k: v for k, v in r.get("first_call_s", {}).items() if k == "jax"}
                              for r in results["rows"] if "jax" in r.get("first_call_s", {})}

    if not (args.no_overhead or only):
        log("the time around the kernels: per call, and beside a 2-thread GEMM process")
        results["call_overhead"] = call_overhead.run(quick=args.quick)
        for line in call_overhead.lines(results["call_overhead"]):
            results["notes"].append(line)
            log(f"  {line}")
        log("W6: the Theano MLP tutorial's loop (784-500-10 tanh, batch 20, givens), each framework in its process")
        w6 = results["w6"] = theano_mlp.run(epochs=1 if args.quick else 3, batches=10 if args.quick else 100,
                                           pytensor=args.pytensor)
        line = "W6 Theano MLP loop: " + ", ".join(
            f"{name} {r['seconds']:.2f} s (final cost {r['cost']:.4f})" if "seconds" in r else f"{name}: {r}"
            for name, r in w6.items() if name != "ratio")
        if "ratio" in w6:
            line += f"; graphnet/PyTensor {w6['ratio']:.2f}x (target <= 0.8x)"
        results["notes"].append(line)
        log(f"  {line}")
        if {"pytorch", "jax"} & set(peer_builders):
            log("W1, each framework in its own process (and graphnet beside PyTorch and JAX in one)")
            results["isolated"] = isolated.run(rounds=1 if args.quick else 2, threads=args.threads,
                                               blocks=3 if args.quick else 9, quick=args.quick)
            for line in isolated.lines(results["isolated"]):
                results["notes"].append(line)
                log(f"  {line}")
        log("W8: a LeNet-5-like training step and a conv-BN-ReLU block, each framework in its process")
        w8 = results["w8"] = convnet.run(("W8b-block-fwd",) if args.quick else convnet.CASES,
                                         rounds=1 if args.quick else 3, seconds=0.2 if args.quick else 2.0,
                                         threads=args.threads, quick=args.quick, log=lambda text: None)
        for line in convnet.lines(w8):
            results["notes"].append(line)
            log(f"  {line}")

        log("W7: one SGD step of an LSTM (seq 50, batch 32, in 64, hidden 128, readout 64), each framework in its process")
        w7 = results["w7"] = lstm_w7.run(steps=2 if args.quick else 20, repeats=2 if args.quick else 5,
                                         threads=args.threads,
                                         shape=lstm_w7.QUICK_SHAPE if args.quick else lstm_w7.SHAPE)
        line = "W7 LSTM step: " + ", ".join(
            f"{name} {r['step_ms']:.1f} ms (cold {r['cold_s']:.1f} s"
            + (f", every compile done {r['compiled_s']:.1f} s" if "compiled_s" in r else "")
            + f", first loss {r['first_loss']:.5f})"
            if "step_ms" in r else f"{name}: {r}" for name, r in w7.items() if name != "ratio")
        if "ratio" in w7:
            line += f"; graphnet / the faster peer {w7['ratio']:.2f}x (target <= 1.0x)"
        results["notes"].append(line)
        log(f"  {line}")

    if not args.no_compile:
        results["compile"] = {}
        probe_cases = [c for c in cases if c.compile_probe]
        if args.quick:
            probe_cases = probe_cases[:1]
        for case in probe_cases:
            for variant in compile_variants(case, args, builders):
                log(f"compile time, {case.id} {variant}: cold and warm processes")
                measured = compile_time.measure(case.id, variant, args.threads, args.quick)
                results["compile"].setdefault(case.id, {})[variant] = measured
                cold, warm = measured.get("cold", {}), measured.get("warm", {})
                if "compile_s" in cold and "compile_s" in warm:
                    log(f"  cold {cold['compile_s']:.2f} s (import {cold['import_s']:.2f} s), compiled speed after "
                        f"{cold['compiled_speed_s']:.2f} s; warm {warm['compile_s']:.2f} s, compiled speed after "
                        f"{warm['compiled_speed_s']:.2f} s" + (f"; warm process compiled {warm['numba_compiles']} "
                                                               "kernels" if "numba_compiles" in warm else ""))
                else:
                    log(f"  NOTE compile measurement failed: {measured}")

    results["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    results["targets"] = [] if args.quick else report.evaluate_targets(results)
    results["elapsed_s"] = time.perf_counter() - started
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + ("-quick" if args.quick else "")
    paths = report.write_all(results, args.out, stamp)
    log("")
    log(report.markdown(results))
    log("wrote " + ", ".join(paths.values()))
    if peers.skipped_peers_line(peer_notes):
        log(peers.skipped_peers_line(peer_notes))
    failed = [r["case"]["id"] for r in results["rows"] if not r["check"]["passed"]]
    if failed:
        log(f"CORRECTNESS CHECK FAILED for {', '.join(failed)}: those cases were not timed")
        return 2
    return 0


def compile_variants(case, args, builders):
    """What the cold/warm compile probe measures for ``case``: for the training steps (W1, W2)
    graphnet tiered and compiled-only and the JAX / torch.compile peers that are installed."""
    if args.quick:
        return ["graphnet fused"] if "graphnet fused" in builders else []
    if case.task == "mlp_train":
        return [v for v in compile_time.TRAINING_VARIANTS
                if (v.startswith("graphnet") and "graphnet fused" in builders) or compile_time.peer_available(v)]
    return [v for v in ("graphnet fused", "graphnet unfused") if v in builders]


def _use_cache(args):
    from graphnet.compiler.runtime import cache
    cache.set_cache_dir(args.cache_dir or os.path.join(RESULTS_DIR, ".cache"))


if __name__ == "__main__":
    sys.exit(main())
