"""``python -m graphnet theano SCRIPT.py``: a Theano script runs unmodified with graphnet standing in.

The end-to-end test runs ``theano_tutorial_flow.py`` (the tutorials' idiom:
pickled dataset in shared variables, ``givens`` minibatches, ``HiddenLayer`` and
``LogisticRegression`` classes, ``RandomStreams`` noise, ``theano.In``, early
stopping with patience) in a subprocess, on the MNIST-format stand-in from
``scripts/make_mnist_standin.py``, and checks the reported test error against
NumPy on the parameters the script saved.
"""
import gzip
import importlib.util
import os
import pickle
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphnet
from graphnet.compat.theano_command import run_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(graphnet.__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("make_mnist_standin", os.path.join(ROOT, "scripts", "make_mnist_standin.py"))
standin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(standin)


def _script(tmp_path, body, name="script.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_theano_names_map_onto_graphnet_only_for_the_run(tmp_path, capsys):
    script = _script(tmp_path, """
        import sys
        import theano, theano.tensor as T
        from theano.tensor.shared_randomstreams import RandomStreams
        from theano.sandbox.rng_mrg import MRG_RandomStreams
        x = T.matrix('x')
        f = theano.function([x], (x * 2).sum())
        print(theano.config.floatX, x.dtype, float(f([[1.0, 2.0]])), sys.argv[1:])
    """)
    assert run_script(script, ["a", "--b"]) == 0
    assert capsys.readouterr().out.split() == ["float32", "float32", "6.0", "['a',", "'--b']"]
    assert "theano" not in sys.modules


@pytest.mark.parametrize("line, feature", [
    ("theano.clone(x)", "theano.clone"),
    ("import theano.sparse", "theano.sparse"),
    ("T.nnet.conv3d(x, x)", "theano.tensor.nnet.conv3d"),
    ("theano.config.nonexistent_flag", "theano.config.nonexistent_flag"),
    ("x.nonzero()", "the variable method .nonzero()"),
])
def test_an_unsupported_feature_ends_the_run_with_one_line_naming_it_and_the_script_line(tmp_path, capsys, line, feature):
    script = _script(tmp_path, f"""
        import theano
        import theano.tensor as T
        x = T.matrix('x')
        {line}
    """)
    assert run_script(script) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert feature in err and f"{script}:5" in err


def test_the_command_is_registered_with_python_m_graphnet():
    from graphnet.__main__ import build_parser
    args = build_parser().parse_args(["theano", "run.py", "x", "--flag"])
    assert (args.script, args.args) == ("run.py", ["x", "--flag"])


def test_the_stand_in_has_mnist_pkl_gz_layout():
    train, valid, test = standin.mnist_standin()
    assert [len(s[0]) for s in (train, valid, test)] == list(standin.SPLIT)
    for X, y in (train, valid, test):
        assert X.dtype == np.float32 and X.shape[1] == 784 and 0 <= X.min() and X.max() <= 1
        assert y.dtype.kind == "i" and set(np.unique(y)) == set(range(10))


def test_a_tutorial_style_script_trains_through_python_m_graphnet_theano(tmp_path):
    data = standin.write_mnist_standin(str(tmp_path / "mnist.pkl.gz"))
    saved = str(tmp_path / "best.pkl")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "graphnet", "theano", os.path.join(HERE, "theano_tutorial_flow.py"),
                           data, saved, "6"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    reported = float(re.search(r"RESULT test_error=([0-9.]+)", done.stdout).group(1))
    W_h, b_h, W, b = pickle.load(open(saved, "rb"))
    with gzip.open(data, "rb") as f:
        _, _, (X, y) = pickle.load(f)
    n = len(X) // 50 * 50
    predicted = np.argmax(np.tanh(X[:n] @ W_h + b_h) @ W + b, axis=1)
    assert reported == pytest.approx(np.mean(predicted != y[:n]), abs=1e-6)
    assert reported < 0.1


class PickledModel:
    """A tutorial-style model: a placeholder, a shared parameter and the graph between them."""

    def __init__(self):
        import graphnet.tensor as T
        self.input = T.matrix("x")
        self.W = graphnet.shared(np.arange(6, dtype=np.float32).reshape(3, 2) / 6, name="W")
        self.y_pred = T.argmax(T.nnet.softmax(T.dot(self.input, self.W)), axis=1)


def test_a_model_object_holding_shared_variables_and_its_graph_pickles_as_logistic_sgd_saves_it():
    X = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    model = PickledModel()
    restored = pickle.loads(pickle.dumps(model))
    expected = graphnet.function([model.input], model.y_pred, backend="reference")(X)
    got = graphnet.function([restored.input], restored.y_pred, backend="reference")(X)
    np.testing.assert_array_equal(got, expected)
    assert restored.W.dtype == "float32"
