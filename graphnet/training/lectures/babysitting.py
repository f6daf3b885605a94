"""Item 3, babysitting the loss: learning rates too low, good, too high and far too high; update ratios.

One MLP (64-100-100-10 ReLU, He init) is trained on the standardized digits
with Adam at four rates, from the same initialization. Each epoch a
:class:`~graphnet.training.diagnostics.Monitor` (the ``fit`` callback) records,
on a fixed probe batch, the ratio |next update| / |weights| of every weight
matrix: the lecture's rule of thumb is about 1e-3.

The lecture's picture of the loss curves, and the rules that check it here:
* far too high: the loss explodes (some epoch above the initial loss) and
  never comes back below it by much (final loss > half the initial);
* too high: drops fastest at first (lowest first-epoch loss of the three
  others) but plateaus above the good rate's final loss;
* too low: still far from the good rate at the end (final loss > 10x the good one);
* good: the lowest final loss of the four.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from graphnet.training.lectures.common import Outcome, digits, figure, fmt, save

NAME = "babysitting"
TITLE = "Babysitting: loss curves for four learning rates, update/weight ratios per layer"
CLAIM = ("A rate too low decays the loss slowly and linearly, a high one drops fast then plateaus above the "
         "good one, a far too high one explodes; with a good rate the update/weight ratio is about 1e-3.")

RATES = {"too low": 1e-5, "good": 1e-3, "too high": 3e-2, "far too high": 1.0}
SIZES = {"tiny": {"hidden": (32, 32), "epochs": 4, "train_examples": 320},
         "default": {"hidden": (100, 100), "epochs": 15, "train_examples": None}}
#: An update/weight ratio "about 1e-3" when within a decade of it.
BAND = (1e-4, 1e-2)


def train_at(rate, hidden, epochs, splits, backend, seed):
    """Train from the seed's initialization with Adam(``rate``); return (history, monitor, initial loss)."""
    from graphnet.nn import mlp, optim
    from graphnet.training.diagnostics import Monitor
    from graphnet.training.fit import evaluate, fit
    (X, y), (Xv, yv) = splits
    model = mlp([X.shape[1], *hidden, 10], activation="relu", seed=seed)
    initial_loss = evaluate(model.eval_function(backend=backend), X, y)[0]
    optimizer = optim.Adam(rate)
    monitor = Monitor(model, Xv[:256], yv[:256], optimizer=optimizer, backend=backend)
    monitor.record(0)            # before the first step: the update the first step will make
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)          # divergence is one of the four findings
        history = fit(model, (X, y), optimizer=optimizer, epochs=epochs, batch_size=64, backend=backend, seed=seed,
                      quiet=True, eval_train=False, callback=monitor)
    return history, monitor, initial_loss


def weight_ratios(monitor, model_params):
    """``{weight name: (epochs, update/weight ratios)}`` for the weight matrices (not biases)."""
    return {name: monitor.series("params", name, "update_ratio") for name in model_params}


def run(out_dir, size="default", backend="cpu", seed=0, say=print):
    settings = SIZES["default" if size == "full" else size]
    splits = digits(seed)
    train = splits.train if not settings["train_examples"] else tuple(a[:settings["train_examples"]]
                                                                       for a in splits.train)
    say(f"MLP 64-{'-'.join(map(str, settings['hidden']))}-10 ReLU on {len(train[1])} digits, Adam, "
        f"{settings['epochs']} epochs, batch 64; the same initialization for every rate")
    curves, ratios = {}, {}
    initial = None
    for label, rate in RATES.items():
        history, monitor, initial = train_at(rate, settings["hidden"], settings["epochs"], (train, splits.valid),
                                             backend, seed)
        losses = [v if math.isfinite(v) else math.inf for v in history.train_loss]
        curves[label] = losses
        weights = [name for name, stats in monitor.records[0]["params"].items() if name.endswith(".W")]
        ratios[label] = weight_ratios(monitor, weights)
        median = np.median(np.concatenate([r for _, r in ratios[label].values()]))
        say(f"  {label:>12} (lr {rate:g}): loss by epoch " + " ".join(fmt(v, 2) for v in losses)
            + f"; median update/weight ratio {median:.1e}")
    final = {label: c[-1] for label, c in curves.items()}
    first = {label: c[0] for label, c in curves.items()}
    good_ratio = float(np.median(np.concatenate([r for _, r in ratios["good"].values()])))
    checks = {
        "far too high explodes": bool(max(curves["far too high"]) > initial and final["far too high"] > initial / 2),
        "too high drops fast then plateaus": bool(first["too high"] <= min(first["good"], first["too low"])
                                                  and final["too high"] > final["good"]),
        "too low decays slowly": bool(final["too low"] > 10 * final["good"]),
        "good ends lowest": bool(final["good"] == min(final.values())),
        "good ratio about 1e-3": bool(BAND[0] <= good_ratio <= BAND[1]),
    }
    figures = [_plot_curves(curves, initial, out_dir), _plot_ratios(ratios, out_dir)]
    failed = [k for k, v in checks.items() if not v]
    measured = (f"initial loss {initial:.2f}; final loss too low {fmt(final['too low'])}, good "
                f"{fmt(final['good'])}, too high {fmt(final['too high'])}, far too high {fmt(final['far too high'])} "
                f"(peak {fmt(max(curves['far too high']))}); median update/weight ratio at the good rate "
                f"{good_ratio:.1e}" + (f" (failed: {', '.join(failed)})" if failed else ""))
    return Outcome(NAME, CLAIM, not failed, measured,
                   {"curves": curves, "initial_loss": initial, "good_ratio": good_ratio, "checks": checks,
                    "ratios": {label: {name: r.tolist() for name, (_, r) in per.items()}
                               for label, per in ratios.items()}}, figures)


def _plot_curves(curves, initial, out_dir):
    fig = figure(6.5, 4.2)
    ax = fig.subplots()
    colors = {"too low": "tab:blue", "good": "tab:green", "too high": "tab:orange", "far too high": "tab:red"}
    for label, losses in curves.items():
        epochs = np.arange(1, len(losses) + 1)
        shown = np.where(np.isfinite(losses), losses, np.nan)
        ax.plot(epochs, shown, "o-", ms=3, color=colors[label], label=f"{label} (lr {RATES[label]:g})")
    ax.axhline(initial, color="grey", ls=":", lw=1, label=f"initial loss ({initial:.2f})")
    ax.set(title="loss curves for four learning rates (Adam)", xlabel="epoch",
           ylabel="training loss (mean over the epoch, log scale)", yscale="log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, out_dir, "babysitting_loss.png")


def _plot_ratios(ratios, out_dir):
    labels = list(ratios)
    fig = figure(13, 3.6)
    axes = fig.subplots(1, len(labels), sharey=True)
    for ax, label in zip(axes, labels):
        for name, (steps, values) in ratios[label].items():
            ax.plot(steps, np.maximum(values, 1e-9), "o-", ms=3, label=name)
        ax.axhspan(*BAND, color="tab:green", alpha=0.12, label="1e-4 .. 1e-2")
        ax.axhline(1e-3, color="tab:green", ls="--", lw=1, label="1e-3")
        ax.set(title=f"{label} (lr {RATES[label]:g})", xlabel="epoch", yscale="log")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("|update| / |weights|")
    axes[0].legend(fontsize=7)
    fig.suptitle("update/weight ratio per weight matrix (probe batch, after each epoch)")
    return save(fig, out_dir, "babysitting_update_ratios.png")
