"""The lecture's gradient check: symbolic gradients against central differences, in float64.

    report = gn.check_grad(loss, model.params, {x: X[:8], y: Y[:8]})
    print(report)            # one line per parameter, worst entries of those that fail
    assert report.passed

For every entry ``i`` of a parameter ``theta`` the numeric derivative is
``(f(theta + eps e_i) - f(theta - eps e_i)) / 2 eps`` with ``eps = 1e-6``. A
float32 network cannot be checked like that (its rounding error, ~1e-7 of the
loss, divided by 2e-6, swamps the derivative), so the check first builds a
float64 copy of the graph: every float placeholder and shared variable the cost
reads becomes a float64 placeholder fed with its current value, and casts to a
float dtype become casts to float64. The symbolic gradient is differentiated on
that copy too, so the check compares the gradient *rules* of every op on the
path, user-defined ops included, without float32 noise.

The copy is evaluated on the reference backend (NumPy ``perform`` of each op)
by default. Integer shared variables (the dropout step counter) are frozen at
their current value, so a training-mode check sees one fixed dropout mask.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from graphnet.errors import FeedError, GradientError, GraphnetError
from graphnet.graph.fgraph import FunctionGraph
from graphnet.graph.ir import (
    Constant, Placeholder, SharedVariable, Variable, ancestors_toposort, as_variable, graph_inputs,
)

__all__ = ["check_grad", "GradCheckReport", "ParamCheck", "relative_error"]

#: CS231n's reading of a relative error (for float64 with kink-free objectives).
VERDICTS = ((1e-7, "excellent"), (1e-5, "good"), (1e-4, "suspicious (a kink?)"), (1e-2, "probably wrong"))


#: Rounding error of one cost evaluation, in units of ``eps_machine * |cost|`` (a generous bound
#: for sums and deep graphs); divided by ``2 eps`` it is what finite differences can resolve.
ROUNDING_FACTOR = 10.0


def resolution(cost, eps):
    """The smallest derivative central differences resolve: ``10 * eps_machine * max(1, |cost|) / eps``."""
    return ROUNDING_FACTOR * np.finfo(np.float64).eps * max(1.0, abs(cost)) / eps


def relative_error(analytic, numeric, floor=1e-12):
    """``max |a - n| / max(max |a|, max |n|, floor)``: one number per parameter, scale-free.

    ``check_grad`` passes ``floor = resolution / tolerance``: a variable whose
    gradient is all below what finite differences resolve (saturated units)
    is judged by the absolute gap, not by noise divided by noise.
    """
    analytic, numeric = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    if analytic.size == 0:
        return 0.0
    scale = max(np.max(np.abs(analytic)), np.max(np.abs(numeric)), floor)
    return float(np.max(np.abs(analytic - numeric)) / scale)


def verdict(error):
    for bound, word in VERDICTS:
        if error < bound:
            return word
    return "wrong"


@dataclass
class ParamCheck:
    """The check of one variable: how many entries, the relative error, the worst entries."""

    name: str
    shape: tuple
    checked: int                    # entries perturbed (all of them unless max_entries sampled)
    relative_error: float
    passed: bool
    worst: list = field(default_factory=list)   # (index, analytic, numeric, entry error), worst first

    def describe(self):
        return (f"{self.name:<24} {str(self.shape):<12} {self.checked:>7}  {self.relative_error:9.2e}  "
                f"{'ok' if self.passed else 'FAIL'}  ({verdict(self.relative_error)})")


@dataclass
class GradCheckReport:
    """What :func:`check_grad` found: one :class:`ParamCheck` per variable, and the cost."""

    params: list
    cost: float
    eps: float
    tolerance: float
    resolution: float    # the smallest derivative the finite differences resolve at this cost

    @property
    def passed(self):
        return all(p.passed for p in self.params)

    @property
    def max_relative_error(self):
        return max((p.relative_error for p in self.params), default=0.0)

    def __getitem__(self, name):
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"no checked variable named {name!r}; checked {[p.name for p in self.params]}")

    def __str__(self):
        lines = [f"gradient check: cost {self.cost:.6g}, central differences with eps={self.eps:g} "
                 f"(resolve ~{self.resolution:.0e}), tolerance {self.tolerance:g} (float64)",
                 f"{'variable':<24} {'shape':<12} {'entries':>7}  {'rel. err':>9}",
                 *[p.describe() for p in self.params]]
        for p in self.params:
            if p.passed:
                continue
            lines.append(f"worst entries of {p.name} (index: analytic vs numeric, entry error):")
            lines += [f"  {index}: {a: .8g} vs {n: .8g}  ({e:.2e})" for index, a, n, e in p.worst]
        lines.append("PASSED" if self.passed else "FAILED: the symbolic gradient disagrees with finite differences")
        return "\n".join(lines)

    __repr__ = __str__


def check_grad(cost, wrt, feed=None, eps=1e-6, tolerance=1e-5, max_entries=None, worst=5, seed=0,
               training=False, backend="reference"):
    """Compare ``grad(cost, wrt)`` with central differences; return a :class:`GradCheckReport`.

    ``cost`` is a scalar variable; ``wrt`` a shared variable or placeholder, or
    a list of them (a model's ``params``); ``feed`` maps every placeholder the
    cost reads (or its name) to an array. ``max_entries`` perturbs only that
    many randomly chosen entries per variable (the lecture's shortcut for big
    layers); ``worst`` is how many of the worst entries to keep. A variable
    passes when its relative error ``max|a - n| / max(|a|, |n|)`` is below
    ``tolerance``; the denominator is never taken below what the differences
    resolve (``resolution(cost, eps) / tolerance``), so gradients lost in
    rounding noise (saturated units) are judged by their absolute gap.
    ``training=True`` checks the training form of dropout and batch norm.
    Shared variables keep their values: nothing is updated.
    """
    cost = as_variable(cost)
    if cost.ndim != 0 or cost.dtype.kind != "f":
        raise GradientError(f"check_grad: the cost must be a float scalar, got {cost.type} ({cost.describe()})")
    wrt_list = [wrt] if isinstance(wrt, Variable) else list(wrt)
    if not wrt_list:
        raise GraphnetError("check_grad: give at least one variable to check (wrt)")
    values = _input_values(cost, wrt_list, feed)
    substitutes, cost64 = _float64_copy(cost, values)

    from graphnet.graph.autodiff import grad
    from graphnet.function import function
    wrt64 = [substitutes[w] for w in wrt_list]
    grads64 = grad(cost64, wrt64)
    # Inputs: the float64 placeholders, then the integer placeholders (labels) as they are.
    originals = list(substitutes) + [v for v in values if isinstance(v, Placeholder) and v not in substitutes]
    inputs = [substitutes.get(old, old) for old in originals]
    feeds = [values[old] for old in originals]
    evaluate = function(inputs, [cost64] + grads64, training=training, backend=backend, name="gradcheck")
    cost_only = function(inputs, cost64, training=training, backend=backend, name="gradcheck_cost")
    outputs = evaluate(*feeds)
    base_cost, analytic = float(outputs[0]), outputs[1:]

    rng = np.random.default_rng(seed)
    floor = resolution(base_cost, eps)
    position = {id(v): i for i, v in enumerate(inputs)}
    checks = []
    for w, new, g in zip(wrt_list, wrt64, analytic):
        slot = position[id(new)]
        point = np.array(feeds[slot], dtype=np.float64)
        entries = _chosen_entries(point.shape, max_entries, rng)
        numeric = np.empty(len(entries))
        for k, index in enumerate(entries):
            original = point[index]
            point[index] = original + eps
            up = float(cost_only(*_with(feeds, slot, point)))
            point[index] = original - eps
            down = float(cost_only(*_with(feeds, slot, point)))
            point[index] = original
            numeric[k] = (up - down) / (2 * eps)
        picked = np.array([g[index] for index in entries], dtype=np.float64)
        checks.append(_param_check(w, point.shape, entries, picked, numeric, tolerance, worst, floor))
    return GradCheckReport(checks, base_cost, eps, tolerance, floor)


# --------------------------------------------------------------------------- the float64 copy
def _input_values(cost, wrt_list, feed):
    """{graph input the cost reads (and every wrt): its value}; placeholders from ``feed``."""
    feed = dict(feed or {})
    by_name = {k: v for k, v in feed.items() if isinstance(k, str)}
    by_var = {k: v for k, v in feed.items() if isinstance(k, Variable)}
    inputs = graph_inputs([cost])
    for w in wrt_list:
        if not isinstance(w, Variable) or w.owner is not None or isinstance(w, Constant):
            what = w.describe() if isinstance(w, Variable) else repr(w)
            raise GradientError(f"check_grad: {what} is not a placeholder or shared variable; finite "
                                "differences perturb graph inputs only")
        if w.dtype.kind != "f":
            raise GradientError(f"check_grad: {w.describe()} has dtype {w.dtype}; only float variables "
                                "have gradients")
        if w not in inputs:
            inputs.append(w)
    values = {}
    for var in inputs:
        if isinstance(var, SharedVariable):
            values[var] = var.get_value()
        elif isinstance(var, Placeholder):
            if var in by_var:
                values[var] = np.asarray(by_var[var])
            elif var.name in by_name:
                values[var] = np.asarray(by_name[var.name])
            else:
                raise FeedError(f"check_grad: the cost reads placeholder {var.describe()}; give its value in feed")
            if not var.type.accepts_shape(values[var].shape):
                raise FeedError(f"check_grad: placeholder {var.describe()} {var.type} was fed shape "
                                f"{values[var].shape}")
    return values


def _float64_copy(cost, values):
    """``({old input: float64 placeholder}, cost in float64)``.

    Float placeholders and shared variables become float64 placeholders of
    their concrete shape; integer shared variables become constants (frozen);
    every op with a float ``dtype`` parameter (casts) is rebuilt for float64.
    """
    substitutes, mapping = {}, {}
    for i, (var, value) in enumerate(values.items()):
        if var.dtype.kind == "f":
            new = Placeholder(f"gradcheck{i}_{_safe_name(var)}", np.shape(value), "float64")
            substitutes[var] = mapping[var] = new
        elif isinstance(var, SharedVariable):
            mapping[var] = Constant(value, name=var.name)
    return substitutes, _rebuild_in_float64([cost], mapping)[0]


def float64_function_graph(fgraph):
    """``fgraph`` computing in float64 (its float placeholders and casts widened): an inner graph's copy."""
    mapping = {v: Placeholder(v.name, v.type.shape, "float64") for v in fgraph.inputs if v.dtype.kind == "f"}
    outputs = _rebuild_in_float64(list(fgraph.outputs), mapping)
    return FunctionGraph(tuple(mapping.get(v, v) for v in fgraph.inputs), tuple(outputs))


def _rebuild_in_float64(roots, mapping):
    """``roots`` rebuilt on the inputs ``mapping`` substitutes, every op widened to float64."""
    for node in ancestors_toposort(roots):
        new_inputs = [mapping.get(v, v) for v in node.inputs]
        op = _in_float64(node.op)
        if op is node.op and all(a is b for a, b in zip(new_inputs, node.inputs)):
            continue
        try:
            new_node = op.make_node(*new_inputs)
        except Exception as exc:  # noqa: BLE001 - re-raised naming the node
            raise GraphnetError(f"check_grad: could not rebuild {node.op} (built at {node.source}) in "
                                f"float64: {exc}") from exc
        new_node.source = node.source
        for old, new in zip(node.outputs, new_node.outputs):
            new.name, new.source = old.name, old.source
            mapping[old] = new
    return [mapping.get(r, r) for r in roots]


def _in_float64(op):
    widened_body = op.in_float64()
    if widened_body is not op:
        return widened_body
    dtype = getattr(op, "dtype", None)
    if "dtype" not in getattr(op, "__props__", ()) or dtype is None or np.dtype(dtype).kind != "f":
        return op
    if np.dtype(dtype) == np.float64:
        return op
    widened = copy.copy(op)
    widened.dtype = np.dtype(np.float64)
    return widened


def _safe_name(var):
    return "".join(c if c.isalnum() or c in "._" else "_" for c in var.describe())


def _with(feeds, slot, value):
    out = list(feeds)
    out[slot] = value
    return out


def _chosen_entries(shape, max_entries, rng):
    size = int(np.prod(shape))
    if max_entries is None or size <= max_entries:
        flat = np.arange(size)
    else:
        flat = np.sort(rng.choice(size, size=int(max_entries), replace=False))
    return [np.unravel_index(i, shape) if shape else () for i in flat]


def _param_check(var, shape, entries, analytic, numeric, tolerance, worst, floor):
    error = relative_error(analytic, numeric, floor=floor / tolerance)
    gap = np.abs(analytic - numeric)
    entry_error = gap / np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), 1e-12)
    order = np.argsort(-gap, kind="stable")[:worst]
    worst_entries = [(tuple(int(i) for i in entries[k]), float(analytic[k]), float(numeric[k]),
                      float(entry_error[k])) for k in order]
    return ParamCheck(var.describe(), tuple(shape), len(entries), error, bool(error < tolerance), worst_entries)
