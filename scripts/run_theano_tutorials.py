"""Run the Deep Learning Tutorials' Theano scripts on graphnet (and PyTensor, to compare).

    python scripts/run_theano_tutorials.py TUTORIALS_GIT_DIR WORKDIR [--pytensor PYTHON] [--only NAME ...]

Takes ``code/{logistic_sgd,mlp,dA,SdA,convolutional_mlp,rbm,utils}.py`` from the tutorials' git
repository (lisa-lab/DeepLearningTutorials) into ``WORKDIR/code``, changes only
their batch sizes and epoch counts for the small stand-in data (``EDITS``),
writes the MNIST-format stand-in to ``WORKDIR/data/mnist.pkl.gz`` (where the
tutorials look), and runs each script with ``python -m graphnet theano``; with
``--pytensor``, also with that interpreter through a small ``theano`` shim onto
PyTensor (written to ``WORKDIR/pytensor_shim``, used for that run only), in float32
like graphnet, from ``WORKDIR/code_pytensor``: the same scripts plus
``PYTENSOR_EDITS`` (``if not W:`` -> ``if W is None:``, and no ``theano.In`` defaults,
which PyTensor needs).
Prints one line per run: wall time and what the script reported.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from make_mnist_standin import write_mnist_standin  # noqa: E402

SCRIPTS = ("logistic_sgd", "mlp", "dA", "SdA", "convolutional_mlp", "rbm")
#: The only changes to the tutorials: (old, new) text in the default arguments.
EDITS = {
    "logistic_sgd": [("n_epochs=1000,", "n_epochs=100,"), ("batch_size=600):", "batch_size=50):")],
    "mlp": [("n_epochs=1000,", "n_epochs=30,")],
    "dA": [("training_epochs=15,", "training_epochs=5,")],
    "SdA": [("pretraining_epochs=15,", "pretraining_epochs=2,"), ("training_epochs=1000,", "training_epochs=5,"),
            ("batch_size=1):", "batch_size=20):")],
    "convolutional_mlp": [("n_epochs=200,", "n_epochs=2,"), ("batch_size=500):", "batch_size=50):")],
    "rbm": [("training_epochs=15,", "training_epochs=2,")],
}
#: PyTensor only, in a separate copy: what SdA.py needs there (PyTensor refuses bool(variable) and In defaults).
PYTENSOR_EDITS = {
    "dA": [("if not theano_rng:", "if theano_rng is None:"), ("if not W:", "if W is None:"),
           ("if not bvis:", "if bvis is None:"), ("if not bhid:", "if bhid is None:")],
    "SdA": [("if not theano_rng:", "if theano_rng is None:"),
            # PyTensor refuses In(..., value=); the script passes both by keyword anyway.
            ("theano.In(corruption_level, value=0.2)", "corruption_level"),
            ("theano.In(learning_rate, value=0.1)", "learning_rate")],
}
#: What each script prints that we report.
REPORTED = re.compile(r"(test performance [0-9.]+ %|test performance of\s+[0-9.]+ ?%|"
                      r"Training epoch \d+, cost(?: is)?\s+-?[0-9.]+|ran for [0-9.]+m|ran for [0-9.]+s)")

PYTENSOR_SHIM = {
    "theano/__init__.py": """
        from pytensor import *  # noqa
        from pytensor import In, config, function, grad, shared  # noqa
        from . import tensor  # noqa
    """,
    "theano/tensor/__init__.py": """
        from pytensor.tensor import *  # noqa
        from pytensor.tensor import grad  # noqa
        from . import nnet, shared_randomstreams  # noqa
    """,
    "theano/tensor/nnet.py": """
        from pytensor.tensor import sigmoid, softplus  # noqa
        from pytensor.tensor.special import softmax as _softmax
        def softmax(x):  # Theano's is over rows; PyTensor's default axis=None is over all elements
            return _softmax(x, axis=-1)
    """,
    "theano/tensor/shared_randomstreams.py": """
        from pytensor.tensor.random.utils import RandomStream as _Stream
        import pytensor.tensor as _pt
        class RandomStreams(_Stream):
            def binomial(self, size=None, n=1, p=0.5, ndim=None, dtype='int64'):
                return _pt.cast(_Stream.__getattr__(self, 'binomial')(n, p, size=size), dtype)
    """,
    "theano/sandbox/__init__.py": "",
    "theano/sandbox/rng_mrg.py": "from theano.tensor.shared_randomstreams import RandomStreams as MRG_RandomStreams\n",
}


def _edited(text, name, edits):
    for old, new in edits.get(name, []):
        if old not in text:
            raise SystemExit(f"{name}.py: expected {old!r} in the tutorial")
        text = text.replace(old, new, 1)
    return text


def prepare(tutorials_git_dir, workdir):
    """``WORKDIR/code`` (for graphnet) and ``WORKDIR/code_pytensor``, the data, and the PyTensor shim."""
    code, code_pytensor = os.path.join(workdir, "code"), os.path.join(workdir, "code_pytensor")
    for folder in (code, code_pytensor, os.path.join(workdir, "data")):
        os.makedirs(folder, exist_ok=True)
    for name in SCRIPTS + ("utils",):
        text = subprocess.run(["git", "--git-dir", tutorials_git_dir, "show", f"HEAD:code/{name}.py"],
                              check=True, capture_output=True, text=True).stdout
        text = _edited(text, name, EDITS)
        with open(os.path.join(code, f"{name}.py"), "w") as handle:
            handle.write(text)
        with open(os.path.join(code_pytensor, f"{name}.py"), "w") as handle:
            handle.write(_edited(text, name, PYTENSOR_EDITS))
    write_mnist_standin(os.path.join(workdir, "data", "mnist.pkl.gz"))
    for rel, body in PYTENSOR_SHIM.items():
        path = os.path.join(workdir, "pytensor_shim", rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write(textwrap.dedent(body))
    return code


def run(label, command, cwd, env):
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    output = done.stdout + done.stderr
    found = REPORTED.findall(output)
    summary = "; ".join(found[-3:]) if done.returncode == 0 else output.strip().splitlines()[-1]
    print(f"{label}: exit {done.returncode}, wall {wall:.1f} s: {summary}", flush=True)
    with open(os.path.join(cwd, f"{label.replace(' ', '_')}.log"), "w") as handle:
        handle.write(output)
    return done.returncode, wall, output


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tutorials_git_dir")
    parser.add_argument("workdir")
    parser.add_argument("--pytensor", help="a Python interpreter with PyTensor installed")
    parser.add_argument("--only", nargs="*", default=SCRIPTS)
    parser.add_argument("--skip-graphnet", action="store_true", help="run only PyTensor")
    args = parser.parse_args(argv)
    code = prepare(args.tutorials_git_dir, os.path.abspath(args.workdir))
    graphnet_env = dict(os.environ, PYTHONPATH=ROOT)
    # PyTensor's floatX defaults to float64 (as Theano's did); graphnet's is float32: compare like with like.
    shim_env = dict(os.environ, PYTHONPATH=os.path.join(os.path.abspath(args.workdir), "pytensor_shim"),
                    PYTENSOR_FLAGS="floatX=float32")
    for name in args.only:
        if not args.skip_graphnet:
            run(f"graphnet {name}", [sys.executable, "-m", "graphnet", "theano", f"{name}.py"], code, graphnet_env)
        if args.pytensor:
            run(f"pytensor {name}", [args.pytensor, f"{name}.py"], code + "_pytensor", shim_env)


if __name__ == "__main__":
    main()
