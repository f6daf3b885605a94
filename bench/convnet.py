"""W8: convolutional networks on graphnet, PyTorch and JAX, each framework in its own process.

Cases (float32, NCHW, cross-correlation, as PyTorch and JAX compute it: graphnet's ``filter_flip=False``):

- ``W8a-lenet-train``: one training step of a LeNet-5-like net (conv 5x5 1->20, max-pool 2,
  conv 5x5 20->50, max-pool 2, dense 800->500 ReLU, dense 500->10, softmax cross-entropy,
  plain SGD 0.01), batch 64 on 1x28x28;
- ``W8b-block-fwd``: a conv-BN-ReLU block, 64 -> 64 channels, 3x3 "same", 32x32, batch 32,
  batch norm in training mode (batch statistics and the running-statistics update);
- ``W8b-block-bwd``: its gradient function ``(x, dy) -> (dx, dW, dgamma, dbeta)``;
- ``W8b-block-eval``: the block in evaluation mode (running statistics): the case where
  graphnet runs conv + BN + ReLU as one kernel.

Each framework runs in a process of its own (thread pools of different libraries in one process
change each other's times, DESIGN.md), with the same thread budget. The parent runs the
processes in rounds (framework after framework, ``--rounds`` times) so that a burst of load from
elsewhere hits each alike, and reports the median over rounds of each process's median per call.
Before timing, every process computes its check values (losses of the first two steps, or
output sums) from the same seeded problem; they must agree with graphnet's within 1e-3.

    python -m bench.convnet [--only W8b-block-fwd,...] [--rounds 3] [--seconds 2] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

FRAMEWORKS = ("graphnet", "pytorch", "jax")
CASES = ("W8a-lenet-train", "W8b-block-fwd", "W8b-block-bwd", "W8b-block-eval")
LR = 0.01
BN_EPS, BN_MOMENTUM = 1e-5, 0.1


# ------------------------------------------------------------------- the problems
def problem(case, quick=False):
    """The seeded arrays of ``case`` (NumPy float32), the same in every process."""
    import numpy as np
    rng = np.random.default_rng(8)
    f = np.float32
    if case.startswith("W8a"):
        batch = 8 if quick else 64

        def he(shape, fan_in):
            return (rng.normal(size=shape) * np.sqrt(2.0 / fan_in)).astype(f)
        return {"x": rng.uniform(0, 1, (batch, 1, 28, 28)).astype(f), "y": rng.integers(0, 10, batch),
                "W1": he((20, 1, 5, 5), 25), "b1": np.zeros(20, f), "W2": he((50, 20, 5, 5), 500),
                "b2": np.zeros(50, f), "W3": he((800, 500), 800), "b3": np.zeros(500, f),
                "W4": he((500, 10), 500), "b4": np.zeros(10, f)}
    batch, channels, size = (4, 8, 8) if quick else (32, 64, 32)
    return {"x": rng.normal(size=(batch, channels, size, size)).astype(f),
            "dy": rng.normal(size=(batch, channels, size, size)).astype(f),
            "W": (rng.normal(size=(channels, channels, 3, 3)) * np.sqrt(2.0 / (9 * channels))).astype(f),
            "gamma": rng.uniform(0.5, 1.5, channels).astype(f), "beta": rng.normal(size=channels).astype(f) * 0.1,
            "mean": rng.normal(size=channels).astype(f) * 0.1, "var": rng.uniform(0.5, 1.5, channels).astype(f)}


# ------------------------------------------------------------------- graphnet
def graphnet_runner(case, p):
    """(step, check): ``step()`` runs one call; ``check()`` the values compared across frameworks."""
    import numpy as np

    import graphnet as gn
    from graphnet import ops
    if case.startswith("W8a"):
        x = gn.placeholder("x", (None, 1, 28, 28))
        y = gn.placeholder("y", (None,), "int64")
        params = {k: gn.shared(p[k].copy(), name=k) for k in ("W1", "b1", "W2", "b2", "W3", "b3", "W4", "b4")}

        def conv_pool(h, w, b):
            a = ops.add(gn.nn.conv2d(h, w, filter_flip=False), gn.expand_dims(b, (0, 2, 3)))
            return gn.nn.pool_2d(gn.relu(a), (2, 2))
        h = conv_pool(conv_pool(x, params["W1"], params["b1"]), params["W2"], params["b2"])
        h = gn.relu(ops.add(gn.dot(ops.flatten(h, 2), params["W3"]), params["b3"]))
        logits = ops.add(gn.dot(h, params["W4"]), params["b4"])
        loss = gn.nn.cross_entropy(logits, y)
        grads = gn.grad(loss, list(params.values()))
        updates = [(v, ops.sub(v, ops.mul(g, LR))) for v, g in zip(params.values(), grads)]
        fn = gn.function([x, y], [loss], updates=updates)
        feeds = (p["x"], p["y"])

        def step():
            return float(fn(*feeds)[0])

        def check():
            return [step(), step()]
        return step, check
    x = gn.placeholder("x", (None,) + p["x"].shape[1:])
    conv = gn.nn.Conv2D(p["W"].shape[1], p["W"].shape[0], 3, activation="linear", border_mode="half",
                        filter_flip=False, bias=False)
    conv.W.set_value(p["W"].copy())
    bn = gn.nn.BatchNorm(p["W"].shape[0], eps=BN_EPS, momentum=BN_MOMENTUM)
    for var, key in ((bn.gamma, "gamma"), (bn.beta, "beta"), (bn.running_mean, "mean"), (bn.running_var, "var")):
        var.set_value(p[key].copy())
    out = gn.relu(bn.build(conv.build(x)))
    if case == "W8b-block-bwd":
        dy = gn.placeholder("dy", (None,) + p["x"].shape[1:])
        fn = gn.function([x, dy], gn.grad(gn.sum(ops.mul(out, dy)), [x, conv.W, bn.gamma, bn.beta]),
                         training=True, no_default_updates=True)
        feeds = (p["x"], p["dy"])
    else:
        fn = gn.function([x], [out], training=case == "W8b-block-fwd")
        feeds = (p["x"],)

    def step():
        return fn(*feeds)

    def check():
        values = [float(np.asarray(v, np.float64).sum()) for v in step()]
        fn.wait_compiled()   # tiered: time the compiled kernels, not the NumPy tier of the first calls
        return values
    return step, check


# ------------------------------------------------------------------- PyTorch
def pytorch_runner(case, p, threads):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    t = {k: torch.tensor(v) for k, v in p.items()}
    if case.startswith("W8a"):
        params = [t[k].clone().requires_grad_() for k in ("W1", "b1", "W2", "b2", "W3", "b3", "W4", "b4")]
        opt = torch.optim.SGD(params, lr=LR)
        x, y = t["x"], t["y"]

        def step():
            w1, b1, w2, b2, w3, b3, w4, b4 = params
            h = F.max_pool2d(F.relu(F.conv2d(x, w1, b1)), 2)
            h = F.max_pool2d(F.relu(F.conv2d(h, w2, b2)), 2)
            h = F.relu(h.flatten(1) @ w3 + b3)
            loss = F.cross_entropy(h @ w4 + b4, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss.item()

        def check():
            return [step(), step()]
        return step, check
    w = t["W"].clone().requires_grad_(case == "W8b-block-bwd")
    gamma = t["gamma"].clone().requires_grad_(case == "W8b-block-bwd")
    beta = t["beta"].clone().requires_grad_(case == "W8b-block-bwd")
    mean, var = t["mean"].clone(), t["var"].clone()
    x = t["x"].clone().requires_grad_(case == "W8b-block-bwd")
    train = case != "W8b-block-eval"

    def forward():
        return F.relu(F.batch_norm(F.conv2d(x, w, padding=1), mean, var, gamma, beta, training=train,
                                   momentum=BN_MOMENTUM, eps=BN_EPS))
    if case == "W8b-block-bwd":
        dy = t["dy"]

        def step():
            return torch.autograd.grad(forward(), [x, w, gamma, beta], dy)
    else:
        def step():
            with torch.no_grad():
                return [forward()]

    def check():
        return [float(v.double().sum()) for v in step()]
    return step, check


# ------------------------------------------------------------------- JAX
def jax_runner(case, p):
    import jax
    import jax.numpy as jnp
    import numpy as np
    dn = ("NCHW", "OIHW", "NCHW")

    def conv(x, w, pad):
        return jax.lax.conv_general_dilated(x, w, (1, 1), pad, dimension_numbers=dn)
    if case.startswith("W8a"):
        params = [jnp.asarray(p[k]) for k in ("W1", "b1", "W2", "b2", "W3", "b3", "W4", "b4")]
        x, y = jnp.asarray(p["x"]), jnp.asarray(p["y"])

        def pool(h):
            return jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

        def loss_of(ps, x, y):
            w1, b1, w2, b2, w3, b3, w4, b4 = ps
            h = pool(jax.nn.relu(conv(x, w1, "VALID") + b1[None, :, None, None]))
            h = pool(jax.nn.relu(conv(h, w2, "VALID") + b2[None, :, None, None]))
            h = jax.nn.relu(h.reshape(h.shape[0], -1) @ w3 + b3)
            logits = h @ w4 + b4
            return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(y.shape[0]), y])

        @jax.jit
        def train(ps, x, y):
            loss, grads = jax.value_and_grad(loss_of)(ps, x, y)
            return loss, [q - LR * g for q, g in zip(ps, grads)]
        state = {"params": params}

        def step():
            loss, state["params"] = train(state["params"], x, y)
            return float(loss)

        def check():
            return [step(), step()]
        return step, check
    x, dy = jnp.asarray(p["x"]), jnp.asarray(p["dy"])
    w, gamma, beta = jnp.asarray(p["W"]), jnp.asarray(p["gamma"]), jnp.asarray(p["beta"])
    mean, var = jnp.asarray(p["mean"]), jnp.asarray(p["var"])

    def per_channel(v):
        return v[None, :, None, None]

    def block(x, w, gamma, beta, rmean, rvar, train):
        a = conv(x, w, ((1, 1), (1, 1)))
        if train:
            m, v = a.mean(axis=(0, 2, 3)), a.var(axis=(0, 2, 3))
        else:
            m, v = rmean, rvar
        y = jax.nn.relu((a - per_channel(m)) / jnp.sqrt(per_channel(v) + BN_EPS) * per_channel(gamma)
                        + per_channel(beta))
        count = a.size // a.shape[1]
        return y, ((1 - BN_MOMENTUM) * rmean + BN_MOMENTUM * m,
                   (1 - BN_MOMENTUM) * rvar + BN_MOMENTUM * v * count / (count - 1))
    if case == "W8b-block-bwd":
        @jax.jit
        def grads(x, w, gamma, beta, dy):
            _, vjp = jax.vjp(lambda *a: block(*a, mean, var, True)[0], x, w, gamma, beta)
            return vjp(dy)

        def step():
            return jax.block_until_ready(grads(x, w, gamma, beta, dy))
    else:
        train = case == "W8b-block-fwd"
        forward = jax.jit(lambda x, w, g, b, m, v: block(x, w, g, b, m, v, train))
        state = {"mean": mean, "var": var}

        def step():
            out, (state["mean"], state["var"]) = forward(x, w, gamma, beta, state["mean"], state["var"])
            return [jax.block_until_ready(out)]

    def check():
        return [float(np.asarray(v, np.float64).sum()) for v in step()]
    return step, check


# ------------------------------------------------------------------- one process
def worker(framework, case, seconds, threads, quick):
    """Run in the child: build, check, time; print one JSON line."""
    p = problem(case, quick)
    start = time.perf_counter()
    if framework == "graphnet":
        import graphnet as gn
        gn.set_num_threads(threads)
        step, check = graphnet_runner(case, p)
    elif framework == "pytorch":
        step, check = pytorch_runner(case, p, threads)
    else:
        step, check = jax_runner(case, p)
    values = check()   # includes the first call (compiles)
    first = time.perf_counter() - start
    for _ in range(2):
        step()
    samples, deadline = [], time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 5:
        t0 = time.perf_counter()
        step()
        samples.append(time.perf_counter() - t0)
    print(json.dumps({"check": values, "median_s": statistics.median(samples), "min_s": min(samples),
                      "calls": len(samples), "build_and_first_s": first}))


def run_worker(framework, case, seconds, threads, quick):
    from bench.env import THREAD_VARIABLES
    env = dict(os.environ, GRAPHNET_QUIET="1")   # each framework's own OpenMP settings (threads.py)
    env.update({var: str(threads) for var in THREAD_VARIABLES})
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, "-m", "bench.convnet", "--worker", framework, "--only", case,
               "--seconds", str(seconds), "--threads", str(threads)] + (["--quick"] if quick else [])
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=root)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        return {"failed": tail[0] if tail else f"exit status {done.returncode}"}
    return json.loads(lines[-1])


def agrees(a, b, tolerance=1e-3):
    return len(a) == len(b) and all(abs(x - y) <= tolerance * max(1.0, abs(y)) for x, y in zip(a, b))


def run(cases=CASES, rounds=3, seconds=2.0, threads=2, quick=False, frameworks=FRAMEWORKS, log=print):
    """{case: {framework: {median_s, rounds, check} or why not, "ratio_to_fastest_peer": ...}}."""
    results = {}
    for case in cases:
        per = {f: [] for f in frameworks}
        for r in range(rounds):
            for framework in frameworks[r % len(frameworks):] + frameworks[:r % len(frameworks)]:
                per[framework].append(run_worker(framework, case, seconds, threads, quick))
        summary = {}
        for framework, runs in per.items():
            good = [x for x in runs if "median_s" in x]
            if not good:
                summary[framework] = {"failed": runs[0].get("failed")}
                continue
            summary[framework] = {"median_s": statistics.median(x["median_s"] for x in good),
                                  "round_medians_s": [x["median_s"] for x in good], "check": good[0]["check"],
                                  "build_and_first_s": good[0]["build_and_first_s"]}
        reference = summary.get("graphnet", {}).get("check")
        for framework, s in summary.items():
            if "check" in s and reference is not None:
                s["agrees_with_graphnet"] = agrees(s["check"], reference)
        ours = summary.get("graphnet", {}).get("median_s")
        peers = [s["median_s"] for f, s in summary.items() if f != "graphnet" and s.get("agrees_with_graphnet")]
        if ours and peers:
            summary["ratio_to_fastest_peer"] = ours / min(peers)
        results[case] = summary
        log(lines({case: summary})[0])
    return results


def lines(results):
    """One line per case: each framework's median per call and graphnet's ratio to the faster peer."""
    targets = {"W8a": 1.2, "W8b": 1.0}
    found = []
    for case, summary in results.items():
        parts = [f"{f} {1e3 * s['median_s']:.2f} ms" + ("" if s.get("agrees_with_graphnet", True) else " (DISAGREES)")
                 if "median_s" in s else f"{f} failed: {s.get('failed')}"
                 for f, s in summary.items() if isinstance(s, dict)]
        line = f"{case}: " + ", ".join(parts)
        if "ratio_to_fastest_peer" in summary:
            line += (f"; graphnet / faster peer {summary['ratio_to_fastest_peer']:.2f}x "
                     f"(target <= {targets[case[:3]]}x)")
        found.append(line)
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.convnet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(CASES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per process and round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--quick", action="store_true", help="tiny shapes (a smoke test)")
    parser.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    cases = [c for c in args.only.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    if args.worker:
        worker(args.worker, cases[0], args.seconds, args.threads, args.quick)
        return
    print(f"load average {os.getloadavg()}", file=sys.stderr)
    results = run(cases, args.rounds, args.seconds, args.threads, args.quick, tuple(args.frameworks.split(",")),
                  log=lambda line: print(line, file=sys.stderr))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
