"""``python -m bench.w1_floor``: what W1's training step is made of, on graphnet, JAX and OpenBLAS,
and the least time a step built on OpenBLAS's products can take (issue 15's W1 target).

Each part runs in a process of its own (the processes take turns over ``--rounds``); every
figure is a median of interleaved blocks (``bench.timing``), parameters and inputs those of
``bench.workloads`` for the case:

- **jax**: the whole step (momentum, buffers donated, as ``bench.peers``), the same step with
  plain SGD, the gradients alone (returned, no update), the forward loss alone;
- **graphnet**: the step (momentum), the SGD step, the forward loss, each a ``gn.function``;
- **openblas**: each of the step's eight products alone through NumPy's BLAS on two threads
  (the faster of ``np.dot`` and ``np.matmul``, on the same operands every call: in a step the
  working set of both batch sizes fits this machine's 32 MiB L3), and the copy bandwidth
  (``bench.probes``) of arrays the size of the weights and velocities (15 MiB for W1, hot as
  a step's are).

The floor is the products' sum plus the momentum update's least traffic (each parameter's
weight and velocity read and written once, 16 bytes, the gradient never stored) at that
bandwidth. The target is 0.9x JAX's step. When the floor is above the target, no schedule of
OpenBLAS's products and graphnet's kernels reaches it; what would is a product kernel faster
than OpenBLAS's at these shapes, or an update whose traffic overlaps the products' compute.

    python -m bench.w1_floor [--cases W1-B16,W1-B128] [--rounds 2] [--quick]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys

PARTS = ("openblas", "jax", "graphnet")
CASES = ("W1-B16", "W1-B128")
TARGET = 0.9
#: bytes a momentum update moves per parameter at least: weight and velocity, read and written
UPDATE_BYTES = 16


def _case(case_id, quick):
    from bench.workloads import all_cases, make_problem
    case = next(c for c in all_cases(quick) if c.id == case_id)
    return case, make_problem(case)


def _timed(variants, blocks, block_seconds):
    """{name: median seconds}; each variant called twice first (compiles, warm caches)."""
    from bench.timing import interleaved
    for fn in variants.values():
        fn()
        fn()
    return {name: t.median for name, t in interleaved(variants, blocks, block_seconds).items()}


def products(case):
    """{name: (left, right)} of the step's eight products, as the step multiplies them."""
    import numpy as np
    sizes, batch = case.dims["sizes"], case.dims["batch"]
    rng = np.random.default_rng(0)
    normal = lambda *shape: rng.standard_normal(shape, dtype=np.float32)  # noqa: E731
    found = {}
    for layer in range(len(sizes) - 1):
        rows, cols = sizes[layer], sizes[layer + 1]
        found[f"h{layer} @ W{layer}"] = (normal(batch, rows), normal(rows, cols))
        found[f"h{layer}.T @ dz{layer}"] = (normal(batch, rows).T, normal(batch, cols))
        if layer:
            found[f"dz{layer} @ W{layer}.T"] = (normal(batch, cols), normal(rows, cols).T)
    return found


def measure_openblas(case, problem, blocks, block_seconds):
    import numpy as np

    from bench.probes import copy_probe
    from graphnet.compiler.runtime.threads import _numpy_blas
    blas = _numpy_blas()
    blas.use(2)
    variants = {}
    for name, (left, right) in products(case).items():
        out = np.empty((left.shape[0], right.shape[1]), np.float32)
        expected = left.astype(np.float64) @ right.astype(np.float64)
        for multiply in (np.dot, np.matmul):
            multiply(left, right, out=out)
            np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
            variants[(name, multiply.__name__)] = (lambda m=multiply, a=left, b=right, o=out: m(a, b, out=o))
    medians = _timed(variants, blocks, block_seconds)
    each = {}
    for (name, _), seconds in medians.items():
        each[name] = min(each.get(name, seconds), seconds)
    params = sum(p.size for p in problem["params"].values())
    # a copy of the weights' and velocities' size (read once, written once), hot as in a step
    mib = math.ceil(UPDATE_BYTES // 2 * params / (1 << 20))
    return {"products_s": each, "products_sum_s": sum(each.values()), "params": params,
            "copy_gbs": copy_probe(mib=mib, blocks=blocks, block_seconds=block_seconds)["gbs"]}


def measure_jax(case, problem, blocks, block_seconds):
    import jax
    import jax.numpy as jnp

    from bench.peers import build_jax, jax_mlp_model
    from bench.workloads import LR
    x, y = jnp.asarray(problem["x"]), jnp.asarray(problem["y"].astype("int32"))
    model_loss = jax_mlp_model(case, jax, jnp)[1]

    def loss(params, x, y):   # W1 has no batch norm and no dropout: no running statistics, no masks
        return model_loss(params, [], x, y, None)[0]

    def sgd(params, x, y):
        grads = jax.grad(loss)(params, x, y)
        return {k: params[k] - LR * grads[k] for k in params}

    grads = jax.jit(jax.grad(loss))
    forward = jax.jit(loss)
    sgd_step = jax.jit(sgd, donate_argnums=(0,))
    fixed = {k: jnp.asarray(v) for k, v in problem["params"].items()}
    state = {"params": {k: jnp.asarray(v) for k, v in problem["params"].items()}}
    ready = jax.block_until_ready

    def run_sgd():
        state["params"] = ready(sgd_step(state["params"], x, y))

    step = build_jax(case, problem).run
    return _timed({"step": step, "sgd step": run_sgd, "grads only": lambda: ready(grads(fixed, x, y)),
                   "forward loss": lambda: ready(forward(fixed, x, y))}, blocks, block_seconds)


def measure_graphnet(case, problem, blocks, block_seconds):
    from bench.workloads import GraphnetRunner
    runners = {"step": GraphnetRunner(case, problem), "sgd step": GraphnetRunner(case, problem, optimizer="sgd"),
               "forward loss": GraphnetRunner(case, problem, optimizer=None)}
    for runner in runners.values():
        runner.check()   # the compiles awaited, the thread choices made
    return _timed({name: runner.run for name, runner in runners.items()}, blocks, block_seconds)


MEASURES = {"openblas": measure_openblas, "jax": measure_jax, "graphnet": measure_graphnet}


def _spawn(part, case_id, blocks, block_seconds, quick):
    command = [sys.executable, "-m", "bench.w1_floor", "--child", part, case_id, "--blocks", str(blocks),
               "--block-seconds", str(block_seconds)] + (["--quick"] if quick else [])
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, GRAPHNET_QUIET="1"))
    if done.returncode != 0:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _median_of(runs):
    """The median over processes of each figure of ``runs`` (nested dicts of numbers)."""
    first = runs[0]
    if isinstance(first, dict):
        return {k: _median_of([r[k] for r in runs]) for k in first}
    return statistics.median(runs)


def run(cases=CASES, rounds=2, blocks=7, block_seconds=0.1, quick=False):
    """{case: {part: figures (medians over its processes)}, "floor": ...}."""
    from bench.workloads import all_cases
    known = [c.id for c in all_cases(quick)]
    results = {}
    for case_id in cases:
        if case_id not in known:
            results[case_id] = {"error": f"no case {case_id}{' with --quick' if quick else ''} (known: {known})"}
            continue
        measured = {part: [] for part in PARTS}
        for _ in range(rounds):
            for part in PARTS:
                measured[part].append(_spawn(part, case_id, blocks, block_seconds, quick))
        row = {}
        for part, runs in measured.items():
            good = [r for r in runs if "error" not in r]
            row[part] = _median_of(good) if good else runs[0]
        if all("error" not in row[p] for p in PARTS):
            blas = row["openblas"]
            update_s = UPDATE_BYTES * blas["params"] / (blas["copy_gbs"] * 1e9)
            floor = blas["products_sum_s"] + update_s
            target = TARGET * row["jax"]["step"]
            row["floor"] = {"products_s": blas["products_sum_s"], "update_s": update_s, "floor_s": floor,
                            "target_s": target, "floor_vs_target": floor / target,
                            "graphnet_vs_jax": row["graphnet"]["step"] / row["jax"]["step"]}
        results[case_id] = row
    return results


def lines(results):
    for case_id, row in results.items():
        if "error" in row:
            yield f"{case_id}: {row['error']}"
            continue
        if "floor" not in row:
            yield f"{case_id}: " + "; ".join(f"{p} {row[p]}" for p in PARTS if "error" in row[p])
            continue
        ms = lambda s: f"{1e3 * s:.2f}"  # noqa: E731
        yield (f"{case_id}: jax step {ms(row['jax']['step'])} ms (sgd {ms(row['jax']['sgd step'])}, gradients "
               f"{ms(row['jax']['grads only'])}, forward {ms(row['jax']['forward loss'])}); graphnet step "
               f"{ms(row['graphnet']['step'])} (sgd {ms(row['graphnet']['sgd step'])}, forward "
               f"{ms(row['graphnet']['forward loss'])}): {row['floor']['graphnet_vs_jax']:.2f}x JAX")
        yield "    OpenBLAS, each product alone: " + ", ".join(
            f"{name} {1e6 * s:.0f}" for name, s in row["openblas"]["products_s"].items()) + " us"
        f = row["floor"]
        yield (f"    floor: products {ms(f['products_s'])} + update {ms(f['update_s'])} "
               f"({row['openblas']['copy_gbs']:.1f} GB/s) = {ms(f['floor_s'])} ms against the target "
               f"{ms(f['target_s'])} ms (0.9x JAX): {f['floor_vs_target']:.2f}x")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.w1_floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--block-seconds", type=float, default=0.1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("PART", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        from bench.env import pin_threads
        pin_threads(2)
        case, problem = _case(args.child[1], args.quick)
        print(json.dumps(MEASURES[args.child[0]](case, problem, args.blocks, args.block_seconds)))
        return 0
    results = run([c for c in args.cases.split(",") if c], args.rounds, args.blocks, args.block_seconds, args.quick)
    for line in lines(results):
        print(line)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
