"""Babysitting the learning: the lectures' sanity checks, and statistics to watch while training.

Before a long run (the lectures' order):

    initial_loss_check(model, X, y)       # ~ log(classes) with regularization off
    overfit_check(model, X, y)            # 50 examples -> 100% training accuracy, or the suspects

While it runs, a :class:`Monitor` (a ``train.fit`` callback) records, every
``every`` epochs or whenever ``record()`` is called, per hidden layer the
activation mean, std, histogram, fraction of saturated tanh/sigmoid units and
of dead ReLUs, and per parameter the gradient norm and the ratio of the next
update to the weights (the lectures' ~1e-3 rule). All of them come from ONE
compiled function: reductions over the activations, gradients and optimizer
updates that the compiler fuses into the forward and backward pass, so a call
costs about one training step and can stay on. ``monitor.plot(folder)`` draws
them next to the training report.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from graphnet import ops
from graphnet.errors import GraphnetError
from graphnet.graph.ir import Constant, SharedVariable, graph_inputs

__all__ = ["initial_loss_check", "overfit_check", "InitialLossCheck", "OverfitCheck", "Suspect",
           "Statistics", "Monitor", "input_statistics", "write_report"]

SATURATING = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0)}   # the activation's range
RECTIFIERS = ("relu", "leaky_relu", "prelu", "elu")
HEALTHY_UPDATE_RATIO = 1e-3


# =========================================================================== statistics graph
class _SlotsNotReady(Exception):
    """The optimizer has not created its state for these parameters yet (no training step compiled)."""


def _existing_slots(optimizer, params):
    """A ``_slot`` replacement that returns the optimizer's existing state variables.

    Rebuilding ``optimizer.updates`` with it gives the exact expressions of the
    next training step (same rule, same state) without creating new state.
    """
    latest = {}
    for kind, variables in optimizer.slots.items():
        for var in variables:             # later slots (a recompiled step) win
            latest[(kind, var.name)] = var

    def lookup(kind, p):
        try:
            return latest[(kind, f"{p.name or 'param'}.{kind}")]
        except KeyError:
            raise _SlotsNotReady(kind) from None
    return lookup


def _update_expressions(optimizer, params, grads):
    """``{id(param): new value expression}`` of the optimizer's next step, or None if not ready."""
    optimizer._slot = _existing_slots(optimizer, params)
    try:
        pairs = optimizer.updates(params, grads)
    except _SlotsNotReady:
        return None
    finally:
        del optimizer._slot
    return {id(shared): expr for shared, expr in pairs}


def _norm(x):
    return ops.sqrt(ops.sum(ops.mul(x, x)))


def _fraction(condition, dtype):
    return ops.mean(ops.cast(condition, dtype))


class Statistics:
    """One compiled function: ``stats(X, y) -> dict`` of every monitored statistic.

    Built from the model's classifier graph: the training objective (cross-
    entropy + ``weight_decay`` sum W^2), each hidden nonlinearity's output, the
    parameters' gradients and, given an ``optimizer`` whose training step was
    compiled, the value of the next update. Training mode by default (what the
    optimizer sees), with every state update (dropout step, running
    statistics) suppressed, so recording changes nothing.
    """

    def __init__(self, model, optimizer=None, weight_decay=0.0, bins=30, saturation=0.99, training=True,
                 backend="reference"):
        from graphnet.graph.autodiff import grad
        from graphnet.function import function
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
            raise GraphnetError(f"Statistics: bins must be an integer >= 2, got {bins!r}")
        g = model.classifier()
        self.bins, self.saturation = bins, float(saturation)
        kinds = {layer.name: getattr(layer, "activation", "linear") for layer in model.layers}
        hidden = model.hidden_activations(g.activations)
        self.layers = [(name, kinds[name]) for name, _ in hidden]
        self.widths = {name: h.shape[1] for name, h in hidden}   # units per layer, for histogram totals
        self.params = model.params
        keys, outputs = [], []

        def fetch(key, var):
            keys.append(key)
            outputs.append(var)

        objective = model.training_objective(weight_decay)
        fetch(("loss",), objective)
        for (name, kind), (_, h) in zip(self.layers, hidden):
            for stat, var in self._layer_statistics(h, kind).items():
                fetch(("layer", name, stat), var)
        grads = grad(objective, self.params)
        updates = _update_expressions(optimizer, self.params, grads) if optimizer is not None else None
        self.has_updates = updates is not None
        for p, gp in zip(self.params, grads):
            fetch(("param", p.name, "grad_norm"), _norm(gp))
            fetch(("param", p.name, "weight_norm"), _norm(p))
            if updates is not None:
                fetch(("param", p.name, "update_norm"), _norm(ops.sub(updates[id(p)], p)))
        # Explicit identity updates keep the training-mode state (dropout step,
        # running statistics) from advancing when statistics are recorded.
        frozen = [(v, v) for v in graph_inputs(outputs)
                  if isinstance(v, SharedVariable) and v.default_update is not None]
        self.keys = keys
        self.function = function([g.x, g.y], outputs, updates=frozen or None, training=training,
                                 backend=backend, name="statistics")

    def _layer_statistics(self, h, kind):
        dtype = h.dtype
        mean, variance = ops.moments(h)
        stats = {"mean": mean, "var": variance}
        low, high = ops.min(h), ops.max(h)
        stats["min"], stats["max"] = low, high
        if kind == "tanh":
            stats["saturated"] = _fraction(ops.greater(ops.abs(h), self.saturation), dtype)
        elif kind == "sigmoid":
            stats["saturated"] = _fraction(ops.greater(ops.abs(ops.sub(h, 0.5)), self.saturation - 0.5), dtype)
        elif kind in RECTIFIERS:
            stats["zero"] = _fraction(ops.less_equal(h, 0), dtype)
            # A dead unit is inactive for every example of the batch.
            stats["dead"] = _fraction(ops.less_equal(ops.max(h, axis=0), 0), dtype)
        # Cumulative counts below each inner bin edge, as one reduction over (examples, units, edges).
        if kind in SATURATING:   # fixed bins over the activation's range: records compare
            low, high = (Constant(np.asarray(bound, dtype)) for bound in SATURATING[kind])
        fractions = np.arange(1, self.bins, dtype=dtype) / self.bins
        edges = ops.add(low, ops.mul(ops.sub(high, low), fractions))
        below = ops.cast(ops.less(ops.expand_dims(h, -1), edges), dtype)
        stats["below_edges"] = ops.sum(below, axis=(0, 1))
        return stats

    def __call__(self, X, y):
        values = self.function(X, y)
        record = {"loss": float(values[0]), "layers": {}, "params": {}}
        for key, value in zip(self.keys[1:], values[1:]):
            scope = record["layers" if key[0] == "layer" else "params"].setdefault(key[1], {})
            scope[key[2]] = value if key[2] == "below_edges" else float(value)
        kinds = dict(self.layers)
        for name, stats in record["layers"].items():
            stats["activation"] = kinds[name]
            stats["std"] = math.sqrt(max(stats.pop("var"), 0.0))
            low, high = SATURATING.get(kinds[name], (stats["min"], stats["max"]))
            below = np.asarray(stats.pop("below_edges"), np.float64)
            cumulative = np.concatenate([[0.0], below, [len(y) * self.widths[name]]])
            stats["histogram"] = np.diff(cumulative)
            stats["edges"] = np.linspace(low, high, self.bins + 1)
        for stats in record["params"].values():
            if "update_norm" in stats:
                stats["update_ratio"] = stats["update_norm"] / max(stats["weight_norm"], 1e-30)
        return record


# =========================================================================== monitor
class Monitor:
    """Records activation, gradient and update statistics during training; a ``fit`` callback.

        monitor = Monitor(model, X_valid[:256], y_valid[:256], optimizer=opt, every=1)
        fit(model, splits, optimizer=opt, callback=monitor)
        monitor.plot("report")     # monitor_layers.png, monitor_histograms.png, monitor_updates.png
        print(monitor.summary())

    ``X, y`` is a fixed probe batch. The statistics function is compiled (by
    default with the cpu compiler, as ``fit``) at the first record, or again
    when the optimizer's state was recreated (a new training step). Update
    ratios need the optimizer whose step is training the model and the same
    ``weight_decay``; before the optimizer's first step they are left out.
    ``training=False`` computes the statistics in evaluation mode.
    """

    def __init__(self, model, X, y, optimizer=None, weight_decay=0.0, every=1, bins=30, saturation=0.99,
                 backend="cpu", training=True):
        from graphnet.training.fit import resolve_backend
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise GraphnetError(f"Monitor: every must be a positive integer, got {every!r}")
        backend = resolve_backend(backend)
        self.model, self.optimizer = model, optimizer
        self.X, self.y = np.asarray(X), np.asarray(y)
        self.every = every
        self.options = {"weight_decay": weight_decay, "bins": bins, "saturation": saturation,
                        "backend": backend, "training": training}
        self.records = []
        self._stats, self._stats_key = None, None

    def _slots_key(self):
        if self.optimizer is None:
            return None
        return tuple(id(v) for kind in sorted(self.optimizer.slots) for v in self.optimizer.slots[kind])

    def statistics(self):
        """The compiled :class:`Statistics`, rebuilt if the optimizer's state changed."""
        key = self._slots_key()
        if self._stats is None or key != self._stats_key or (self.optimizer is not None
                                                             and not self._stats.has_updates):
            self._stats = Statistics(self.model, optimizer=self.optimizer, **self.options)
            self._stats_key = key
        return self._stats

    def record(self, step=None):
        """Compute the statistics now, append them to ``records`` and return them."""
        started = time.perf_counter()
        record = self.statistics()(self.X, self.y)
        record["step"] = len(self.records) if step is None else step
        record["seconds"] = time.perf_counter() - started
        self.records.append(record)
        return record

    def __call__(self, history):
        """The ``fit(callback=...)`` hook: record every ``every`` epochs."""
        epoch = history.epoch[-1]
        if epoch % self.every == 0:
            self.record(epoch)

    # --- reading the records
    def series(self, scope, name, stat):
        """``(steps, values)`` of one statistic, e.g. ``series("params", "dense0.W", "update_ratio")``."""
        steps, values = [], []
        for r in self.records:
            value = r[scope].get(name, {}).get(stat)
            if value is not None:
                steps.append(r["step"])
                values.append(value)
        return np.asarray(steps), np.asarray(values, dtype=np.float64)

    def warnings(self, record=None):
        """The lectures' warning signs in a record (default: the last)."""
        record = record or (self.records[-1] if self.records else None)
        return [] if record is None else _warning_signs(record)

    def summary(self, record=None):
        """A text table of a record (default: the last) and its warning signs."""
        record = record or self.records[-1]
        lines = [f"step {record['step']}: loss {record['loss']:.4f} ({record['seconds'] * 1e3:.1f} ms to record)",
                 f"{'layer':<14} {'act.':<8} {'mean':>8} {'std':>8} {'saturated':>9} {'dead':>6}"]
        for name, s in record["layers"].items():
            lines.append(f"{name:<14} {s['activation']:<8} {s['mean']:8.3f} {s['std']:8.3f} "
                         f"{_percent(s.get('saturated')):>9} {_percent(s.get('dead')):>6}")
        lines.append(f"{'parameter':<18} {'|grad|':>10} {'|W|':>10} {'update/W':>10}")
        for name, s in record["params"].items():
            ratio = f"{s['update_ratio']:10.1e}" if "update_ratio" in s else f"{'-':>10}"
            lines.append(f"{name:<18} {s['grad_norm']:10.2e} {s['weight_norm']:10.2e} {ratio}")
        lines += [f"warning: {w}" for w in _warning_signs(record)]
        return "\n".join(lines)

    def plot(self, directory):
        """Write ``monitor_layers.png``, ``monitor_histograms.png`` and ``monitor_updates.png``."""
        if not self.records:
            raise GraphnetError("Monitor.plot: nothing recorded yet")
        os.makedirs(directory, exist_ok=True)
        return {"monitor_layers": _plot_layers(self, os.path.join(directory, "monitor_layers.png")),
                "monitor_histograms": _plot_histograms(self, os.path.join(directory, "monitor_histograms.png")),
                "monitor_updates": _plot_updates(self, os.path.join(directory, "monitor_updates.png"))}

    def as_dict(self):
        return {"every": self.every, "records": self.records}


def _percent(value):
    return "-" if value is None else f"{value:.0%}"


def _warning_signs(record, saturated=0.5, dead=0.5, low=1e-5, high=1e-1):
    signs = []
    for name, s in record["layers"].items():
        if s.get("saturated", 0.0) > saturated:
            signs.append(f"{name}: {s['saturated']:.0%} of the {s['activation']} units are saturated "
                         "(initialization too large?)")
        if s.get("dead", 0.0) > dead:
            signs.append(f"{name}: {s['dead']:.0%} of the ReLUs are dead (inactive on the whole batch)")
        if s["activation"] in SATURATING and s["std"] < 1e-3:
            signs.append(f"{name}: activations collapsed to a constant (std {s['std']:.1e}; initialization "
                         "too small?)")
    for name, s in record["params"].items():
        if not math.isfinite(s["grad_norm"]) or not math.isfinite(s["weight_norm"]):
            signs.append(f"{name}: non-finite values (diverged)")
        elif s["grad_norm"] == 0.0:
            signs.append(f"{name}: zero gradient")
        ratio = s.get("update_ratio")
        if ratio is not None and ratio > high:
            signs.append(f"{name}: update/weight ratio {ratio:.1e} (about 1e-3 is healthy; rate too high?)")
        elif ratio is not None and 0 < ratio < low:
            signs.append(f"{name}: update/weight ratio {ratio:.1e} (about 1e-3 is healthy; rate too low?)")
    return signs


# =========================================================================== sanity checks
def input_statistics(X):
    """Per-feature means and stds of ``X``: (largest |mean|, smallest and largest std of varying features)."""
    X = np.asarray(X, dtype=np.float64)
    means, stds = X.mean(axis=0), X.std(axis=0)
    varying = stds[stds > 1e-12]
    return {"max_abs_mean": float(np.max(np.abs(means))),
            "min_std": float(varying.min()) if varying.size else 0.0,
            "max_std": float(varying.max()) if varying.size else 0.0}


@dataclass
class InitialLossCheck:
    """The loss of the untrained network against ``log(classes)``."""

    loss: float
    expected: float
    passed: bool
    loss_with_decay: float | None = None

    def __str__(self):
        text = (f"initial loss {self.loss:.4f}, expected about log({round(math.exp(self.expected))}) = "
                f"{self.expected:.4f}: {'ok' if self.passed else 'FAILED'}")
        if self.loss_with_decay is not None:
            text += f"; with weight decay {self.loss_with_decay:.4f}"
        return text


def initial_loss_check(model, X, y, n_classes=None, tolerance=0.5, weight_decay=0.0, backend="reference"):
    """Is the untrained network's mean cross-entropy within ``tolerance`` (relative) of ``log(classes)``?

    Computed in evaluation mode without regularization, as the lectures ask.
    With ``weight_decay`` the loss with the L2 term is reported too: it must be
    higher.
    """
    from graphnet.function import function
    from graphnet.training.fit import evaluate
    n_classes = int(n_classes or (np.max(y) + 1))
    loss, _ = evaluate(model.eval_function(backend=backend), np.asarray(X), np.asarray(y))
    expected = math.log(n_classes)
    with_decay = None
    if weight_decay:
        g = model.classifier()
        objective = function([g.x, g.y], model.training_objective(weight_decay), training=False, backend=backend)
        with_decay = float(objective(X, y))
    return InitialLossCheck(loss, expected, bool(abs(loss - expected) <= tolerance * expected), with_decay)


@dataclass
class Suspect:
    """One of the lectures' reasons why a network cannot overfit a tiny set, with its evidence."""

    name: str
    evidence: str

    def __str__(self):
        return f"{self.name}: {self.evidence}"


@dataclass
class OverfitCheck:
    """What :func:`overfit_check` saw: accuracy reached, the loss curve and, on failure, the suspects."""

    passed: bool
    accuracy: float
    steps: int
    losses: list
    suspects: list = field(default_factory=list)
    before: dict = field(default_factory=dict)   # statistics record at initialization
    after: dict = field(default_factory=dict)    # statistics record at the end

    def suspect_names(self):
        return [s.name for s in self.suspects]

    def __str__(self):
        head = (f"overfit check: training accuracy {self.accuracy:.0%} on the subset after {self.steps} steps "
                f"(loss {self.losses[0]:.3f} -> {self.losses[-1]:.3f}): {'ok' if self.passed else 'FAILED'}")
        return "\n".join([head] + [f"  suspect {s}" for s in self.suspects])


def overfit_check(model, X, y, n=50, steps=300, optimizer=None, seed=0, target=1.0, check_every=10,
                  saturation=0.5, check_gradients=True, backend="reference"):
    """Train on ``n`` random examples with regularization off; expect ``target`` training accuracy.

    Full-batch steps with ``optimizer`` (default Adam(1e-2)) and no weight decay,
    on the model's layers without dropout; batch norm stays. The model's
    parameters and state are restored afterwards. On failure the result names
    the lectures' suspects found in the evidence: saturated initialization
    (more than ``saturation`` of a tanh/sigmoid layer's units at their bounds),
    zero or vanishing gradients (or dead ReLUs), unnormalized input, a learning
    rate too large (the loss rose or became NaN), wrong gradients (a quick
    :func:`~graphnet.graph.gradcheck.check_grad` when ``check_gradients``).
    """
    from graphnet.nn.layers import Sequential
    from graphnet.nn.optim import Adam
    rng = np.random.default_rng(seed)
    X, y = np.asarray(X), np.asarray(y)
    pick = rng.choice(len(y), size=min(n, len(y)), replace=False)
    Xs, ys = X[pick], y[pick]
    saved = model.state_dict()
    outputs = [(layer, layer.output, getattr(layer, "preactivation", None)) for layer in model.layers]
    # The same layers (the same parameters) without dropout: regularization off.
    plain = Sequential([layer for layer in model.layers if layer.kind != "dropout"])
    optimizer = optimizer if optimizer is not None else Adam(1e-2)
    try:
        step = plain.train_function(optimizer, weight_decay=0.0, backend=backend)
        evaluate = plain.eval_function(backend=backend)
        statistics = Statistics(plain, backend=backend)
        before = statistics(Xs, ys)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):   # divergence is a finding here
            losses, taken = _train_until(step, evaluate, Xs, ys, steps, check_every, target)
        finite = math.isfinite(losses[-1])
        accuracy = float(evaluate(Xs, ys)[1]) if finite else 0.0
        after = statistics(Xs, ys) if finite else {}
        passed, suspects = accuracy >= target, []
        if not passed:
            model.load_state_dict(saved)   # judge the gradients at the initialization, like the statistics
            suspects = _suspects(plain, Xs, ys, before, losses, saturation, check_gradients)
    finally:
        model.load_state_dict(saved)
        for layer, output, preactivation in outputs:   # building `plain` re-pointed them
            layer.output = output
            if preactivation is not None:
                layer.preactivation = preactivation
    return OverfitCheck(passed, accuracy, taken, losses, suspects, before, after)


def _train_until(step, evaluate, X, y, steps, check_every, target):
    """Full-batch steps until ``target`` training accuracy, a non-finite loss or ``steps``."""
    losses = []
    for taken in range(1, steps + 1):
        losses.append(float(step(X, y)[0]))
        if not math.isfinite(losses[-1]):
            break
        if (taken % check_every == 0 or taken == steps) and float(evaluate(X, y)[1]) >= target:
            break
    return losses, taken


def _suspects(model, X, y, before, losses, saturation, check_gradients):
    found = []
    saturated = [f"{name} ({s['activation']}): {s['saturated']:.0%} of units at their bounds"
                 for name, s in before["layers"].items() if s.get("saturated", 0.0) > saturation]
    if saturated:
        found.append(Suspect("saturated initialization", "; ".join(saturated) + " before training"))

    grads = {name: s["grad_norm"] for name, s in before["params"].items()}
    weights = [p.name for p in model.params if p.ndim >= 2]
    zero = [name for name, norm in grads.items() if norm == 0.0]
    dead = [f"{name}: {s['dead']:.0%} dead ReLUs" for name, s in before["layers"].items()
            if s.get("dead", 0.0) > 0.5]
    evidence = []
    if zero:
        evidence.append(f"zero gradient for {', '.join(zero)}")
    if len(weights) >= 2 and grads[weights[-1]] > 0:
        ratio = grads[weights[0]] / grads[weights[-1]]
        if ratio < 1e-3:
            evidence.append(f"|grad {weights[0]}| is {ratio:.1e} of |grad {weights[-1]}| (vanishing)")
    evidence += dead
    if evidence:
        found.append(Suspect("zero or vanishing gradients", "; ".join(evidence)))

    inputs = input_statistics(X)
    if inputs["max_abs_mean"] > 1.0 or inputs["max_std"] > 3.0 or inputs["min_std"] < 0.05:
        found.append(Suspect("unnormalized input",
                             f"feature means up to {inputs['max_abs_mean']:.2g} in magnitude, stds from "
                             f"{inputs['min_std']:.2g} to {inputs['max_std']:.2g} (standardize: mean 0, std 1)"))

    finite = [v for v in losses if math.isfinite(v)]
    if len(finite) < len(losses):
        found.append(Suspect("learning rate too large", f"the loss became {losses[-1]} at step {len(losses)}"))
    elif max(finite) > 2 * finite[0] or finite[-1] > finite[0]:
        found.append(Suspect("learning rate too large",
                             f"the loss rose from {finite[0]:.3g} to {max(finite):.3g} (ends at {finite[-1]:.3g})"))

    if check_gradients:
        from graphnet.graph.gradcheck import check_grad
        g = model.classifier()
        report = check_grad(g.loss, model.params, {g.x: X[:4], g.y: y[:4]}, max_entries=8, training=True)
        if not report.passed:
            bad = [f"{p.name} (relative error {p.relative_error:.1e})" for p in report.params if not p.passed]
            found.append(Suspect("wrong gradients", "check_grad disagrees for " + ", ".join(bad)))
    if not found:
        found.append(Suspect("too few steps or a learning rate too small",
                             f"the loss only fell from {finite[0]:.3g} to {finite[-1]:.3g}"))
    return found


# =========================================================================== plots
def _figure(width, height):
    from graphnet.training.plots import _figure as report_figure
    return report_figure(width, height)


def _plot_layers(monitor, path):
    names = list(monitor.records[-1]["layers"])
    figure = _figure(12, 3.8)
    mean_ax, std_ax, frac_ax = figure.subplots(1, 3)
    for name in names:
        steps, means = monitor.series("layers", name, "mean")
        mean_ax.plot(steps, means, "o-", ms=3, label=name)
        std_ax.plot(*monitor.series("layers", name, "std"), "o-", ms=3, label=name)
        for stat, style in (("saturated", "o-"), ("dead", "s--")):
            steps, values = monitor.series("layers", name, stat)
            if len(values):
                frac_ax.plot(steps, values, style, ms=3, label=f"{name} {stat}")
    mean_ax.set(title="activation mean", xlabel="step")
    std_ax.set(title="activation std", xlabel="step")
    frac_ax.set(title="saturated / dead fraction", xlabel="step", ylim=(-0.02, 1.02))
    for ax in (mean_ax, std_ax, frac_ax):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    return path


def _plot_histograms(monitor, path):
    """The CS231n figure: one histogram per hidden layer, first and last record overlaid."""
    first, last = monitor.records[0], monitor.records[-1]
    names = list(last["layers"])
    cols = min(4, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    figure = _figure(3.4 * cols, 2.9 * rows)
    axes = np.atleast_1d(figure.subplots(rows, cols)).ravel()
    for ax, name in zip(axes, names):
        for record, color, label in ((first, "tab:grey", f"step {first['step']}"),
                                     (last, "tab:blue", f"step {last['step']}")):
            s = record["layers"].get(name)
            if s is None or (record is first and first is last):
                continue
            ax.stairs(s["histogram"], s["edges"], fill=record is last, color=color, alpha=0.8, label=label)
        s = last["layers"][name]
        extra = (f", {s['saturated']:.0%} saturated" if "saturated" in s else
                 f", {s['dead']:.0%} dead" if "dead" in s else "")
        ax.set_title(f"{name} ({s['activation']})\nmean {s['mean']:.2f}, std {s['std']:.2f}{extra}", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=7)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    figure.suptitle("hidden activations on the probe batch")
    figure.tight_layout()
    figure.savefig(path)
    return path


def _plot_updates(monitor, path):
    figure = _figure(11, 3.8)
    ratio_ax, grad_ax = figure.subplots(1, 2)
    for p in monitor.records[-1]["params"]:
        steps, ratios = monitor.series("params", p, "update_ratio")
        if len(ratios):
            ratio_ax.plot(steps, np.maximum(ratios, 1e-12), "o-", ms=3, label=p)
        grad_ax.plot(*monitor.series("params", p, "grad_norm"), "o-", ms=3, label=p)
    ratio_ax.axhline(HEALTHY_UPDATE_RATIO, color="grey", ls="--", lw=1, label="1e-3")
    ratio_ax.set(title="|update| / |weights|", xlabel="step", yscale="log")
    grad_ax.set(title="gradient norm", xlabel="step", yscale="log")
    for ax in (ratio_ax, grad_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    return path


def write_report(directory, history, model, X_sample, monitor=None, backend="reference", summary=None):
    """``graphnet.training.plots.write_report`` plus the monitor's plots and records in ``summary.json``."""
    from graphnet.training import plots as report
    extra = dict(summary or {})
    if monitor is not None and monitor.records:
        extra["monitor"] = monitor.as_dict()
    files = report.write_report(directory, history, model, X_sample, backend=backend, summary=extra)
    if monitor is not None and monitor.records:
        files.update(monitor.plot(directory))
    return files
