"""Rewrite passes: each does its job, and each can be switched off by name."""
import numpy as np
import pytest

import graphnet as gn
from graphnet.compiler.pipeline import PASS_NAMES, optimize
from graphnet.graph.fgraph import FunctionGraph
from graphnet.ops import elementwise as ew, nn


def op_types(fgraph):
    return [type(n.op) for n in fgraph.nodes()]


def test_merge_computes_equal_subexpressions_once():
    x = gn.placeholder("x", (3,))
    y = gn.exp(x) + gn.exp(x)
    out = optimize(FunctionGraph((x,), (y,)))
    assert op_types(out).count(ew.Exp) == 1


def test_fold_turns_constant_subgraphs_into_constants():
    x = gn.placeholder("x", (3,))
    y = x * (gn.constant(2.0, dtype="float32") * 3.0)
    out = optimize(FunctionGraph((x,), (y,)))
    assert op_types(out) == [ew.Mul]


def test_canonicalize_drops_identities():
    x = gn.placeholder("x", (3,))
    y = -(-(x * 1.0 + 0.0))
    out = optimize(FunctionGraph((x,), (y,)))
    assert out.outputs[0] is x


def test_stabilize_rewrites_log_softmax_and_softplus():
    x = gn.placeholder("x", (2, 3))
    out = optimize(FunctionGraph((x,), (gn.log(gn.softmax(x)), gn.log(1.0 + gn.exp(x)))))
    types = op_types(out)
    assert nn.LogSoftmax in types and ew.Softplus in types and ew.Log not in types


def test_stable_forms_stay_finite_for_large_logits():
    x = gn.placeholder("x", (None, 3))
    fn = gn.function([x], gn.log(gn.softmax(x)), backend="cpu")
    out = fn(np.array([[1000.0, -1000.0, 0.0]], "float32"))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[0, 0], 0.0, atol=1e-6)


@pytest.mark.parametrize("name", PASS_NAMES)
def test_every_pass_can_be_switched_off_without_changing_results(name):
    x = gn.placeholder("x", (None, 3))
    y = gn.sum(gn.log(gn.softmax(x * 1.0)) + gn.exp(x) * 0.0 + 2.0 * 3.0)
    xb = np.random.default_rng(0).standard_normal((4, 3)).astype("float32")
    expected = gn.function([x], y, backend="reference")(xb)
    got = gn.function([x], y, backend="cpu", disable_passes=[name])(xb)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_unknown_pass_name_is_refused_with_the_valid_names():
    x = gn.placeholder("x", (3,))
    with pytest.raises(gn.GraphnetError, match="merge"):
        gn.function([x], x + 1.0, backend="cpu", disable_passes=["no_such_pass"])
