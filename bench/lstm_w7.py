"""W7: one SGD training step of a single-layer LSTM, graphnet vs PyTorch ``nn.LSTM`` vs JAX ``lax.scan``.

Sequence 50, batch 32, inputs 64, hidden 128, and at every step a linear readout to 64
classes with softmax cross-entropy (mean over steps and batch), then plain SGD on every
weight. Each framework runs in its own process (their thread pools disturb one another,
see DESIGN.md) from the same initial weights and data; each reports:

- ``cold_s``: building and the first step (graphnet: compiling its kernels; ``--cold`` runs
  graphnet on an empty kernel cache, the user's first run);
- ``compiled_s`` (graphnet): until every compile has ended, also those that start after
  the first steps (a loop's halves, ``split_loop``): until then steps run slower;
- ``step_ms``: the median of ``--repeats`` timed blocks of ``--steps`` steps each;
- ``first_loss``: the loss of the first step, which must agree across frameworks (same
  weights, same data: a check that all three compute the same step).

    python -m bench.lstm_w7 [--steps 20] [--repeats 5] [--threads 2] [--cold] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

SHAPE = (50, 32, 64, 128, 64, 0.1)   # sequence, batch, inputs, hidden, classes, learning rate
QUICK_SHAPE = (5, 4, 8, 16, 8, 0.1)   # python -m bench --quick: the smoke test

COMMON = r'''
import json, sys, time
import numpy as np
T, B, I, H, C, LR = %(shape)s
steps, repeats = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(7)
scale = 1 / np.sqrt(H)
W = rng.uniform(-scale, scale, (I, 4 * H)).astype(np.float32)     # gates i, f, g, o (PyTorch's order)
U = rng.uniform(-scale, scale, (H, 4 * H)).astype(np.float32)
b = rng.uniform(-scale, scale, 4 * H).astype(np.float32)
Wo = rng.uniform(-scale, scale, (H, C)).astype(np.float32)
bo = np.zeros(C, np.float32)
X = rng.standard_normal((T, B, I)).astype(np.float32)
Y = rng.integers(0, C, (T, B)).astype(np.int64)

def report(cold, step, first_loss, last_loss, **extra):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            last_loss = step()
        times.append((time.perf_counter() - start) / steps)
    times.sort()
    print(json.dumps({"cold_s": cold, "step_ms": 1e3 * times[len(times) // 2], "first_loss": first_loss,
                      "last_loss": float(last_loss), **extra}))
'''

SCRIPTS = {
    "graphnet": r'''
start = time.perf_counter()
import graphnet as gn
x, y = gn.placeholder("x", (T, B, I)), gn.placeholder("y", (T, B), "int64")
w, u, bias = gn.shared(W, name="W"), gn.shared(U, name="U"), gn.shared(b, name="b")
wo, bo_ = gn.shared(Wo, name="Wo"), gn.shared(bo, name="bo")
zeros = gn.constant(np.zeros((B, H), np.float32))

def lstm_step(x_t, h, c):
    z = gn.dot(x_t, w) + gn.dot(h, u) + bias
    i, f = gn.sigmoid(z[:, :H]), gn.sigmoid(z[:, H:2 * H])
    g, o = gn.tanh(z[:, 2 * H:3 * H]), gn.sigmoid(z[:, 3 * H:])
    c = f * c + i * g
    return [o * gn.tanh(c), c]

(hs, cs), _ = gn.scan(lstm_step, sequences=x, outputs_info=[zeros, zeros], name="lstm")
logits = gn.dot(gn.reshape(hs, (T * B, H)), wo) + bo_
loss = gn.nn.cross_entropy(logits, gn.reshape(y, (T * B,)))
params = [w, u, bias, wo, bo_]
train = gn.function([x, y], loss, updates=[(p, p - LR * g) for p, g in zip(params, gn.grad(loss, params))])
first = float(train(X, Y))
cold = time.perf_counter() - start
train.wait_compiled()   # tiered: the first steps ran on NumPy; time the compiled ones
start_values = [p.get_value().copy() for p in params]
for _ in range(40):     # a loop's halves (split_loop) start compiling after its 20th compiled call,
    train(X, Y)
train.wait_compiled()   # in the background: their wait ends the run's start, timed as compiled_s
compiled = time.perf_counter() - start
for _ in range(120):    # and once the thread choices are measured (threads.cores_choice: ~60 calls)
    train(X, Y)
for p, value in zip(params, start_values):   # from the same weights as the peers' timed steps
    p.get_value(copy=False)[...] = value       # in place: set_value would start the frame afresh
report(cold, lambda: train(X, Y), first, first, compiled_s=compiled)
''',
    "pytorch": r'''
start = time.perf_counter()
import torch
torch.set_num_threads(int(sys.argv[3]))
lstm = torch.nn.LSTM(I, H)
readout = torch.nn.Linear(H, C)
with torch.no_grad():
    lstm.weight_ih_l0.copy_(torch.from_numpy(W.T.copy())); lstm.weight_hh_l0.copy_(torch.from_numpy(U.T.copy()))
    lstm.bias_ih_l0.copy_(torch.from_numpy(b)); lstm.bias_hh_l0.zero_()
    readout.weight.copy_(torch.from_numpy(Wo.T.copy())); readout.bias.copy_(torch.from_numpy(bo))
params = list(lstm.parameters()) + list(readout.parameters())
optimizer = torch.optim.SGD(params, lr=LR)
xt, yt = torch.from_numpy(X), torch.from_numpy(Y).reshape(-1)

def step():
    optimizer.zero_grad()
    hs, _ = lstm(xt)
    loss = torch.nn.functional.cross_entropy(readout(hs.reshape(T * B, H)), yt)
    loss.backward()
    optimizer.step()
    return loss.item()

first = step()
cold = time.perf_counter() - start
report(cold, step, first, first)
''',
    "jax": r'''
start = time.perf_counter()
import jax, jax.numpy as jnp

def loss_fn(params, x, y):
    w, u, bias, wo, bo_ = params
    def cell(carry, x_t):
        h, c = carry
        z = x_t @ w + h @ u + bias
        i, f = jax.nn.sigmoid(z[:, :H]), jax.nn.sigmoid(z[:, H:2 * H])
        g, o = jnp.tanh(z[:, 2 * H:3 * H]), jax.nn.sigmoid(z[:, 3 * H:])
        c = f * c + i * g
        h = o * jnp.tanh(c)
        return (h, c), h
    zeros = jnp.zeros((B, H), jnp.float32)
    _, hs = jax.lax.scan(cell, (zeros, zeros), x)
    logits = hs.reshape(T * B, H) @ wo + bo_
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, y.reshape(-1, 1), axis=1))

@jax.jit
def train(params, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    return [p - LR * g for p, g in zip(params, grads)], loss

state = [jnp.asarray(a) for a in (W, U, b, Wo, bo)]
xj, yj = jnp.asarray(X), jnp.asarray(Y)
state, loss = train(state, xj, yj)
first = float(loss)
cold = time.perf_counter() - start

def step():
    global state
    state, loss = train(state, xj, yj)
    return float(loss)

report(cold, step, first, first)
''',
}


def run(steps=20, repeats=5, threads=2, cold=False, shape=SHAPE):
    """{framework: its JSON report, or {"error": ...}}, and graphnet's ratio to the faster peer."""
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for name, body in SCRIPTS.items():
            path = os.path.join(work, f"w7_{name}.py")
            with open(path, "w") as file:
                file.write(COMMON % {"shape": tuple(shape)} + body)
            env = dict(os.environ, GRAPHNET_QUIET="1", OMP_NUM_THREADS=str(threads),
                       OPENBLAS_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads),
                       XLA_FLAGS=f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
                                 f"intra_op_parallelism_threads={threads}")
            if cold and name == "graphnet":
                env["GRAPHNET_CACHE_DIR"] = os.path.join(work, "empty_cache")
            root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
            done = subprocess.run([sys.executable, path, str(steps), str(repeats), str(threads)],
                                  capture_output=True, text=True, env=env)
            lines = done.stdout.strip().splitlines()
            if done.returncode != 0 or not lines:
                tail = (done.stderr or done.stdout).strip().splitlines()
                results[name] = {"error": tail[-1] if tail else f"exit {done.returncode}"}
            else:
                results[name] = json.loads(lines[-1])
    peers = [r["step_ms"] for n, r in results.items() if n != "graphnet" and "step_ms" in r]
    if peers and "step_ms" in results.get("graphnet", {}):
        results["ratio"] = results["graphnet"]["step_ms"] / min(peers)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cold", action="store_true", help="graphnet on an empty kernel cache")
    parser.add_argument("--quick", action="store_true", help="tiny shapes (a smoke test)")
    args = parser.parse_args(argv)
    results = run(args.steps, args.repeats, args.threads, args.cold, QUICK_SHAPE if args.quick else SHAPE)
    for name, r in results.items():
        print(f"{name:9s} {r}")


if __name__ == "__main__":
    main()
