"""Item 6, random against grid search (Bergstra & Bengio 2012, as CS231n shows it), then coarse-to-fine.

The objective is :class:`graphnet.training.search.MLPTrial`: a 64-64-10 ReLU
MLP trained with SGD for a few epochs on the standardized digits, scored by
its best validation accuracy. Two hyperparameters, both searched in log space:
the learning rate, which matters a lot, and the L2 weight decay, which in
this range hardly matters. The same budget of trials goes to

* ``grid_search``: 3 x 3 points, so only 3 distinct learning rates are tried;
* ``random_search`` (the first round of ``coarse_to_fine``, the same draws):
  9 points, so 9 distinct learning rates;
* and a second round of ``coarse_to_fine`` in the ranges narrowed around the
  best trials of the first.

Verdict: reproduced when random search's best validation accuracy is at least
the grid's, and the narrowed round's median trial beats the first round's
median (the ranges were narrowed to where the good trials are).
"""
from __future__ import annotations

import numpy as np

from graphnet.training.lectures.common import Outcome, figure, save

NAME = "search"
TITLE = "Random vs grid search on learning rate x weight decay, then coarse-to-fine"
CLAIM = ("For the same budget random search tries more distinct values of the hyperparameter that matters and "
         "finds at least as good a setting as a grid; a second round in ranges narrowed around the best trials "
         "(coarse-to-fine) puts its trials where the good ones are.")

SIZES = {"tiny": {"points": 2, "epochs": 1, "workers": 0},
         "default": {"points": 3, "epochs": 5, "workers": 2}}


def space():
    from graphnet.training.search import log_uniform
    return {"lr": log_uniform(1e-3, 3.0), "weight_decay": log_uniform(1e-7, 1e-3)}


def run(out_dir, size="default", backend="cpu", seed=0, say=print):
    from graphnet.training.search import MLPTrial, coarse_to_fine, grid_search
    settings = SIZES["default" if size == "full" else size]
    budget = settings["points"] ** 2
    objective = MLPTrial(hidden_units=64, layers=1, optimizer="sgd", epochs=settings["epochs"], patience=None,
                         backend=backend, seed=seed, split_seed=seed)
    where = f"{settings['workers']} worker processes" if settings["workers"] else "this process"
    say(f"objective: 64-64-10 ReLU MLP, SGD, {settings['epochs']} epochs on the digits, best validation accuracy; "
        f"{budget} trials per search on {where}")
    grid = grid_search(objective, space(), points=settings["points"], max_workers=settings["workers"])
    rounds = coarse_to_fine(objective, space(), rounds=2, trials=budget, seed=seed, max_workers=settings["workers"])
    random_trials = [t for t in rounds.trials if t["round"] == 0]
    fine_trials = [t for t in rounds.trials if t["round"] == 1]

    def best(trials):
        scores = [t["val_accuracy"] for t in trials if t["status"] == "ok"]
        return max(scores) if scores else float("nan")

    def median(trials):
        scores = [t["val_accuracy"] for t in trials if t["status"] == "ok"]
        return float(np.median(scores)) if scores else float("nan")

    def distinct(trials, name):
        return len({round(t["params"][name], 12) for t in trials})

    for label, trials in (("grid", grid.trials), ("random", random_trials), ("fine round", fine_trials)):
        say(f"  {label:<10}: best val acc {best(trials):.4f}, median {median(trials):.4f}, "
            f"{distinct(trials, 'lr')} distinct learning rates, {sum(t['status'] != 'ok' for t in trials)} failed")
    narrowed = rounds.spaces[1]
    say(f"  narrowed ranges for the second round: lr {narrowed['lr']!r}, weight_decay {narrowed['weight_decay']!r}")
    checks = {"random at least as good as grid": best(random_trials) >= best(grid.trials),
              "fine round's median beats the coarse round's": median(fine_trials) > median(random_trials)}
    failed = [k for k, v in checks.items() if not v]
    figures = [_plot(grid.trials, random_trials, fine_trials, out_dir)]
    measured = (f"best validation accuracy grid {best(grid.trials):.4f} ({distinct(grid.trials, 'lr')} learning rates "
                f"tried) vs random {best(random_trials):.4f} ({distinct(random_trials, 'lr')}); median trial "
                f"{median(random_trials):.4f} in the coarse round, {median(fine_trials):.4f} in the narrowed one"
                + (f" (failed: {', '.join(failed)})" if failed else ""))
    return Outcome(NAME, CLAIM, not failed, measured,
                   {"best": {"grid": best(grid.trials), "random": best(random_trials), "fine": best(fine_trials)},
                    "median": {"grid": median(grid.trials), "random": median(random_trials),
                               "fine": median(fine_trials)},
                    "distinct_lr": {"grid": distinct(grid.trials, "lr"), "random": distinct(random_trials, "lr")},
                    "checks": checks}, figures)


def _plot(grid, random_trials, fine_trials, out_dir):
    fig = figure(12, 4.2, layout="constrained")
    acc_ax, plane_ax = fig.subplots(1, 2)
    styles = {"grid": ("s", "tab:blue"), "random (coarse round)": ("o", "tab:orange"),
              "narrowed round": ("^", "tab:green")}
    groups = {"grid": grid, "random (coarse round)": random_trials, "narrowed round": fine_trials}
    ok = [t for trials in groups.values() for t in trials if t["status"] == "ok"]
    low, high = min(t["val_accuracy"] for t in ok), max(t["val_accuracy"] for t in ok)
    for label, trials in groups.items():
        marker, color = styles[label]
        done = [t for t in trials if t["status"] == "ok"]
        acc_ax.scatter([t["params"]["lr"] for t in done], [t["val_accuracy"] for t in done], marker=marker,
                       color=color, s=36, alpha=0.85, label=label)
        points = plane_ax.scatter([t["params"]["lr"] for t in done], [t["params"]["weight_decay"] for t in done],
                                  c=[t["val_accuracy"] for t in done], marker=marker, cmap="viridis", vmin=low,
                                  vmax=high, s=60, edgecolor="black", label=label)
    acc_ax.set(xscale="log", xlabel="learning rate (log)", ylabel="best validation accuracy",
               title="validation accuracy against the important hyperparameter")
    plane_ax.set(xscale="log", yscale="log", xlabel="learning rate (log)", ylabel="weight decay (log)",
                 title="where each search put its trials")
    for ax in (acc_ax, plane_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.colorbar(points, ax=plane_ax, label="validation accuracy")
    return save(fig, out_dir, "search.png", tight=False)
