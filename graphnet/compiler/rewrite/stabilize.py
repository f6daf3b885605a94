"""Numerically stable forms of expressions users write naively.

* ``log(softmax(x))``   -> ``log_softmax(x)`` (no log of an underflowed 0)
* ``log(1 + exp(x))``   -> ``softplus(x)``    (no overflow of exp)
* ``log(sigmoid(x))``   -> ``-softplus(-x)``

The softmax + negative log-likelihood gradient needs no rule: the
cross-entropy op's gradient is ``softmax - onehot`` by construction.
"""
from __future__ import annotations

from graphnet.compiler.rewrite import apply_local_rules
from graphnet.compiler.rewrite.canonicalize import constant_value
from graphnet.graph.fgraph import FunctionGraph
from graphnet.ops import elementwise as ew
from graphnet.ops import nn


def _producer(var, op_type):
    return var.owner if var.owner is not None and isinstance(var.owner.op, op_type) else None


def _log_of_softmax(node):
    if isinstance(node.op, ew.Log):
        sm = _producer(node.inputs[0], nn.Softmax)
        if sm is not None and type(sm.op) is nn.Softmax:
            return [nn.LogSoftmax(sm.op.axis)(sm.inputs[0])]
    return None


def _log_one_plus_exp(node):
    if isinstance(node.op, ew.Log):
        total = _producer(node.inputs[0], ew.Add)
        if total is not None:
            a, b = total.inputs
            for one, other in ((a, b), (b, a)):
                e = _producer(other, ew.Exp)
                if constant_value(one) == 1 and e is not None:
                    return [ew.softplus(e.inputs[0])]
    return None


def _log_of_sigmoid(node):
    if isinstance(node.op, ew.Log):
        s = _producer(node.inputs[0], ew.Sigmoid)
        if s is not None:
            return [ew.neg(ew.softplus(ew.neg(s.inputs[0])))]
    return None


def stabilize(fgraph: FunctionGraph) -> FunctionGraph:
    return apply_local_rules(fgraph, [_log_of_softmax, _log_one_plus_exp, _log_of_sigmoid])
