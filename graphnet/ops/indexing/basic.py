"""Basic indexing: integers and slices whose bounds may be symbolic scalars; a view."""
from __future__ import annotations

import numpy as np

from graphnet.errors import GraphnetError, ShapeError
from graphnet.graph.ir import Apply, Op, TensorType, as_variable, broadcast_shapes, shape_str
from graphnet.ops import elementwise as ew
from graphnet.ops.indexing.common import SYMBOLIC, OutOfBoundsError, _check_index_scalar, _static_difference


def _wrap(value, n):
    return value + n if value < 0 else value


def resolve_entry(entry, n, axis, describe):
    """A concrete entry on an axis of size ``n`` -> (NumPy key, output length or None).

    ``describe(part)`` names a bound for the error message. Raises
    OutOfBoundsError when the entry leaves the axis.
    """
    if entry[0] == "index":
        i = _wrap(entry[1], n)
        if not 0 <= i < n:
            raise OutOfBoundsError(f"index {describe('index')} = {entry[1]} is out of range for axis {axis} "
                                   f"of size {n}")
        return i, None
    _, start, stop, step = entry
    step = 1 if step is None else step
    if step > 0:
        lo = 0 if start is None else _wrap(start, n)
        hi = n if stop is None else _wrap(stop, n)
        if not 0 <= lo <= n:
            raise OutOfBoundsError(f"slice start {describe('start')} = {start} is outside axis {axis} of size {n}")
        if not lo <= hi <= n:
            where = "past the end of" if hi > n else "before the start" if hi < lo else "outside"
            raise OutOfBoundsError(f"slice stop {describe('stop')} = {stop} is {where} "
                                   f"{'(' + str(lo) + ') on ' if hi < lo else ''}axis {axis} of size {n}")
        return slice(lo, hi, step), -(-(hi - lo) // step)
    hi = n - 1 if start is None else _wrap(start, n)
    lo = -1 if stop is None else _wrap(stop, n)
    if not -1 <= hi < n or (start is not None and hi < 0):
        raise OutOfBoundsError(f"slice start {describe('start')} = {start} is outside axis {axis} of size {n}")
    if not -1 <= lo <= hi:
        raise OutOfBoundsError(f"slice stop {describe('stop')} = {stop} is outside [{-1}, {hi}] for a "
                               f"negative step on axis {axis} of size {n}")
    return slice(hi, None if lo < 0 else lo, step), -(-(hi - lo) // -step)


def _concrete(entries, scalars):
    """Entries with their SYMBOLIC parts replaced by the values in ``scalars``.

    Symbolic values must not be negative: Python's wrap-around is for literal
    ``x[-3:]``; a computed bound below zero is a bug (and would make the static
    length of ``x[i * k:(i + 1) * k]`` wrong).
    """
    values = [int(v) for v in scalars]
    if any(v < 0 for v in values):
        raise OutOfBoundsError(f"symbolic index or slice bound {min(values)} is negative; computed bounds "
                               "must lie in [0, size] (only literal ints wrap around)")
    values = iter(values)
    return [tuple(next(values) if part is SYMBOLIC else part for part in e) for e in entries]


def _symbolic_names(entries, scalar_vars):
    """{(entry index, part name): variable} for the symbolic bounds."""
    names, inputs = {}, iter(scalar_vars)
    for k, entry in enumerate(entries):
        parts = ("index",) if entry[0] == "index" else ("start", "stop", "step")
        for part, value in zip(parts, entry[1:]):
            if value is SYMBOLIC:
                names[(k, part)] = next(inputs)
    return names


def basic_key(entries, shape, scalars, scalar_vars=None):
    """(NumPy key, output shape) for concrete scalars; raises OutOfBoundsError."""
    named = _symbolic_names(entries, scalar_vars) if scalar_vars is not None else {}
    key, out = [], []
    for axis, (entry, concrete) in enumerate(zip(entries, _concrete(entries, scalars))):
        def describe(part, axis=axis):
            var = named.get((axis, part))
            return f"({var.describe()})" if var is not None else ""
        k, length = resolve_entry(concrete, shape[axis], axis, describe)
        key.append(k)
        if length is not None:
            out.append(length)
    return tuple(key), tuple(out) + tuple(shape[len(entries):])


def _key_text(x, entries, scalar_vars):
    named = _symbolic_names(entries, scalar_vars)

    def part(k, name, value):
        if value is SYMBOLIC:
            return named[(k, name)].describe()
        return "" if value is None else str(value)

    texts = []
    for k, e in enumerate(entries):
        if e[0] == "index":
            texts.append(part(k, "index", e[1]))
        else:
            text = f"{part(k, 'start', e[1])}:{part(k, 'stop', e[2])}"
            texts.append(text + (f":{e[3]}" if e[3] not in (None, 1) else ""))
    return f"{x.describe()}[{', '.join(texts)}]"


# --------------------------------------------------------------- basic ops
class _BasicIndexOp(Op):
    """Shared by Subtensor and IncSubtensor: ``entries`` plus symbolic bounds as inputs."""

    __props__ = ("entries",)

    def __init__(self, entries):
        self.entries = tuple(tuple(e) for e in entries)

    @property
    def infer_shape_needs_values(self):
        """Only symbolic bounds need values: constant ones (``z[:, :H]``) are checked against the
        shapes alone, once per shape signature, not on every call (a loop body calls thousands)."""
        return self.n_symbolic > 0

    @property
    def n_symbolic(self):
        return sum(part is SYMBOLIC for e in self.entries for part in e[1:])

    def __str__(self):
        return f"{self.name}{{{_key_text(_Named('x'), self.entries, [_Named('?')] * self.n_symbolic)}}}"

    def _check_scalars(self, scalars):
        if len(scalars) != self.n_symbolic:
            raise GraphnetError(f"{self.name}: expects {self.n_symbolic} symbolic bounds, got {len(scalars)}")
        return [_check_index_scalar(s, "a slice bound or index", self.error_hint()) for s in scalars]

    def static_sliced_shape(self, x, scalars):
        """The static shape of ``x[entries]`` (None where only run time tells)."""
        named = _symbolic_names(self.entries, scalars)
        out = []
        for axis, entry in enumerate(self.entries):
            n = x.shape[axis]
            if entry[0] == "index":
                if n is not None and entry[1] is not SYMBOLIC:
                    self._resolve_now(x, scalars, entry, n, axis)
                continue
            _, start, stop, step = entry
            step = 1 if step is None else step
            if n is not None and SYMBOLIC not in (start, stop):
                out.append(self._resolve_now(x, scalars, entry, n, axis))
            elif step > 0 and SYMBOLIC not in (start, stop) and stop is not None and (start or 0) >= 0 <= stop:
                # Strict bounds make the length exact whenever the slice runs at all.
                out.append(max(0, -(-(stop - (start or 0)) // step)))
            elif step > 0 and start is SYMBOLIC and stop is SYMBOLIC:
                width = _static_difference(named[(axis, "start")], named[(axis, "stop")])
                out.append(None if width is None or width < 0 else -(-width // step))
            else:
                out.append(None)
        return tuple(out) + tuple(x.shape[len(self.entries):])

    def _resolve_now(self, x, scalars, entry, n, axis):
        try:
            return resolve_entry(entry, n, axis, lambda part: "")[1]
        except OutOfBoundsError as exc:
            raise OutOfBoundsError(f"{_key_text(x, self.entries, scalars)}: {exc}{self.error_hint()}") from None

    def _run_key(self, node, x_shape, scalar_values):
        """The NumPy key at run time; errors name the variable when ``node`` is known."""
        try:
            return basic_key(self.entries, x_shape, scalar_values,
                             node.inputs[self.first_scalar:] if node is not None else None)
        except OutOfBoundsError as exc:
            where = _key_text(node.inputs[0], self.entries, node.inputs[self.first_scalar:]) if node else "indexing"
            raise OutOfBoundsError(f"{where}: {exc}") from None


class _Named:
    """Stands in for a variable when an op is printed without its node."""

    def __init__(self, name):
        self.name = name

    def describe(self):
        return self.name


class Subtensor(_BasicIndexOp):
    """``x[entries]`` with integers and slices: a view of ``x``."""

    kind = "view"
    first_scalar = 1

    def shape_value_inputs(self, node):
        return tuple(range(self.first_scalar, len(node.inputs)))   # the bounds, not the data

    def make_node(self, x, *scalars):
        x = as_variable(x)
        scalars = self._check_scalars(scalars)
        if len(self.entries) > x.ndim:
            raise OutOfBoundsError(f"{x.describe()}: too many indices ({len(self.entries)}) for a "
                                   f"{x.ndim}-d variable{self.error_hint()}")
        return Apply(self, [x, *scalars], [TensorType(x.dtype, self.static_sliced_shape(x, scalars))])

    def infer_shape(self, node, shapes, values=None):
        if values is not None:
            return [self._run_key(node, shapes[0], values[1:])[1]]
        if not self.n_symbolic:
            return [self._run_key(node, shapes[0], [])[1]]
        # Without values only statically known lengths can be given (perform checks the bounds).
        kept = [axis for axis, e in enumerate(self.entries) if e[0] == "slice"]
        static = node.outputs[0].shape[:len(kept)]
        if None in static:
            raise GraphnetError(f"{_key_text(node.inputs[0], self.entries, node.inputs[1:])}: the output shape "
                                "depends on the values of the bounds; the backend must call "
                                "infer_shape(node, shapes, values=...)")
        return [tuple(static) + tuple(shapes[0][len(self.entries):])]

    def perform(self, inputs):
        x = np.asarray(inputs[0])
        key, _ = self._run_key(None, x.shape, inputs[1:])
        return [x[key]]

    def grad(self, inputs, outputs, g):
        x, scalars = inputs[0], inputs[1:]
        return [IncSubtensor(self.entries)(ew.zeros_like(x), g[0], *scalars)] + [None] * len(scalars)


class IncSubtensor(_BasicIndexOp):
    """A copy of ``x`` with ``y`` added into ``x[entries]``: Subtensor's gradient."""

    first_scalar = 2

    def shape_value_inputs(self, node):
        return ()   # the output is shaped as ``x``; the bounds are only checked

    def make_node(self, x, y, *scalars):
        x = as_variable(x)
        y = ew.cast(as_variable(y, like=x), x.dtype)
        scalars = self._check_scalars(scalars)
        target = self.static_sliced_shape(x, scalars)
        broadcast_shapes(target, y.shape, op_name="inc_subtensor", node_hint=self.error_hint())
        if y.ndim > len(target):
            raise ShapeError(f"inc_subtensor: {shape_str(y.shape)} has more axes than the slice "
                             f"{shape_str(target)}{self.error_hint()}")
        return Apply(self, [x, y, *scalars], [x.type])

    def infer_shape(self, node, shapes, values=None):
        if values is not None:
            _, target = self._run_key(node, shapes[0], values[2:])
            try:
                np.broadcast_to(np.empty(shapes[1], dtype=np.bool_), target)
            except ValueError:
                raise ShapeError(f"inc_subtensor: {shapes[1]} does not broadcast to the slice {target}") from None
        return [shapes[0]]

    def perform(self, inputs):
        x, y = np.asarray(inputs[0]), np.asarray(inputs[1])
        key, _ = self._run_key(None, x.shape, inputs[2:])
        out = x.copy()
        out[key] += y
        return [out]

    def grad(self, inputs, outputs, g):
        scalars = inputs[2:]
        return [g[0], Subtensor(self.entries)(g[0], *scalars)] + [None] * len(scalars)
