"""W6: the Theano MLP tutorial's network and loop, on graphnet and on PyTensor, each in its own process.

The script below is written in Theano's API, as the Deep Learning Tutorials' ``mlp.py`` is
(784-500-10 tanh MLP, minibatches of 20 sliced out of shared data by a symbolic index through
``givens``, negative log-likelihood + L1 + L2, plain SGD), on synthetic data so that it needs
no download. graphnet runs it through ``python -m graphnet theano``; PyTensor (which brings its
own, older Numba, so it lives in a virtual environment of its own) through a six-line ``theano``
shim, when its interpreter is given:

    python -m bench.theano_mlp [--pytensor /path/to/pytensor-venv/bin/python] [--epochs N]

Each prints its wall time for the training loop (compile excluded: the first minibatch is run
before the clock starts) and its final cost; the two costs must agree.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

SCRIPT = r'''
import json, sys, time
import numpy
import theano
import theano.tensor as T

epochs, batches, batch_size = int(sys.argv[1]), int(sys.argv[2]), 20
rng = numpy.random.RandomState(1234)
data_x = rng.uniform(0, 1, (batches * batch_size, 784)).astype(theano.config.floatX)
data_y = rng.randint(0, 10, batches * batch_size).astype("int64")
train_x, train_y = theano.shared(data_x, borrow=True), theano.shared(data_y, borrow=True)
index, x, y = T.lscalar(), T.matrix("x"), T.lvector("y")
bound = numpy.sqrt(6.0 / (784 + 500))
W1 = theano.shared(rng.uniform(-bound, bound, (784, 500)).astype(theano.config.floatX), name="W1")
b1 = theano.shared(numpy.zeros(500, dtype=theano.config.floatX), name="b1")
W2 = theano.shared(numpy.zeros((500, 10), dtype=theano.config.floatX), name="W2")
b2 = theano.shared(numpy.zeros(10, dtype=theano.config.floatX), name="b2")
hidden = T.tanh(T.dot(x, W1) + b1)
p_y = T.nnet.softmax(T.dot(hidden, W2) + b2)
nll = -T.mean(T.log(p_y)[T.arange(y.shape[0]), y])
cost = nll + 0.0 * (abs(W1).sum() + abs(W2).sum()) + 0.0001 * ((W1 ** 2).sum() + (W2 ** 2).sum())
params = [W1, b1, W2, b2]
updates = [(p, p - 0.01 * g) for p, g in zip(params, T.grad(cost, params))]
train = theano.function([index], cost, updates=updates,
                        givens={x: train_x[index * batch_size:(index + 1) * batch_size],
                                y: train_y[index * batch_size:(index + 1) * batch_size]})
train(0)
if hasattr(train, "wait_compiled"):   # graphnet's kernels compile in the background: time them compiled
    train.wait_compiled()             # (no extra steps: the final costs of both must agree)
start = time.perf_counter()
for epoch in range(epochs):
    for i in range(batches):
        last = train(i)
print(json.dumps({"seconds": time.perf_counter() - start, "cost": float(last), "minibatches": epochs * batches}))
'''

SHIM = {   # theano -> PyTensor, for the PyTensor run only (softmax over rows, as Theano's)
    "theano/__init__.py": "import pytensor\nfrom pytensor import *\nfrom theano import tensor\n"
                          "pytensor.config.floatX = 'float32'\nconfig = pytensor.config\n",
    "theano/tensor/__init__.py": "from pytensor.tensor import *\nfrom theano.tensor import nnet\n",
    "theano/tensor/nnet.py": "from pytensor.tensor.special import softmax as _softmax\n"
                             "def softmax(x):\n    return _softmax(x, axis=-1)\n",
}


def run(epochs=3, batches=100, pytensor=None):
    """{"graphnet": {...}, "pytensor": {...} or why not}: each framework's run of SCRIPT."""
    results = {}
    with tempfile.TemporaryDirectory() as work:
        script = os.path.join(work, "theano_mlp.py")
        with open(script, "w") as file:
            file.write(SCRIPT)
        args = [script, str(epochs), str(batches)]
        env = dict(os.environ, GRAPHNET_QUIET="1")
        results["graphnet"] = _run([sys.executable, "-m", "graphnet", "theano"] + args, env)
        if pytensor:
            for rel, body in SHIM.items():
                os.makedirs(os.path.dirname(os.path.join(work, "shim", rel)), exist_ok=True)
                with open(os.path.join(work, "shim", rel), "w") as file:
                    file.write(body)
            results["pytensor"] = _run([pytensor] + args, dict(os.environ, PYTHONPATH=os.path.join(work, "shim")))
        else:
            results["pytensor"] = {"skipped": "no PyTensor interpreter given (--pytensor PATH)"}
    if "seconds" in results["graphnet"] and "seconds" in results["pytensor"]:
        results["ratio"] = results["graphnet"]["seconds"] / results["pytensor"]["seconds"]
    return results


def _run(command, env):
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"failed": (done.stderr or done.stdout).strip().splitlines()[-1:]}
    return json.loads(lines[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.theano_mlp", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pytensor", default=os.environ.get("GRAPHNET_BENCH_PYTENSOR"),
                        help="a Python with PyTensor installed (its own virtual environment)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batches", type=int, default=100)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.epochs, args.batches, args.pytensor), indent=1))


if __name__ == "__main__":
    main()
