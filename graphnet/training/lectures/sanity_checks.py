"""Item 4, the sanity checks before a long run, with the toolbox's own checks.

* ``initial_loss_check``: an untrained 10-class softmax classifier should
  start near log(10) = 2.30 with regularization off; turning L2 decay on must
  raise the loss.
* ``overfit_check``: the same network must reach 100% training accuracy on 50
  examples (full-batch Adam, regularization off).
* A planted bug: the same architecture with a saturated initialization
  (weights N(0, 10^2): every tanh unit sits at +-1). The check must fail and
  name "saturated initialization" among its suspects. CS231n's std 1.0
  saturates most units too; whether the check catches that is measured and
  printed, not assumed.
"""
from __future__ import annotations

import math

from graphnet.training.lectures.common import Outcome, digits, figure, save

NAME = "sanity_checks"
TITLE = "Sanity checks: initial loss ~ log(10), overfitting 50 examples, a planted saturated init"
CLAIM = ("With regularization off the initial loss is about log(10) = 2.30 and higher with it on; a healthy net "
         "overfits 50 examples to 100% training accuracy, a net with a saturated initialization fails to.")

SIZES = {"tiny": {"hidden": (100, 100), "steps": 150},
         "default": {"hidden": (100, 100), "steps": 300}}
WEIGHT_DECAY = 1e-2
#: "about log(10)": within this relative distance.
NEAR = 0.1
BUG_STD = 10.0


def run(out_dir, size="default", backend="cpu", seed=0, say=print):
    from graphnet.nn import init, mlp
    from graphnet.training.diagnostics import initial_loss_check, overfit_check
    settings = SIZES["default" if size == "full" else size]
    X, y = digits(seed).train
    sizes = [X.shape[1], *settings["hidden"], 10]
    say(f"MLP {'-'.join(map(str, sizes))} tanh (Glorot init) on the standardized digits")
    healthy = mlp(sizes, activation="tanh", seed=seed)
    initial = initial_loss_check(healthy, X, y, weight_decay=WEIGHT_DECAY, backend=backend)
    say(f"  {initial} (L2 decay {WEIGHT_DECAY:g})")
    overfit = overfit_check(healthy, X, y, n=50, steps=settings["steps"], seed=seed, backend=backend)
    say(f"  healthy net: {overfit}")
    planted = {}
    for std in (BUG_STD, 1.0):
        buggy = mlp(sizes, activation="tanh", init=init.normal(std=std), seed=seed)
        planted[std] = overfit_check(buggy, X, y, n=50, steps=settings["steps"], seed=seed, backend=backend)
        say(f"  weights N(0, {std:g}^2): {planted[std]}")
    bug = planted[BUG_STD]
    checks = {"initial loss about log(10)": abs(initial.loss - math.log(10)) <= NEAR * math.log(10),
              "decay raises it": initial.loss_with_decay > initial.loss,
              "healthy net overfits 50 examples": overfit.passed,
              "saturated init fails": not bug.passed,
              "the suspect is named": "saturated initialization" in bug.suspect_names()}
    failed = [k for k, v in checks.items() if not v]
    figures = [_plot({"healthy (Glorot)": overfit, **{f"N(0, {s:g}²) init": r for s, r in planted.items()}},
                     out_dir)]
    measured = (f"initial loss {initial.loss:.3f} (log 10 = {math.log(10):.3f}), {initial.loss_with_decay:.3f} with "
                f"L2 {WEIGHT_DECAY:g}; 50 examples: healthy net {overfit.accuracy:.0%} in {overfit.steps} steps, "
                f"std-{BUG_STD:g} init {bug.accuracy:.0%} after {bug.steps} steps, suspects: "
                f"{', '.join(bug.suspect_names()) or 'none'}; std-1 init {planted[1.0].accuracy:.0%}"
                + (f" (failed: {', '.join(failed)})" if failed else ""))
    return Outcome(NAME, CLAIM, not failed, measured,
                   {"initial_loss": initial.loss, "initial_loss_with_decay": initial.loss_with_decay,
                    "overfit_accuracy": overfit.accuracy, "bug_accuracy": bug.accuracy,
                    "bug_suspects": bug.suspect_names(), "std1_accuracy": planted[1.0].accuracy,
                    "checks": checks}, figures)


def _plot(results, out_dir):
    fig = figure(6.5, 4.2)
    ax = fig.subplots()
    for label, result in results.items():
        verdict = "ok" if result.passed else "FAILED"
        ax.plot(range(1, len(result.losses) + 1), result.losses, lw=1.5,
                label=f"{label}: {result.accuracy:.0%} train acc. ({verdict})")
    ax.axhline(math.log(10), color="grey", ls=":", lw=1, label="log(10)")
    ax.set(title="overfitting 50 examples (full-batch Adam 1e-2, no regularization)", xlabel="step",
           ylabel="training loss (log scale)", yscale="log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, out_dir, "sanity_overfit.png")
