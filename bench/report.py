"""The results as JSON, a Markdown report and a bar chart; and the issues' targets checked.

Ratios are ``variant time / graphnet fused time``: above 1 the variant is
slower than graphnet fused. The targets of issues 3 and 6 are evaluated from
the one run in hand (full-size runs only; ``--quick`` shapes do not match).
"""
from __future__ import annotations

import json
import os

from bench import step_breakdown
from bench.env import describe_blas

VARIANT_ORDER = ("graphnet fused", "graphnet unfused", "numpy", "pytorch", "jax", "hand numba")
PEER_NAMES = ("numpy", "pytorch", "jax")


def _fmt_time(seconds):
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def median(row, variant):
    t = row.get("timings", {}).get(variant)
    return t.get("median_s") if t else None


def ratio(row, variant, base="graphnet fused"):
    a, b = median(row, variant), median(row, base)
    return a / b if a and b else None


def best_peer(row):
    peers = [(median(row, p), p) for p in PEER_NAMES if median(row, p)]
    return min(peers) if peers else (None, None)


# --------------------------------------------------------------------------- targets


def evaluate_targets(results):
    """[{issue, target, measured, met}], from this run's rows and compile times."""
    rows = {r["case"]["id"]: r for r in results["rows"]}
    compile_times = results.get("compile", {})
    targets = []

    def find(task, **dims):
        """The id of the case of ``task`` with these dims (ids changed between versions)."""
        return next((i for i, r in rows.items() if r["case"]["task"] == task
                     and all(r["case"]["dims"].get(k) == v for k, v in dims.items())), None)

    def add(issue, target, measured, met, note=""):
        targets.append({"issue": issue, "target": target, "measured": measured, "met": met, "note": note})

    def fused_over(case_id, variant):
        row = rows.get(case_id)
        return 1.0 / ratio(row, variant) if row and ratio(row, variant) else None

    w1 = compile_times.get("W1-B128", {}).get("graphnet fused", {})
    for phase, limit in (("cold", 2.0), ("warm", 0.5)):
        value = w1.get(phase, {}).get("compile_s")
        add("3", f"W1 compile + first step {phase} <= {limit} s",
            f"{value:.2f} s" if value is not None else "n/a", value is not None and value <= limit)
    w2 = compile_times.get("W2-B128", {}).get("graphnet fused", {})
    for label, phases, field, limit in (("W1 cold build + compile + first step", w1, ("cold", "compile_s"), 1.0),
                                        ("W1 + BN + dropout, the same", w2, ("cold", "compile_s"), 1.5),
                                        ("W1 warm build + first step", w1, ("warm", "compile_s"), 0.3),
                                        ("W1 cold: compiled speed within", w1, ("cold", "compiled_speed_s"), 2.0)):
        value = phases.get(field[0], {}).get(field[1])
        add("17", f"{label} <= {limit} s", f"{value:.2f} s" if value is not None else "n/a",
            value is not None and value <= limit)
    for case_id in ("W1-B128", "W1-B16"):
        row = rows.get(case_id)
        if not row:
            continue
        f_jax, f_np = fused_over(case_id, "jax"), fused_over(case_id, "numpy")
        if case_id == "W1-B128":
            add("3", "W1 B=128 step <= 0.9x JAX", f"{f_jax:.2f}x" if f_jax else "n/a (no JAX)",
                f_jax is not None and f_jax <= 0.9)
            add("3", "W1 B=128 step <= ~0.8x NumPy", f"{f_np:.2f}x" if f_np else "n/a", f_np is not None and f_np <= 0.8)
        best, name = best_peer(row)
        value = median(row, "graphnet fused") / best if best and median(row, "graphnet fused") else None
        add("6", f"{case_id} <= 0.9x best peer", f"{value:.2f}x {name}" if value else "n/a",
            value is not None and value <= 0.9)
    for task, limit in (("bn_relu_fwd", 6e-3), ("bn_relu_bwd", 10e-3)):
        case_id = find(task, rows=4096, cols=4096)
        row = rows.get(case_id)
        value = median(row, "graphnet fused") if row else None
        add("6", f"{case_id} fused <= {limit * 1e3:.0f} ms", _fmt_time(value), value is not None and value <= limit)
    for case_id in [c for c, r in rows.items() if r["case"]["family"] == "W3"]:
        speedup = ratio(rows[case_id], "graphnet unfused")
        add("3+6" if "4096x4096" in case_id else "6", f"{case_id} fused >= 2x unfused",
            f"{speedup:.2f}x" if speedup else "n/a", speedup is not None and speedup >= 2.0)
    for task, limit in (("bn_relu_fwd", 1.2), ("bn_relu_bwd", 1.5)):
        case_id = find(task, rows=4096, cols=4096)
        row = rows.get(case_id)
        hand = ratio(row, "hand numba") if row else None
        value = 1.0 / hand if hand else None
        add("16", f"{case_id} fused <= {limit}x the hand-written Numba kernels",
            f"{value:.2f}x" if value else "n/a", value is not None and value <= limit)
        percent = row.get("rate", {}).get("graphnet fused", {}).get("percent_of_ceiling") if row else None
        add("16", f"{case_id} fused >= 50% of copy bandwidth", f"{percent:.0f}%" if percent else "n/a",
            percent is not None and percent >= 50)
    row = rows.get(find("bias_relu_bwd", rows=4096, cols=4096))
    percent = row.get("rate", {}).get("graphnet fused", {}).get("percent_of_ceiling") if row else None
    add("16", "bias+ReLU backward 4096x4096 fused >= 60% of copy bandwidth", f"{percent:.0f}%" if percent else "n/a",
        percent is not None and percent >= 60)
    row = rows.get(find("softmax_xent", cols=1024))
    if row:
        best, name = best_peer(row)
        value = median(row, "graphnet fused") / best if best and median(row, "graphnet fused") else None
        add("16", "softmax-xent fwd+grad <= 0.8x the fastest of NumPy, PyTorch, JAX",
            f"{value:.2f}x {name}" if value else "n/a", value is not None and value <= 0.8)
    breakdown = results.get("w1_gemm_breakdown")
    if breakdown:
        value = breakdown["gemm_vs_numpy"]
        add("16", f"W1 B=128: GEMM time within a step <= 1.0x the same {breakdown['gemms']} GEMMs through NumPy",
            f"{value:.2f}x ({1e3 * breakdown['gemm_s']:.2f} vs {1e3 * breakdown['numpy_gemms_s']:.2f} ms, "
            f"NumPy's faster: {breakdown.get('numpy_threads', '?')} thread(s))",
            value <= step_breakdown.GEMM_RATIO_TARGET)
        value = breakdown["non_gemm_share"]
        add("16", "W1 B=128: non-GEMM time <= 10% of the step",
            f"{100 * value:.1f}% ({1e3 * breakdown['non_gemm_s']:.2f} of {1e3 * breakdown['step_s']:.2f} ms)",
            value <= step_breakdown.NON_GEMM_SHARE_TARGET)
    _runtime_targets(results, add)
    row = rows.get(find("mlp_infer", batch=1))
    value = median(row, "graphnet fused") if row else None
    add("6", "W4 B=1 inference <= 95 µs", _fmt_time(value), value is not None and value <= 95e-6)
    beaten = []
    for case_id, row in rows.items():
        best, name = best_peer(row)
        fused = median(row, "graphnet fused")
        if best and fused and fused > best:
            beaten.append(f"{case_id} ({name} {fused / best:.2f}x)")
    add("6", "graphnet fused beats every peer on every case", f"slower on {len(beaten)}: " + "; ".join(beaten)
        if beaten else "faster everywhere", not beaten)
    return targets


def _runtime_targets(results, add):
    """The runtime issue's (15) targets: per call, W1 against each peer in its own process,
    W6 against PyTensor, beside a co-tenant, and beside PyTorch and JAX in one process."""
    overhead = results.get("call_overhead", {})
    per_call, cotenant = overhead.get("per_call"), overhead.get("cotenant")
    if per_call:
        value = per_call["x_plus_1_vs_numpy"]
        add("15", "x + 1 per call <= 4x NumPy", f"{value:.1f}x", value <= 4.0)
        value = per_call["step_vs_numpy"]
        add("15", "4x10 CE+SGD step <= 0.5x hand NumPy", f"{value:.2f}x", value <= 0.5)
    for case_id, row in results.get("isolated", {}).items():
        versus = row.get("vs_best_peer")
        add("15", f"{case_id} <= 0.9x the faster of PyTorch and JAX (own processes)",
            f"{versus['ratio']:.2f}x {versus['peer']}" if versus else "n/a (no peer)",
            versus is not None and versus["ratio"] <= 0.9)
        beside = row.get("beside_peers_vs_alone")
        if beside is not None:
            add("15", f"{case_id} with PyTorch and JAX in its process <= 1.1x alone", f"{beside:.2f}x", beside <= 1.1)
    w6 = results.get("w6", {})
    if "ratio" in w6:
        add("15", "W6 Theano MLP loop <= 0.8x PyTensor", f"{w6['ratio']:.2f}x", w6["ratio"] <= 0.8)
    if cotenant:
        value = cotenant["slowdown"]
        add("15", "W1 B=16 beside a 2-thread GEMM process <= 2.5x quiet", f"{value:.1f}x", value <= 2.5)


# ---------------------------------------------------------------------------- output


def markdown(results):
    machine, probes = results["machine"], results["probes"]
    variants = [v for v in VARIANT_ORDER if any(v in r.get("timings", {}) for r in results["rows"])]
    lines = [f"# graphnet benchmark, {results['date']}", "",
             f"Machine: {machine['cpu_model']}, {machine['logical_cpus']} logical CPUs, {machine['threads']} "
             f"threads per variant; load average at start {_load(machine['load_average'])}, at end "
             f"{_load(results.get('load_average_end'))}. Python {machine['python']}; "
             + ", ".join(f"{k} {v}" for k, v in results["versions"].items()) + ".",
             f"Ceilings: GEMM {probes['gemm']['gflops']:.0f} GFLOP/s "
             f"({', '.join(f'{k}: {v:.0f}' for k, v in probes['gemm']['by_shape'].items())}); "
             f"copy {probes['copy']['gbs']:.1f} GB/s "
             f"({', '.join(f'{k}: {v:.1f}' for k, v in probes['copy']['by_method'].items())}).",
             describe_blas(machine.get("blas")),
             f"Timing: {results['settings']['blocks']} interleaved blocks of ~{results['settings']['block_seconds']} s "
             "per variant; median per call, (ratio to graphnet fused: above 1 is slower).", ""]
    lines += ["| case | " + " | ".join(variants) + " | fused rate (% of ceiling) |",
              "|---|" + "---|" * len(variants) + "---|"]
    for row in results["rows"]:
        case = row["case"]
        cells = []
        for v in variants:
            if row.get("refused"):
                cells.append("refused" if v == variants[0] else "")
                continue
            t = median(row, v)
            r = ratio(row, v)
            cells.append(f"{_fmt_time(t)} ({r:.2f}x)" if t and r else _fmt_time(t) if t else "-")
        rate = row.get("rate", {}).get("graphnet fused")
        rate_cell = f"{rate['value']:.1f} {case['metric']} ({rate['percent_of_ceiling']:.0f}%)" if rate else "-"
        lines.append(f"| {case['id']}: {case['title']} | " + " | ".join(cells) + f" | {rate_cell} |")
    lines += ["", "Spread (min–max per call over blocks):", "",
              "| case | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for row in results["rows"]:
        cells = []
        for v in variants:
            t = row.get("timings", {}).get(v)
            cells.append(f"{_fmt_time(t['min_s'])}–{_fmt_time(t['max_s'])}" if t and t.get("min_s") else "-")
        lines.append(f"| {row['case']['id']} | " + " | ".join(cells) + " |")
    if results.get("compile"):
        lines += ["", "Compile + first call, each in a new process (cold: empty kernel and Numba caches; "
                  "warm: a second process on the same caches):", "",
                  "| case | variant | import | cold build + first call | cold: compiled speed after | "
                  "warm build + first call | warm: compiled speed after | warm compiles |",
                  "|---|---|---|---|---|---|---|---|"]
        for case_id, by_variant in results["compile"].items():
            for variant, phases in by_variant.items():
                cold, warm = phases.get("cold", {}), phases.get("warm", {})
                if "error" in cold or "error" in warm or "error" in phases:
                    err = cold.get("error") or warm.get("error") or phases.get("error")
                    lines.append(f"| {case_id} | {variant} | - | error: {err} | | | | |")
                    continue
                lines.append(f"| {case_id} | {variant} | {_fmt_time(cold.get('import_s'))} | "
                             f"{_fmt_time(cold.get('build_s'))} + {_fmt_time(cold.get('first_call_s'))} = "
                             f"**{_fmt_time(cold.get('compile_s'))}** | {_fmt_time(cold.get('compiled_speed_s'))} | "
                             f"{_fmt_time(warm.get('build_s'))} + "
                             f"{_fmt_time(warm.get('first_call_s'))} = **{_fmt_time(warm.get('compile_s'))}** | "
                             f"{_fmt_time(warm.get('compiled_speed_s'))} | {warm.get('numba_compiles', '-')} |")
    if results.get("first_calls"):
        lines += ["", "First call in the benchmark process (JAX: tracing + XLA compile): "
                  + "; ".join(f"{case} {v}: {_fmt_time(t)}" for case, d in results["first_calls"].items()
                              for v, t in d.items()) + "."]
    if results.get("targets"):
        lines += ["", "Targets (issues 3, 6, 15, 16 and 17), from this run:", "", "| issue | target | measured | met |",
                  "|---|---|---|---|"]
        for t in results["targets"]:
            lines.append(f"| {t['issue']} | {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |")
    notes = [f"- {n}" for n in results.get("notes", [])]
    for row in results["rows"]:
        notes += [f"- {row['case']['id']}: {n}" for n in row.get("notes", [])]
    if notes:
        lines += ["", "Notes:", ""] + notes
    return "\n".join(lines) + "\n"


def _load(load):
    return "/".join(f"{x:.1f}" for x in load) if load else "n/a"


def bar_chart(results, path):
    """Per case, each variant's time relative to graphnet fused (log scale)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["rows"] if r.get("timings")]
    variants = [v for v in VARIANT_ORDER if any(v in r["timings"] for r in rows)]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(max(8.0, 0.8 * len(rows)), 5))
    width = 0.8 / len(variants)
    for k, variant in enumerate(variants):
        xs, ys = [], []
        for i, row in enumerate(rows):
            r = ratio(row, variant)
            if r:
                xs.append(i + (k - (len(variants) - 1) / 2) * width)
                ys.append(r)
        ax.bar(xs, ys, width, label=variant)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["case"]["id"] for r in rows], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("time / graphnet fused (log; above 1 = slower)")
    ax.set_title(f"graphnet benchmark {results['date']} ({results['machine']['threads']} threads)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_all(results, directory, stamp):
    os.makedirs(directory, exist_ok=True)
    base = os.path.join(directory, stamp)
    with open(base + ".json", "w") as file:
        json.dump(results, file, indent=1, default=str)
    with open(base + ".md", "w") as file:
        file.write(markdown(results))
    paths = {"json": base + ".json", "markdown": base + ".md"}
    try:
        chart = bar_chart(results, base + ".png")
        if chart:
            paths["chart"] = chart
    except ImportError:
        results.setdefault("notes", []).append("matplotlib not installed: no chart")
    return paths
