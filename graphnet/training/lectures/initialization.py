"""Item 1, CS231n's weight-initialization experiment: activations through 10 layers of 500 units.

Unit-Gaussian input goes forward (evaluation mode, no training) through a
10-layer MLP; every hidden layer's output is fetched from one compiled
function (``model.activations_function``) and summarized by its mean, its
standard deviation and, for tanh, the fraction of saturated units.

* tanh, weights N(0, 0.01^2): each layer multiplies the scale by about
  0.01 * sqrt(500) = 0.22, so the activations collapse towards 0.
* tanh, weights N(0, 1): pre-activations of std ~sqrt(500) = 22 saturate every unit at +-1.
* tanh, Glorot/Xavier: the scale stays of the same order through the layers.
* ReLU, Glorot/Xavier: ReLU zeroes half the input, so each layer halves the
  variance: the activations shrink.
* ReLU, He (variance 2 / fan_in): the factor 2 makes up for it: stable.
"""
from __future__ import annotations

import numpy as np

from graphnet.training.lectures.common import Outcome, figure, gaussian_input, save

NAME = "initialization"
TITLE = "Weight initialization: activations through 10 tanh/ReLU layers of 500 units"
CLAIM = ("With weights of std 0.01 a 10-layer tanh net's activations collapse towards 0; with std 1.0 they "
         "saturate at +-1; Glorot/Xavier keeps them stable for tanh, but shrinks them for ReLU where He is stable.")

SIZES = {"tiny": {"examples": 200, "width": 100, "layers": 10},
         "default": {"examples": 1000, "width": 500, "layers": 10}}

#: A layer's std "stable" if the last hidden layer's std is within this factor of the first's.
STABLE_FACTOR = 4.0
SATURATED = 0.99
#: The last layer's activations "collapsed towards 0" when their std is below this.
COLLAPSED = 1e-3


def _settings():
    from graphnet.nn import init
    return [("tanh, N(0, 0.01²)", "tanh", init.normal(std=0.01)),
            ("tanh, N(0, 1)", "tanh", init.normal(std=1.0)),
            ("tanh, Xavier", "tanh", init.glorot_uniform),
            ("ReLU, Xavier", "relu", init.glorot_uniform),
            ("ReLU, He", "relu", init.he_normal)]


def layer_statistics(activation, weight_init, X, layers, backend="cpu", seed=0):
    """Per hidden layer of a ``layers``-deep MLP of ``X``'s width: (mean, std, saturated fraction, values)."""
    from graphnet.nn import mlp
    width = X.shape[1]
    model = mlp([width] + [width] * layers + [10], activation=activation, init=weight_init, seed=seed)
    values = model.activations_function(backend=backend)(X)
    stats = [{"mean": float(np.mean(h)), "std": float(np.std(h)),
              "saturated": float(np.mean(np.abs(h) > SATURATED))} for h in values]
    return stats, values


def run(out_dir, size="default", backend="cpu", seed=0, say=print):
    settings = SIZES["default" if size == "full" else size]
    X = gaussian_input(settings["examples"], settings["width"], seed)
    results, samples = {}, {}
    say(f"{settings['layers']} hidden layers of {settings['width']} units, {settings['examples']} unit-Gaussian "
        "examples; per layer: activation mean / std (saturated = |h| > 0.99)")
    for label, activation, weight_init in _settings():
        stats, values = layer_statistics(activation, weight_init, X, settings["layers"], backend, seed)
        results[label] = stats
        samples[label] = values
        say(f"  {label:<18} " + "  ".join(f"L{i + 1} {s['mean']:+.2f}/{s['std']:.2g}" for i, s in enumerate(stats)))
        if activation == "tanh":
            say(f"  {'':<18} saturated: " + " ".join(f"{s['saturated']:.0%}" for s in stats))

    std = {label: [s["std"] for s in stats] for label, stats in results.items()}
    ratio = {label: values[-1] / values[0] for label, values in std.items()}
    small, large, xavier, relu_xavier, relu_he = results
    checks = {
        "0.01 collapses": bool(np.all(np.diff(std[small]) < 0) and std[small][-1] < COLLAPSED),
        "1.0 saturates": bool(min(s["saturated"] for s in results[large]) > 0.5),
        "Xavier tanh stable": bool(1 / STABLE_FACTOR < ratio[xavier] < STABLE_FACTOR),
        "Xavier ReLU shrinks": bool(ratio[relu_xavier] < 0.1),
        "He ReLU stable": bool(1 / STABLE_FACTOR < ratio[relu_he] < STABLE_FACTOR),
    }
    figures = [_plot_statistics(results, out_dir), _plot_histograms(samples, out_dir)]
    measured = (f"std of layer 10 / layer 1: 0.01-init {ratio[small]:.1e}, Xavier tanh {ratio[xavier]:.2f}, "
                f"ReLU Xavier {ratio[relu_xavier]:.3f}, ReLU He {ratio[relu_he]:.2f}; std-1.0 init saturates "
                f"{min(s['saturated'] for s in results[large]):.0%}-{max(s['saturated'] for s in results[large]):.0%}"
                f" of the units per layer" + ("" if all(checks.values()) else
                                              f" (failed: {', '.join(k for k, v in checks.items() if not v)})"))
    return Outcome(NAME, CLAIM, all(checks.values()), measured,
                   {"std": std, "ratio": ratio, "checks": checks,
                    "saturated": {k: [s["saturated"] for s in v] for k, v in results.items()},
                    "mean": {k: [s["mean"] for s in v] for k, v in results.items()}}, figures)


def _plot_statistics(results, out_dir):
    fig = figure(11, 3.8)
    mean_ax, std_ax = fig.subplots(1, 2)
    for label, stats in results.items():
        layers = np.arange(1, len(stats) + 1)
        mean_ax.plot(layers, [s["mean"] for s in stats], "o-", ms=3, label=label)
        std_ax.plot(layers, [s["std"] for s in stats], "o-", ms=3, label=label)
    mean_ax.set(title="activation mean per layer", xlabel="hidden layer", ylabel="mean")
    std_ax.set(title="activation std per layer (log scale)", xlabel="hidden layer", ylabel="std", yscale="log")
    for ax in (mean_ax, std_ax):
        ax.set_xticks(range(1, len(next(iter(results.values()))) + 1))
        ax.grid(alpha=0.3)
    std_ax.legend(fontsize=8, loc="lower left")
    return save(fig, out_dir, "initialization_statistics.png")


def _plot_histograms(samples, out_dir):
    """CS231n's figure: one histogram per (initialization, layer), on a range that fits each row."""
    labels = list(samples)
    shown = [0, 1, 3, 5, 7, 9]   # layers 1, 2, 4, 6, 8, 10
    fig = figure(12, 1.7 * len(labels) + 0.6)
    axes = fig.subplots(len(labels), len(shown), squeeze=False)
    for row, label in enumerate(labels):
        values = samples[label]
        for col, layer in enumerate(shown):
            ax = axes[row, col]
            h = np.asarray(values[layer], dtype=np.float64).ravel()
            if label.startswith("tanh"):
                bins = np.linspace(-1, 1, 41) if "N(0, 1)" in label or "Xavier" in label else 40
            else:
                bins = 40
            counts, edges = np.histogram(h, bins=bins)
            ax.stairs(counts / h.size, edges, fill=True, color="tab:blue", alpha=0.85)
            ax.set_title(f"layer {layer + 1}: std {h.std():.2g}", fontsize=8)
            ax.tick_params(labelsize=6)
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 2))
            ax.xaxis.get_offset_text().set_fontsize(6)
            if col == 0:
                ax.set_ylabel(label + "\nfraction", fontsize=8)
            if row == len(labels) - 1:
                ax.set_xlabel("activation", fontsize=8)
    fig.suptitle("hidden activations on unit-Gaussian input, per initialization (rows) and layer (columns)",
                 fontsize=10)
    # A fixed layout: tight_layout measures all 30 axes' labels and costs seconds.
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.07, top=0.92, wspace=0.3, hspace=0.75)
    return save(fig, out_dir, "initialization_histograms.png", tight=False)
