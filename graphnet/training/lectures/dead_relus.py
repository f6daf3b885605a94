"""Item 5, dead ReLUs: units that never activate on the training set after a too-high learning rate.

The same ReLU MLP (64-200-200-10, He init) is trained with plain SGD at a
moderate and at a too-high rate, over several seeds; afterwards
:func:`graphnet.training.unit_activity.unit_activity` counts, over the whole
training set in evaluation mode, the examples on which each unit's output is
positive. A unit active on none is dead: its gradient is zero on every
example, so no later step revives it. CS231n: "as much as 40% of your network
can be dead" with a rate set too high; the issue quotes ~20%.

Verdict: reproduced when the too-high rate leaves at least 5% of the units
dead on average over the seeds, and more than the moderate rate does.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from graphnet.training.lectures.common import Outcome, digits, figure, save

NAME = "dead_relus"
TITLE = "Dead ReLUs: units that never activate over the training set, moderate vs too-high rate"
CLAIM = ("With a learning rate set too high a sizeable fraction of the ReLUs die (never activate on the training "
         "set; the lecture: up to ~20%); a moderate rate leaves few or none.")

RATES = {"moderate": 0.1, "too high": 1.0}
SIZES = {"tiny": {"hidden": (64, 64), "epochs": 3, "seeds": 1},
         "default": {"hidden": (200, 200), "epochs": 10, "seeds": 3}}
SIZEABLE = 0.05


def train_and_count(rate, hidden, epochs, train, backend, seed):
    """SGD(``rate``) for ``epochs``; return the trained model's :class:`UnitActivity` on ``train``."""
    from graphnet.nn import mlp, optim
    from graphnet.training.fit import fit
    from graphnet.training.unit_activity import unit_activity
    X, y = train
    model = mlp([X.shape[1], *hidden, 10], activation="relu", seed=seed)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        fit(model, (X, y), optimizer=optim.SGD(rate), epochs=epochs, batch_size=64, backend=backend, seed=seed,
            quiet=True, eval_train=False)
    return unit_activity(model, X, backend=backend)


def run(out_dir, size="default", backend="cpu", seed=0, say=print):
    settings = SIZES["default" if size == "full" else size]
    train = digits(seed).train
    seeds = [seed + i for i in range(settings["seeds"])]
    say(f"MLP 64-{'-'.join(map(str, settings['hidden']))}-10 ReLU, SGD, {settings['epochs']} epochs on "
        f"{len(train[1])} digits; seeds {seeds}; dead = inactive on every training example")
    activity = {label: [] for label in RATES}
    for s in seeds:
        for label, rate in RATES.items():
            result = train_and_count(rate, settings["hidden"], settings["epochs"], train, backend, s)
            activity[label].append(result)
            per_layer = ", ".join(f"{name} {result.dead(name)}/{rate_.size}" for name, rate_ in result.rates.items())
            say(f"  seed {s} {label:>8} (lr {rate:g}): dead units {per_layer}"
                + ("" if result.finite else " (diverged: outputs not finite)"))
    dead = {label: [a.dead_fraction() for a in runs] for label, runs in activity.items()}
    mean = {label: float(np.mean(v)) if all(math.isfinite(x) for x in v) else math.nan for label, v in dead.items()}
    reproduced = bool(mean["too high"] >= SIZEABLE and mean["too high"] > mean["moderate"])
    figures = [_plot(activity, out_dir)]
    measured = (f"dead fraction of all hidden ReLUs, mean over {len(seeds)} seed(s): {mean['moderate']:.1%} at lr "
                f"{RATES['moderate']:g}, {mean['too high']:.1%} at lr {RATES['too high']:g} (per seed: "
                f"{', '.join(f'{v:.1%}' for v in dead['too high'])})")
    return Outcome(NAME, CLAIM, reproduced, measured, {"dead": dead, "mean_dead": mean}, figures)


def _plot(activity, out_dir):
    """Per unit, the fraction of training examples it is active on, sorted: the dead ones sit at 0."""
    first = {label: runs[0] for label, runs in activity.items()}
    layers = list(next(iter(first.values())).rates)
    fig = figure(5 * len(layers), 3.8)
    axes = np.atleast_1d(fig.subplots(1, len(layers), sharey=True))
    for ax, layer in zip(axes, layers):
        for label, result in first.items():
            rates = np.sort(result.rates[layer])
            ax.plot(np.arange(rates.size), rates, lw=1.8,
                    label=f"lr {RATES[label]:g} ({label}): {result.dead(layer)} of {rates.size} dead")
        ax.set(title=f"{layer}: units sorted by activity", xlabel="unit (sorted)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    axes[0].set_ylabel("fraction of training examples\nwith output > 0")
    fig.suptitle("ReLU activity over the training set after SGD training (first seed)")
    return save(fig, out_dir, "dead_relus.png")
