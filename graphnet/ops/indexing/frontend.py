"""The Theano-style front end of ``Variable``: ``x[key]``, ``x.shape[i]``, ``x.dimshuffle``."""
from __future__ import annotations

import os
import sys

import numpy as np

from graphnet.errors import DTypeError, GraphnetError, ShapeError
from graphnet.graph.ir import Op, Variable, as_variable
from graphnet.ops import shape as shape_ops
from graphnet.ops.indexing.advanced import AdvancedSubtensor
from graphnet.ops.indexing.basic import Subtensor
from graphnet.ops.indexing.common import SYMBOLIC, _check_index_scalar, static_int
from graphnet.ops.reduce import size_of


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
# graphnet/, three levels above this file (graphnet/ops/indexing/frontend.py)
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + os.sep


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
