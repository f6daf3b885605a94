"""Indexing: ``x[a:b]`` with symbolic bounds, ``x[rows, cols]`` with integer arrays,
their scatter-add gradients, ``arange``, and Theano's symbolic ``x.shape[i]``.

Two families, as in NumPy and Theano:

* **basic** (``Subtensor``): integers and slices, one entry per leading axis;
  the result is a view. Bounds may be Python ints (kept in the op) or symbolic
  integer scalars (inputs of the node), e.g. ``x[i * bs:(i + 1) * bs]``.
* **advanced** (``AdvancedSubtensor``): integer arrays (broadcast together, as
  NumPy) on consecutive axes, full slices ``:`` elsewhere; the result is a copy,
  e.g. ``log_probs[arange(n), labels]``.

Each gradient is a scatter-add into zeros (``IncSubtensor``,
``AdvancedIncSubtensor``); repeated indices accumulate.

Bounds are checked, never clipped: a slice must lie inside its axis after
Python's wrap of negative ints (``0 <= start <= stop <= n`` for a positive
step) and an index array must hold values in ``[0, n)``. A violation raises
:class:`OutOfBoundsError` naming the indexed variable and the bad index, before
anything is read: at build time when it is known then, else from
``infer_shape`` (which backends run before any kernel) and again in
``perform``.

Output shapes that depend on input *values* (a slice with symbolic bounds,
``arange(n)`` for a symbolic ``n``) cannot come from input shapes alone. Such
ops set ``infer_shape_needs_values = True``; backends then call
``infer_shape(node, shapes, values=arrays)``. Where a length is still known
statically (``x[i * bs:(i + 1) * bs]`` has ``bs`` rows) it is part of the
static type, and ``infer_shape`` returns it without values.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from graphnet.errors import DTypeError, GraphnetError, ShapeError
from graphnet.graph import Apply, Constant, Op, TensorType, Variable, as_variable, broadcast_shapes, shape_str
from graphnet.ops import elementwise as ew
from graphnet.ops import shape as shape_ops
from graphnet.ops.reduce import SizeOf, size_of


class OutOfBoundsError(GraphnetError, IndexError):
    """An index or slice bound lies outside the axis it indexes."""


class _Symbolic:
    """Marks an index entry whose value is a symbolic input of the node."""

    def __repr__(self):
        return "?"

    def __reduce__(self):
        return "SYMBOLIC"


SYMBOLIC = _Symbolic()


# ------------------------------------------------------------- static values
def static_int(var):
    """The int value of ``var`` if known when the graph is built, else None.

    Known: Python ints, 0-d integer constants, and element counts of axes whose
    size is static (``y.shape[0]`` after ``givens`` replaced ``y`` by a slice of
    known length).
    """
    if isinstance(var, (int, np.integer)) and not isinstance(var, (bool, np.bool_)):
        return int(var)
    if isinstance(var, Constant) and var.ndim == 0 and var.dtype.kind in "iu":
        return int(var.data)
    if isinstance(var, Variable) and var.owner is not None and isinstance(var.owner.op, SizeOf):
        return var.owner.op.static_value(var.owner.inputs[0])
    return None


def _static_difference(start, stop):
    """``stop - start`` when it is a constant however the scalars vary, else None.

    Recognizes ``a:a + k`` and the tutorial's ``i * bs:(i + 1) * bs``.
    """
    def operands(var, op_type):
        if isinstance(var, Variable) and var.owner is not None and isinstance(var.owner.op, op_type):
            a, b = var.owner.inputs
            return [(a, b), (b, a)]
        return []

    for a, k in operands(stop, ew.Add):
        if a is start and static_int(k) is not None:
            return static_int(k)
    for i_plus_one, scale in operands(stop, ew.Mul):
        width = static_int(scale)
        for i, one in operands(i_plus_one, ew.Add):
            if width is not None and static_int(one) is not None and any(
                    a is i and static_int(b) == width for a, b in operands(start, ew.Mul)):
                return static_int(one) * width
    return None


def _check_index_scalar(var, what, hint):
    var = as_variable(var)
    if var.ndim != 0 or var.dtype.kind not in "iu":
        raise DTypeError(f"indexing: {what} must be an integer scalar, got {var.describe()} of type {var.type}{hint}")
    return var


# --------------------------------------------------------- basic: resolving
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
    """Entries with their SYMBOLIC parts replaced by the values in ``scalars``."""
    values = iter(int(v) for v in scalars)
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
    infer_shape_needs_values = True

    def __init__(self, entries):
        self.entries = tuple(tuple(e) for e in entries)

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


# ------------------------------------------------------------ advanced ops
def check_index_array(idx, n, describe_index="index array", describe_x="the indexed variable", axis=0):
    """Raise OutOfBoundsError unless every value of ``idx`` lies in ``[0, n)``."""
    idx = np.asarray(idx)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        flat = idx.reshape(-1)
        pos = int(np.flatnonzero((flat < 0) | (flat >= n))[0])
        where = np.unravel_index(pos, idx.shape) if idx.ndim > 1 else pos
        raise OutOfBoundsError(f"{describe_index} holds {flat[pos]} at position {where}, outside [0, {n}) "
                               f"for axis {axis} of {describe_x}")


def _check_index_array_var(var, hint):
    var = as_variable(var)
    if var.dtype.kind == "b":
        raise DTypeError(f"indexing: boolean masks ({var.describe()}) are not supported; "
                         f"use gn.where(mask, x, 0) or gather the positions first{hint}")
    if var.dtype.kind not in "iu":
        raise DTypeError(f"indexing: index arrays must be integers, got {var.describe()} of type {var.type}{hint}")
    return var


class _AdvancedIndexOp(Op):
    """``entries``: "array" or "slice" (a full ``:``) per leading axis; arrays are consecutive."""

    __props__ = ("entries",)
    infer_shape_needs_values = True

    def __init__(self, entries):
        self.entries = tuple(entries)
        arrays = [k for k, e in enumerate(self.entries) if e == "array"]
        if not arrays or arrays != list(range(arrays[0], arrays[-1] + 1)):
            raise GraphnetError(f"{self.name}: index arrays must sit on consecutive axes, got {self.entries}")
        self.first, self.last = arrays[0], arrays[-1]

    def indexed_shape(self, x_shape, index_shapes, broadcast):
        return tuple(x_shape[:self.first]) + tuple(broadcast(*index_shapes)) + tuple(x_shape[self.last + 1:])

    def _key(self, indices):
        it = iter(indices)
        return tuple(next(it) if e == "array" else slice(None) for e in self.entries)

    def check_values(self, x_shape, indices, node=None, first_index=1):
        for k, idx in zip(range(self.first, self.last + 1), indices):
            if node is not None:
                var = node.inputs[first_index + k - self.first]
                check_index_array(idx, x_shape[k], f"index {var.describe()}", node.inputs[0].describe(), k)
            else:
                check_index_array(idx, x_shape[k], axis=k)

    def _run_shape(self, node, shapes, values, first_index):
        x_shape, index_shapes = shapes[0], shapes[first_index:]
        try:
            out = self.indexed_shape(x_shape, index_shapes, np.broadcast_shapes)
        except ValueError:
            names = ", ".join(f"{v.describe()} {s}" for v, s in zip(node.inputs[first_index:], index_shapes))
            raise ShapeError(f"{self.name}: index arrays {names} do not broadcast together") from None
        if values is not None:
            self.check_values(x_shape, values[first_index:], node, first_index)
        return out


class AdvancedSubtensor(_AdvancedIndexOp):
    """``x[i0, i1, ...]`` with integer arrays (NumPy's integer-array indexing): a gather."""

    def make_node(self, x, *indices):
        x = as_variable(x)
        hint = self.error_hint()
        indices = [_check_index_array_var(i, hint) for i in indices]
        if len(self.entries) > x.ndim:
            raise OutOfBoundsError(f"{x.describe()}: too many indices ({len(self.entries)}) for a "
                                   f"{x.ndim}-d variable{hint}")
        for k, idx in zip(range(self.first, self.last + 1), indices):
            if isinstance(idx, Constant) and x.shape[k] is not None:
                try:
                    check_index_array(idx.data, x.shape[k], f"index {idx.describe()}", x.describe(), k)
                except OutOfBoundsError as exc:
                    raise OutOfBoundsError(f"{exc}{hint}") from None
        shape = self.indexed_shape(x.shape, [i.shape for i in indices],
                                   lambda *s: broadcast_shapes(*s, op_name="integer-array indexing", node_hint=hint))
        return Apply(self, [x, *indices], [TensorType(x.dtype, shape)])

    def infer_shape(self, node, shapes, values=None):
        return [self._run_shape(node, shapes, values, 1)]

    def perform(self, inputs):
        x, indices = np.asarray(inputs[0]), [np.asarray(i) for i in inputs[1:]]
        self.check_values(x.shape, indices)
        return [x[self._key(indices)]]

    def grad(self, inputs, outputs, g):
        x, indices = inputs[0], inputs[1:]
        return [AdvancedIncSubtensor(self.entries)(ew.zeros_like(x), g[0], *indices)] + [None] * len(indices)


class AdvancedIncSubtensor(_AdvancedIndexOp):
    """A copy of ``x`` with ``y`` scatter-added at ``x[i0, i1, ...]``; repeated indices accumulate."""

    def make_node(self, x, y, *indices):
        x = as_variable(x)
        y = ew.cast(as_variable(y, like=x), x.dtype)
        hint = self.error_hint()
        indices = [_check_index_array_var(i, hint) for i in indices]
        target = self.indexed_shape(x.shape, [i.shape for i in indices],
                                    lambda *s: broadcast_shapes(*s, op_name="integer-array indexing", node_hint=hint))
        broadcast_shapes(target, y.shape, op_name="advanced_inc_subtensor", node_hint=hint)
        return Apply(self, [x, y, *indices], [x.type])

    def infer_shape(self, node, shapes, values=None):
        self._run_shape(node, [shapes[0]] + list(shapes[2:]), None if values is None
                        else [values[0]] + list(values[2:]), 1)
        return [shapes[0]]

    def perform(self, inputs):
        x, y, indices = np.asarray(inputs[0]), np.asarray(inputs[1]), [np.asarray(i) for i in inputs[2:]]
        self.check_values(x.shape, indices)
        out = x.copy()
        np.add.at(out, self._key(indices), y)
        return [out]

    def grad(self, inputs, outputs, g):
        indices = inputs[2:]
        return [g[0], AdvancedSubtensor(self.entries)(g[0], *indices)] + [None] * len(indices)


class CheckIndexBounds(Op):
    """``indices`` unchanged, after checking them against axis ``axis`` of ``x``.

    The NLL rewrite puts it in front of the fused cross-entropy, so a bad label
    is still reported naming the label variable and the indexed one.
    """

    kind = "view"
    __props__ = ("axis",)
    infer_shape_needs_values = True

    def __init__(self, axis):
        self.axis = int(axis)

    def make_node(self, indices, x):
        return Apply(self, [indices, x], [indices.type])

    def infer_shape(self, node, shapes, values=None):
        if values is not None:
            check_index_array(values[0], shapes[1][self.axis], f"index {node.inputs[0].describe()}",
                              node.inputs[1].describe(), self.axis)
        return [shapes[0]]

    def perform(self, inputs):
        check_index_array(inputs[0], np.shape(inputs[1])[self.axis], axis=self.axis)
        return [inputs[0]]

    def grad(self, inputs, outputs, g):
        return [None, None]


# -------------------------------------------------------------- creation
class ARange(Op):
    """``arange(start, stop, step)`` with integer-scalar inputs."""

    __props__ = ("dtype",)
    infer_shape_needs_values = True

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)

    def make_node(self, start, stop, step):
        hint = self.error_hint()
        start, stop, step = (_check_index_scalar(v, "an arange bound", hint) for v in (start, stop, step))
        if static_int(step) == 0:
            raise GraphnetError(f"arange: step must not be zero{hint}")
        bounds = [static_int(v) for v in (start, stop, step)]
        length = None if None in bounds else self._length(*bounds)
        return Apply(self, [start, stop, step], [TensorType(self.dtype, (length,))])

    @staticmethod
    def _length(start, stop, step):
        if step == 0:
            raise GraphnetError("arange: step must not be zero")
        return max(0, -(-(int(stop) - int(start)) // int(step)))

    def infer_shape(self, node, shapes, values=None):
        if values is None:
            static = node.outputs[0].shape[0]
            if static is None:
                raise GraphnetError("arange: the length depends on the values of its bounds; the backend must "
                                    "call infer_shape(node, shapes, values=...)")
            return [(static,)]
        return [(self._length(*values),)]

    def perform(self, inputs):
        start, stop, step = (int(v) for v in inputs)
        self._length(start, stop, step)
        return [np.arange(start, stop, step, dtype=self.dtype)]

    def grad(self, inputs, outputs, g):
        return [None, None, None]


class Alloc(Op):
    """An array of shape ``dims`` (integer scalars) filled with the scalar ``value``."""

    infer_shape_needs_values = True

    def make_node(self, value, *dims):
        value = as_variable(value)
        if value.ndim != 0:
            raise ShapeError(f"alloc: the fill value must be a scalar, got {shape_str(value.shape)}{self.error_hint()}")
        dims = [_check_index_scalar(d, "a dimension", self.error_hint()) for d in dims]
        return Apply(self, [value, *dims], [TensorType(value.dtype, tuple(static_int(d) for d in dims))])

    def infer_shape(self, node, shapes, values=None):
        if values is None:
            static = node.outputs[0].shape
            if None in static:
                raise GraphnetError("alloc: the shape depends on the values of its dimensions; the backend must "
                                    "call infer_shape(node, shapes, values=...)")
            return [static]
        dims = tuple(int(d) for d in values[1:])
        if any(d < 0 for d in dims):
            bad = next(v for v, d in zip(node.inputs[1:], dims) if d < 0)
            raise ShapeError(f"alloc: dimension {bad.describe()} is negative ({dims})")
        return [dims]

    def perform(self, inputs):
        dims = tuple(int(d) for d in inputs[1:])
        if any(d < 0 for d in dims):
            raise ShapeError(f"alloc: negative dimension in {dims}")
        return [np.full(dims, inputs[0], dtype=np.asarray(inputs[0]).dtype)]

    def grad(self, inputs, outputs, g):
        return [red_sum(g[0])] + [None] * (len(inputs) - 1)


def red_sum(x):
    from graphnet.ops.reduce import sum as _sum
    return _sum(x)


# ----------------------------------------------------------- constructors
def getitem(x, key):
    """``x[key]`` for a graph variable: basic or integer-array indexing, as NumPy."""
    x = as_variable(x)
    key = key if isinstance(key, tuple) else (key,)
    hint = Op().error_hint()
    if any(_is_index_array(k) for k in key):
        return _advanced_getitem(x, key, hint)
    return _basic_getitem(x, key, hint)


def _is_index_array(k):
    if isinstance(k, Variable):
        return k.ndim > 0
    return isinstance(k, (list, np.ndarray)) and np.ndim(k) > 0


def _expand_ellipsis(key, ndim, x, hint):
    if sum(k is Ellipsis for k in key) > 1:
        raise GraphnetError(f"{x.describe()}: an index may hold only one ellipsis (...){hint}")
    if Ellipsis in [k for k in key if not isinstance(k, (Variable, np.ndarray))]:
        pos = next(i for i, k in enumerate(key) if k is Ellipsis)
        used = sum(k is not None for k in key) - 1
        key = key[:pos] + (slice(None),) * max(0, ndim - used) + key[pos + 1:]
    return key


def _bound(value, what, hint):
    if value is None:
        return None, []
    value = value if isinstance(value, Variable) else (
        int(value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value)
    if isinstance(value, int):
        return value, []
    if not isinstance(value, Variable):
        raise DTypeError(f"indexing: {what} must be an int or an integer scalar variable, got {value!r}{hint}")
    known = static_int(value)
    if known is not None:
        return known, []
    return SYMBOLIC, [_check_index_scalar(value, what, hint)]


def _basic_getitem(x, key, hint):
    key = _expand_ellipsis(key, x.ndim, x, hint)
    entries, scalars, new_axes = [], [], []
    out_axis = 0
    for k in key:
        if k is None:
            new_axes.append(out_axis)
            out_axis += 1
        elif isinstance(k, slice):
            parts = []
            for value, what in ((k.start, "slice start"), (k.stop, "slice stop")):
                part, extra = _bound(value, what, hint)
                parts.append(part)
                scalars += extra
            step = static_int(k.step) if k.step is not None else None
            if k.step is not None and step is None:
                raise GraphnetError(f"{x.describe()}: a slice step must be a Python int{hint}")
            if step == 0:
                raise GraphnetError(f"{x.describe()}: slice step cannot be zero{hint}")
            entries.append(("slice", parts[0], parts[1], step))
            out_axis += 1
        else:
            part, extra = _bound(k, "an index", hint)
            entries.append(("index", part))
            scalars += extra
    while entries and entries[-1] == ("slice", None, None, None):
        entries.pop()
    out = Subtensor(tuple(entries))(x, *scalars) if entries else x
    return shape_ops.expand_dims(out, new_axes) if new_axes else out


def _advanced_getitem(x, key, hint):
    entries, indices = [], []
    for k in key:
        if isinstance(k, slice) and k == slice(None):
            entries.append("slice")
        elif isinstance(k, slice) or k is None or k is Ellipsis:
            raise GraphnetError(f"{x.describe()}: mixing integer arrays with partial slices, None or ... is not "
                                f"supported; slice first, then index: x[a:b][idx]{hint}")
        else:
            entries.append("array")
            indices.append(as_variable(np.asarray(k) if isinstance(k, list) else k))
    while entries and entries[-1] == "slice":
        entries.pop()
    arrays = [i for i, e in enumerate(entries) if e == "array"]
    if arrays != list(range(arrays[0], arrays[-1] + 1)):
        raise GraphnetError(f"{x.describe()}: index arrays separated by a slice are not supported "
                            f"(NumPy would move their axis to the front){hint}")
    return AdvancedSubtensor(tuple(entries))(x, *indices)


def arange(start, stop=None, step=1, dtype=None):
    """``[start, start + step, ...)`` below ``stop``; ``arange(n)`` is ``0..n-1``.

    Bounds may be symbolic integer scalars (``arange(y.shape[0])``); with all
    bounds known the result is a constant.
    """
    if stop is None:
        start, stop = 0, start
    dtype = np.dtype(dtype if dtype is not None else np.int64)
    if any(isinstance(v, float) for v in (start, stop, step)):
        raise DTypeError(f"arange: bounds must be integers, got {(start, stop, step)}")
    values = [static_int(v) for v in (start, stop, step)]
    if None not in values:
        ARange._length(*values)  # refuses a zero step
        return Constant(np.arange(*values, dtype=dtype))
    return ARange(dtype)(*(v if isinstance(v, Variable) else Constant(np.int64(v)) for v in (start, stop, step)))


def alloc(value, *shape):
    """An array of ``shape`` (ints or integer scalars) filled with ``value``."""
    value = as_variable(value)
    dims = [d if isinstance(d, Variable) else Constant(np.int64(d)) for d in shape]
    return Alloc()(value, *dims)


def symbolic_dim(x, axis):
    """``x.shape[axis]`` as an int64 scalar: ``size_of(x, axis)``, named after ``x``."""
    dim = size_of(x, axis)
    dim.name = f"{x.describe()}.shape[{axis}]"
    return dim


def dimshuffle(x, *pattern):
    """Theano's ``x.dimshuffle(...)``: reorder axes, ``'x'`` inserts a unit axis.

    Axes of ``x`` left out of ``pattern`` must be of static size 1; they are dropped.
    """
    x = as_variable(x)
    if len(pattern) == 1 and isinstance(pattern[0], (list, tuple)):
        pattern = tuple(pattern[0])
    kept = [p for p in pattern if p != "x"]
    if any(not isinstance(p, (int, np.integer)) or not 0 <= p < x.ndim for p in kept) or len(set(kept)) != len(kept):
        raise ShapeError(f"dimshuffle: pattern {pattern} does not fit a {x.ndim}-d variable {x.describe()}")
    dropped = [a for a in range(x.ndim) if a not in kept]
    if dropped:
        x = shape_ops.squeeze(x, dropped)
    remaining = [a for a in range(x.ndim + len(dropped)) if a not in dropped]
    order = [remaining.index(p) for p in kept]
    if order != sorted(order):
        x = shape_ops.transpose(x, order)
    new_axes = [i for i, p in enumerate(pattern) if p == "x"]
    return shape_ops.expand_dims(x, new_axes) if new_axes else x


# ------------------------------------------------------ Theano's x.shape[i]
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


class ShapeTuple(tuple):
    """A variable's static shape, a plain tuple of ints and ``None``, with one
    addition for user code: ``x.shape[i]`` of a dimension known only at run
    time is the symbolic int64 scalar ``size_of(x, i)``, as in Theano.

    Code inside the graphnet package keeps reading ``None`` there: ops check
    ``x.shape[1] is None`` when they infer static types. Equality, iteration,
    unpacking and slices behave exactly like the plain tuple.
    """

    def __new__(cls, dims, variable):
        self = super().__new__(cls, dims)
        self.variable = variable
        return self

    def __getitem__(self, item):
        dim = tuple.__getitem__(self, item)
        if isinstance(item, slice) or dim is not None:
            return dim
        if sys._getframe(1).f_code.co_filename.startswith(_PACKAGE_DIR):
            return None
        return symbolic_dim(self.variable, item % len(self))

    def __reduce__(self):
        return (tuple, (tuple(self),))
