"""Item 2: batch norm makes the initialization matter less and allows higher learning rates.

The same deep ReLU MLP (6 hidden layers on the standardized digits) is trained
with plain SGD, with and without batch norm (Dense -> BatchNorm -> ReLU), for
every weight-init std and learning rate of a grid; the final training loss
(mean over the last epoch's mini-batches) fills one grid per variant. He
initialization would be std ~0.14 for these layers, so 0.01 is far too small
(the signal vanishes through the layers) and 1.0 far too large (it explodes).

The verdict compares the two grids cell for cell:
* "the initialization matters less": for each learning rate, the spread of the
  final loss over the init scales (max - min of log loss, a diverged run
  counting as the worst) is smaller with batch norm, on average over the rates;
* "allows higher rates": at the highest rate, batch norm trains (its loss is
  below a third of the initial log(10)) in more init settings than plain SGD.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from graphnet.training.lectures.common import Outcome, digits, figure, fmt, save

NAME = "batch_norm"
TITLE = "Batch norm: final loss over init scale x learning rate, with and without"
CLAIM = ("Batch normalization makes training far less sensitive to the initialization scale and allows "
         "higher learning rates.")

SIZES = {"tiny": {"hidden": (32, 32, 32), "stds": (0.01, 1.0), "rates": (0.01, 1.0), "epochs": 1,
                  "train_examples": 256},
         "default": {"hidden": (100,) * 6, "stds": (0.01, 0.1, 1.0), "rates": (0.01, 0.1, 1.0), "epochs": 3,
                     "train_examples": None}}

TRAINED = math.log(10) / 3      # a final loss below this counts as "trained"


def final_loss(batch_norm, std, rate, hidden, epochs, train, backend, seed):
    """The last epoch's mean mini-batch loss of SGD(``rate``) from N(0, ``std``^2) weights (inf if diverged)."""
    from graphnet.nn import init, mlp, optim
    from graphnet.training.fit import fit
    X, y = train
    model = mlp([X.shape[1], *hidden, 10], activation="relu", batch_norm=batch_norm, init=init.normal(std=std),
                seed=seed)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)          # fit warns when a run diverges: a finding here
        history = fit(model, (X, y), optimizer=optim.SGD(rate), epochs=epochs, batch_size=64, backend=backend,
                      seed=seed, quiet=True, eval_train=False)
    loss = history.train_loss[-1]
    return loss if math.isfinite(loss) else math.inf


def run(out_dir, size="default", backend="cpu", seed=0, say=print):
    settings = SIZES["default" if size == "full" else size]
    X, y = digits(seed).train
    if settings["train_examples"]:
        X, y = X[:settings["train_examples"]], y[:settings["train_examples"]]
    stds, rates = settings["stds"], settings["rates"]
    say(f"MLP 64-{'-'.join(map(str, settings['hidden']))}-10 ReLU, SGD, {settings['epochs']} epochs on {len(y)} "
        "digits; final training loss per (init std, learning rate)")
    grids = {}
    for batch_norm in (False, True):
        grid = np.array([[final_loss(batch_norm, std, rate, settings["hidden"], settings["epochs"], (X, y), backend,
                                     seed) for rate in rates] for std in stds])
        grids["batch norm" if batch_norm else "plain"] = grid
        say(f"  {'with batch norm' if batch_norm else 'without':<16} " + "   ".join(
            f"std {std:g}: " + " ".join(fmt(v) for v in row) for std, row in zip(stds, grid)))
    say(f"  (columns: learning rate {', '.join(f'{r:g}' for r in rates)})")

    def spread(grid):   # per rate: how much the init scale changes the outcome, in decades of loss
        worst = np.log10(np.where(np.isfinite(grid), grid, 1e3))
        return worst.max(axis=0) - worst.min(axis=0)

    spreads = {name: spread(grid) for name, grid in grids.items()}
    trained_top = {name: int(np.sum(grid[:, -1] < TRAINED)) for name, grid in grids.items()}
    checks = {"init matters less": bool(spreads["batch norm"].mean() < spreads["plain"].mean()),
              "higher rate trains": bool(trained_top["batch norm"] > trained_top["plain"])}
    figures = [_plot(grids, stds, rates, out_dir)]
    measured = (f"spread of log10(final loss) over init scales, mean over rates: {spreads['plain'].mean():.2f} "
                f"without vs {spreads['batch norm'].mean():.2f} with batch norm; at rate {rates[-1]:g} "
                f"{trained_top['plain']} of {len(stds)} init scales train without, {trained_top['batch norm']} "
                "with batch norm")
    return Outcome(NAME, CLAIM, all(checks.values()), measured,
                   {"grids": {k: v.tolist() for k, v in grids.items()}, "stds": list(stds), "rates": list(rates),
                    "spread": {k: v.tolist() for k, v in spreads.items()}, "trained_at_top_rate": trained_top,
                    "checks": checks}, figures)


def _plot(grids, stds, rates, out_dir):
    import matplotlib
    from matplotlib.colors import LogNorm
    fig = figure(10, 4, layout="constrained")
    axes = fig.subplots(1, 2)
    finite = np.concatenate([g[np.isfinite(g)] for g in grids.values()])
    norm = LogNorm(vmin=max(finite.min(), 1e-3), vmax=max(finite.max(), math.log(10) * 2))
    cmap = matplotlib.colormaps["viridis_r"].with_extremes(bad="lightgrey")   # grey: diverged
    for ax, (name, grid) in zip(axes, grids.items()):
        shown = np.where(np.isfinite(grid), grid, np.nan)
        image = ax.imshow(shown, cmap=cmap, norm=norm, origin="lower")
        for i in range(len(stds)):
            for j in range(len(rates)):
                value = grid[i, j]
                ax.text(j, i, fmt(value, 2) if math.isfinite(value) else "diverged", ha="center", va="center",
                        fontsize=9, color="red" if not math.isfinite(value) else
                        "white" if norm(value) > 0.55 else "black")
        ax.set_xticks(range(len(rates)), [f"{r:g}" for r in rates])
        ax.set_yticks(range(len(stds)), [f"{s:g}" for s in stds])
        ax.set(xlabel="SGD learning rate", ylabel="weight init std", title=f"{name}: final training loss")
    fig.colorbar(image, ax=list(axes), label="loss (log scale; lower is better)")
    fig.suptitle("the same deep ReLU net, with and without batch norm")
    return save(fig, out_dir, "batch_norm_grid.png", tight=False)
