"""Babysitting plots of the lectures: loss and accuracy curves, activation histograms.

Figures are drawn with matplotlib's object API on the Agg canvas (no display,
no global pyplot state), so they work on servers and inside tests.

* ``training_curves.png``: training and validation loss, training and
  validation accuracy, and the learning rate, per epoch; the best epoch marked.
  Read it as the lectures say: a loss that falls too linearly means the rate is
  too low; one that explodes, too high; a large train/validation accuracy gap
  means overfitting.
* ``activations.png``: a histogram of every layer's output on held-out data,
  with the mean, the standard deviation and the fraction of zeros (dead or
  inactive ReLUs) or of saturated units (|tanh| or sigmoid near its bounds).

matplotlib is an optional peer (the ``demo`` extra): a plain ``pip install
graphnet`` trains and evaluates, and :func:`write_report` then writes
``summary.json`` only; :func:`matplotlib_missing` is the line saying how to get
the plots.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

__all__ = ["plot_training_curves", "plot_activation_histograms", "write_report", "matplotlib_missing"]

#: What a report says in place of its plots when matplotlib cannot be imported.
PLOTS_NEED_MATPLOTLIB = ("plots skipped: matplotlib is not installed "
                         "(pip install matplotlib, or pip install 'graphnet[demo]', draws them)")


def matplotlib_missing():
    """``None`` when matplotlib can be imported; otherwise the one line that says how to get the plots."""
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError:
        return PLOTS_NEED_MATPLOTLIB
    return None


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    return figure


def plot_training_curves(history, path, title="training"):
    """Write loss, accuracy and learning-rate curves of a :class:`~graphnet.training.fit.History` to ``path``."""
    from matplotlib.ticker import MaxNLocator
    epochs = np.asarray(history.epoch)
    figure = _figure(13, 4)
    loss_ax, acc_ax, lr_ax = figure.subplots(1, 3)
    has_valid = not all(math.isnan(v) for v in history.val_loss)

    loss_ax.plot(epochs, history.train_loss, "o-", ms=3, label="train (mini-batch mean)")
    if has_valid:
        loss_ax.plot(epochs, history.val_loss, "o-", ms=3, label="validation")
    loss_ax.set(title="cross-entropy loss", xlabel="epoch", ylabel="loss")
    if min(history.train_loss) > 0:
        loss_ax.set_yscale("log")

    acc_ax.plot(epochs, history.train_accuracy, "o-", ms=3, label="train")
    if has_valid:
        acc_ax.plot(epochs, history.val_accuracy, "o-", ms=3, label="validation")
    acc_ax.set(title="accuracy", xlabel="epoch", ylabel="fraction correct")
    low = np.nanmin(np.concatenate([history.train_accuracy, history.val_accuracy]))
    acc_ax.set_ylim(max(0.0, min(low, 0.9) - 0.02), 1.005)

    lr_ax.step(epochs, history.learning_rate, where="post")
    lr_ax.set(title="learning rate", xlabel="epoch", ylabel="rate")
    lr_ax.set_yscale("log")

    for ax in (loss_ax, acc_ax, lr_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if history.best_epoch is not None:
            ax.axvline(history.best_epoch, color="grey", ls="--", lw=1, label=f"best epoch ({history.best_epoch})")
        ax.grid(alpha=0.3)
    loss_ax.legend(fontsize=8)
    acc_ax.legend(fontsize=8, loc="lower right")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path)
    return path


def _describe(values, activation):
    mean, std = float(np.mean(values)), float(np.std(values))
    text = f"mean {mean:.2f}, std {std:.2f}"
    if activation in ("relu", "prelu", "leaky_relu", "elu"):
        text += f"\n{np.mean(values <= 0):.0%} at or below 0"
    elif activation == "tanh":
        text += f"\n{np.mean(np.abs(values) > 0.99):.0%} saturated (|h| > 0.99)"
    elif activation == "sigmoid":
        text += f"\n{np.mean((values < 0.01) | (values > 0.99)):.0%} saturated"
    return text


def plot_activation_histograms(named_values, path, title="activations", activations=None, labels=None):
    """Write one histogram per ``(layer name, array)`` pair to ``path``.

    ``activations`` ({layer name: activation name}) adds the matching statistic
    (fraction of zeros for rectifiers, of saturated units for tanh and sigmoid);
    ``labels`` ({layer name: text}) is shown after the name in each title.
    """
    named_values = list(named_values)
    activations, labels = activations or {}, labels or {}
    cols = min(4, len(named_values))
    rows = math.ceil(len(named_values) / cols)
    figure = _figure(3.4 * cols, 2.9 * rows)
    axes = np.atleast_1d(figure.subplots(rows, cols)).ravel()
    for ax, (name, values) in zip(axes, named_values):
        values = np.asarray(values, dtype=np.float64).ravel()
        activation = activations.get(name, "")
        # np.histogram + stairs draws one path instead of 60 bar patches: far faster to render.
        counts, edges = np.histogram(values, bins=60)
        ax.stairs(counts, edges, fill=True, color="tab:blue", alpha=0.85, baseline=0.5)
        label = labels.get(name, activation)
        ax.set_title(f"{name}" + (f" ({label})" if label else ""), fontsize=10)
        ax.text(0.97, 0.95, _describe(values, activation), transform=ax.transAxes, ha="right", va="top",
                fontsize=8, bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8})
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.5)
        ax.tick_params(labelsize=8)
    for ax in axes[len(named_values):]:
        ax.set_visible(False)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path)
    return path


def layer_outputs(model, X, backend="reference"):
    """``[(layer name, array)]``: every layer's output on ``X`` in evaluation mode.

    Dropout layers are left out (in evaluation mode they pass their input on).
    """
    from graphnet.function import function
    g = model.classifier()
    chosen = [(layer, var) for layer, (_, var) in zip(model.layers, g.activations) if layer.kind != "dropout"]
    fetch = function([g.x], [var for _, var in chosen], training=False, backend=backend, name="layer_outputs")
    return [(layer.name, value) for (layer, _), value in zip(chosen, fetch(X))]


def layer_labels(model):
    """``{layer name: short description}`` for plot titles; the last layer is the logits."""
    labels = {}
    for layer in model.layers:
        if layer.kind == "dense":
            labels[layer.name] = f"{layer.n_in}\u2192{layer.n_out}, {layer.activation}"
        elif layer.kind == "batchnorm":
            labels[layer.name] = f"{layer.n} units"
        else:
            labels[layer.name] = getattr(layer, "activation", "")
    last = model.layers[-1]
    if getattr(last, "activation", None) == "linear":
        labels[last.name] += ": logits"
    return labels


def write_report(directory, history, model, X_sample, backend="reference", summary=None):
    """Write ``training_curves.png``, ``activations.png`` and ``summary.json`` into ``directory``.

    Returns ``{name: path}`` of the files written. Without matplotlib, only
    ``summary.json`` (check :func:`matplotlib_missing` to say so).
    """
    os.makedirs(directory, exist_ok=True)
    files = {}
    if matplotlib_missing() is None:
        files.update(_write_plots(directory, history, model, X_sample, backend))
    record = {"history": history.as_dict(), **(summary or {})}
    summary_path = os.path.join(directory, "summary.json")
    with open(summary_path, "w") as f:
        json.dump(record, f, indent=2, default=_json_default)
    files["summary"] = summary_path
    return files


def _write_plots(directory, history, model, X_sample, backend):
    files = {}
    files["training_curves"] = plot_training_curves(
        history, os.path.join(directory, "training_curves.png"),
        title=f"training curves (best epoch {history.best_epoch})")
    outputs = layer_outputs(model, X_sample, backend=backend)
    kinds = {layer.name: getattr(layer, "activation", "") for layer in model.layers}
    files["activations"] = plot_activation_histograms(
        outputs, os.path.join(directory, "activations.png"),
        title=f"layer outputs on {len(X_sample)} held-out examples (evaluation mode, log counts)",
        activations=kinds, labels=layer_labels(model))
    return files


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
