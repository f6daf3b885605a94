"""Item 8, gradient checking: ``gn.check_grad`` passes a correct net and catches a planted wrong gradient.

A small tanh MLP (synthetic 3-class blobs, 5 examples) is checked twice with
the toolbox's ``check_grad`` (central differences, eps 1e-6, in a float64
copy of the graph):

* as built: every parameter's relative error should be tiny (CS231n: < 1e-7
  is excellent);
* with the first hidden layer's tanh replaced by a user-defined op whose
  ``perform`` is tanh but whose ``grad`` forgot the square (``1 - t`` instead
  of ``1 - t^2``): the parameters below the bug (first layer) must fail, the
  ones above it (second and output layer) must still pass.
"""
from __future__ import annotations

import numpy as np

from graphnet.graph import Apply, Op, TensorType, as_variable
from graphnet.training.lectures.common import Outcome, figure, save

NAME = "gradient_check"
TITLE = "Gradient checking: check_grad on a small net, and on a planted wrong gradient"
CLAIM = ("Analytic gradients agree with central differences to a relative error far below 1e-5 on a correct net; "
         "a planted wrong gradient rule shows relative errors orders of magnitude larger, for the parameters below it.")

SIZES = {"tiny": {"features": 4, "hidden": (5, 5)}, "default": {"features": 8, "hidden": (16, 16)}}


class TanhWithPlantedBug(Op):
    """tanh forward, but the gradient rule is ``g * (1 - t)``: the derivative ``1 - t^2`` lost its square."""

    def make_node(self, x):
        x = as_variable(x)
        return Apply(self, [x], [TensorType(x.dtype, x.shape)])

    def perform(self, inputs):
        return [np.tanh(inputs[0])]

    def infer_shape(self, node, shapes):
        return [shapes[0]]

    def grad(self, inputs, outputs, output_grads):
        return [output_grads[0] * (1.0 - outputs[0])]


def build(features, hidden, planted_bug, seed):
    """``(loss, params, feed)`` of a tanh MLP on 5 blob examples; ``planted_bug`` swaps layer 1's tanh."""
    import graphnet as gn
    from graphnet.nn import data, mlp
    X, y = data.synthetic_classification(5, features, 3, seed=seed)
    model = mlp([features, *hidden, 3], activation="tanh", seed=seed)
    x = gn.placeholder("x", (None, features))
    labels = gn.placeholder("y", (None,), "int64")
    h = x
    for i, layer in enumerate(model.layers):
        a = gn.dot(h, layer.W) + layer.b
        if layer is model.layers[-1]:
            h = a
        elif i == 0 and planted_bug:
            h = TanhWithPlantedBug()(a)
        else:
            h = gn.tanh(a)
    loss = gn.nn.cross_entropy(h, labels)
    return loss, model.params, {x: X, labels: y}


def run(out_dir, size="default", backend="cpu", seed=0, say=print):
    from graphnet.graph.gradcheck import check_grad
    settings = SIZES["default" if size == "full" else size]
    reports = {}
    for label, planted in (("correct", False), ("planted bug in layer 1's tanh", True)):
        loss, params, feed = build(settings["features"], settings["hidden"], planted, seed)
        reports[label] = check_grad(loss, params, feed)
        say(f"-- {label}:")
        for line in str(reports[label]).splitlines():
            say("   " + line)
    correct, buggy = reports.values()
    below = [p for p in buggy.params if p.name.startswith("dense0.")]
    above = [p for p in buggy.params if not p.name.startswith("dense0.")]
    checks = {"correct net passes": correct.passed,
              "the planted bug fails below it": bool(below) and not any(p.passed for p in below),
              "parameters above the bug still pass": all(p.passed for p in above)}
    failed = [k for k, v in checks.items() if not v]
    figures = [_plot(reports, buggy.tolerance, out_dir)]
    measured = (f"largest relative error {correct.max_relative_error:.1e} on the correct net; with the planted bug "
                f"{max(p.relative_error for p in below):.1e} for the first layer's parameters, at most "
                f"{max(p.relative_error for p in above):.1e} above it (tolerance {buggy.tolerance:g})"
                + (f" (failed: {', '.join(failed)})" if failed else ""))
    return Outcome(NAME, CLAIM, not failed, measured,
                   {"relative_error": {label: {p.name: p.relative_error for p in r.params}
                                       for label, r in reports.items()},
                    "passed": {label: r.passed for label, r in reports.items()}, "checks": checks}, figures)


def _plot(reports, tolerance, out_dir):
    fig = figure(8, 4)
    ax = fig.subplots()
    names = [p.name for p in next(iter(reports.values())).params]
    width = 0.38
    for k, (label, report) in enumerate(reports.items()):
        errors = [max(report[name].relative_error, 1e-16) for name in names]
        ax.bar(np.arange(len(names)) + (k - 0.5) * width, errors, width, label=label,
               color=("tab:green", "tab:red")[k])
    ax.axhline(tolerance, color="black", ls="--", lw=1, label=f"tolerance {tolerance:g}")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set(yscale="log", ylabel="relative error (log)", title="check_grad: relative error per parameter")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return save(fig, out_dir, "gradient_check.png")
