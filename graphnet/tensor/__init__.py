"""``import graphnet.tensor as T``: the Theano tensor idiom on graphnet.

A script written against ``theano.tensor`` ports by changing its imports::

    import graphnet
    import graphnet.tensor as T

    x = T.matrix('x'); y = T.ivector('y'); index = T.lscalar()
    p_y_given_x = T.nnet.softmax(T.dot(x, W) + b)
    nll = -T.mean(T.log(p_y_given_x)[T.arange(y.shape[0]), y])
    g_W = T.grad(cost=nll, wrt=W)

The constructors make placeholders (a fresh name when none is given) whose
float dtype is ``graphnet.config.floatX`` and whose dimensions are all
run-time (``None``); the functions are graphnet ops under Theano's names.
See docs/porting-from-theano.md for what differs.
"""
from __future__ import annotations

import itertools

import numpy as np

from graphnet import config
from graphnet import ops as _ops
from graphnet.graph.autodiff import grad as _grad
from graphnet.errors import GraphnetError
from graphnet.graph.ir import Placeholder, Variable, as_variable
from graphnet.ops.indexing import (  # noqa: F401
    AdvancedIncSubtensor, AdvancedSubtensor, IncSubtensor, Subtensor, alloc, arange, dimshuffle,
)
from graphnet.ops.scan import scan  # noqa: F401 - theano.scan, also reachable as T.scan
from graphnet.tensor import nnet, signal  # noqa: F401

# --------------------------------------------------------------- constructors
_names = itertools.count()

#: Theano's dtype prefixes; no prefix means config.floatX
_PREFIXES = {"": None, "f": "float32", "d": "float64", "b": "int8", "w": "int16", "i": "int32", "l": "int64"}
_SHAPES = {"scalar": (), "vector": (None,), "row": (1, None), "col": (None, 1), "matrix": (None, None),
           "tensor3": (None,) * 3, "tensor4": (None,) * 4}


def _resolve_dtype(dtype):
    return config.floatX if dtype in (None, "floatX") else np.dtype(dtype).name


def tensor(dtype=None, shape=None, name=None):
    """A placeholder of ``dtype`` (default floatX) and ``shape`` (``None`` dims are run-time)."""
    if shape is None:
        raise GraphnetError("tensor: give a shape, e.g. (None, 784); None marks a run-time dimension")
    dtype = _resolve_dtype(dtype)
    return Placeholder(name or f"{dtype}_{next(_names)}", tuple(shape), dtype)


def _constructor(kind, prefix):
    shape = _SHAPES[kind]

    def make(name=None, dtype=None):
        chosen = _resolve_dtype(dtype if dtype is not None else _PREFIXES[prefix])
        return Placeholder(name or f"{prefix}{kind}_{next(_names)}", shape, chosen)

    make.__name__ = prefix + kind
    make.__doc__ = (f"A {kind} placeholder ({len(shape)}-d) of dtype "
                    f"{_PREFIXES[prefix] or 'config.floatX'}; ``name`` is optional.")
    return make


for _kind in _SHAPES:
    for _prefix in _PREFIXES:
        globals()[_prefix + _kind] = _constructor(_kind, _prefix)
del _kind, _prefix

# ------------------------------------------------------------- the functions
dot = _ops.dot
tanh, exp, log, sqrt, sgn = _ops.tanh, _ops.exp, _ops.log, _ops.sqrt, _ops.sign
sigmoid, softplus = _ops.sigmoid, _ops.softplus
maximum, minimum = _ops.maximum, _ops.minimum
eq, neq = _ops.eq, _ops.neq
lt, le, gt, ge = _ops.less, _ops.less_equal, _ops.greater, _ops.greater_equal
switch = _ops.where
abs_ = _ops.abs
zeros_like, ones_like = _ops.zeros_like, _ops.ones_like
reshape, transpose = _ops.reshape, _ops.transpose
size_of = _ops.size_of


def flatten(x, ndim=1):
    """``x`` with its axes from ``ndim - 1`` on merged (``ndim=1``: a vector, C order)."""
    return _ops.flatten(x, ndim)


floor, ceil, log1p, expm1 = _ops.floor, _ops.ceil, _ops.log1p, _ops.expm1
mod, floor_div = _ops.mod, _ops.floor_div
int_div = floor_div
#: Theano's dtype lists (lists, so ``x.dtype in T.float_dtypes`` compares with ==)
float_dtypes = ["float16", "float32", "float64"]
int_dtypes = ["int8", "int16", "int32", "int64"]
uint_dtypes = ["uint8", "uint16", "uint32", "uint64"]
discrete_dtypes = ["bool"] + int_dtypes + uint_dtypes
continuous_dtypes = list(float_dtypes)


def round(a, mode=None):  # noqa: A001 - Theano's name
    """Theano's ``T.round``: ``mode='half_away_from_zero'`` (the default, 2.5 -> 3) or ``'half_to_even'``."""
    if mode in (None, "half_away_from_zero"):
        return _ops.round_half_away_from_zero(a)
    if mode == "half_to_even":
        return _ops.round_half_to_even(a)
    raise GraphnetError(f"round: mode must be 'half_away_from_zero' or 'half_to_even', got {mode!r}")


def disconnected_grad(x):
    """``x``, through which ``grad`` does not differentiate (``gn.stop_gradient``)."""
    return _ops.stop_gradient(x)


zero_grad = disconnected_grad


concatenate = _ops.concatenate


def stack(*tensors, axis=0):
    """``T.stack([a, b], axis=0)``, or Theano's older ``T.stack(a, b)``: joined along a new axis."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tensors[0]
    return _ops.stack(list(tensors), axis=axis)


def outer(x, y):
    """The outer product of vectors ``x`` and ``y``: ``x[:, None] * y[None, :]``."""
    x, y = as_variable(x), as_variable(y)
    return _ops.mul(dimshuffle(x, 0, "x"), dimshuffle(y, "x", 0))


def log2(x):
    return _ops.true_div(_ops.log(x), float(np.log(2.0)))


def log10(x):
    return _ops.true_div(_ops.log(x), float(np.log(10.0)))


def sqr(x):
    """``x * x``."""
    return _ops.mul(x, x)


def pow(x, y):  # noqa: A001 - Theano's name
    return _ops.pow(x, y)


def clip(x, low, high):
    """``x`` limited to ``[low, high]``."""
    return _ops.minimum(_ops.maximum(x, low), high)


def sum(x, axis=None, keepdims=False):  # noqa: A001
    return _ops.sum(x, axis, keepdims)


def mean(x, axis=None, keepdims=False):
    return _ops.mean(x, axis, keepdims)


def max(x, axis=None, keepdims=False):  # noqa: A001
    return _ops.max(x, axis, keepdims)


def min(x, axis=None, keepdims=False):  # noqa: A001
    return _ops.min(x, axis, keepdims)


def var(x, axis=None, keepdims=False):
    return _ops.var(x, axis, keepdims)


def argmax(x, axis=None, keepdims=False):
    """Index of the maximum along ``axis``; ``axis=None`` indexes the flattened array (as Theano)."""
    return as_variable(x).argmax(axis=axis, keepdims=keepdims)


def argmin(x, axis=None, keepdims=False):
    return argmax(_ops.neg(x), axis, keepdims)


def cast(x, dtype):
    """``x`` converted to ``dtype``; ``'floatX'`` means ``graphnet.config.floatX``."""
    return _ops.cast(x, _resolve_dtype(dtype))


def zeros(shape, dtype=None):
    """Zeros of ``shape``, whose entries may be symbolic (``(x.shape[0], 10)``)."""
    return alloc(np.zeros((), _resolve_dtype(dtype)), *shape)


def ones(shape, dtype=None):
    return alloc(np.ones((), _resolve_dtype(dtype)), *shape)


def inc_subtensor(x_sub, y):
    """A copy of the indexed variable with ``y`` added at ``x_sub``'s position: ``inc_subtensor(x[a:b], y)``."""
    node = x_sub.owner if isinstance(x_sub, Variable) else None
    if node is not None and type(node.op) in (Subtensor, AdvancedSubtensor):
        inc = IncSubtensor if type(node.op) is Subtensor else AdvancedIncSubtensor
        return inc(node.op.entries)(node.inputs[0], y, *node.inputs[1:])
    raise GraphnetError("inc_subtensor: the first argument must be an indexing of a variable, like x[a:b] or x[idx]")


def set_subtensor(x_sub, y):
    """A copy of the indexed variable with ``x_sub``'s position replaced by ``y`` (basic indexing)."""
    node = x_sub.owner if isinstance(x_sub, Variable) else None
    if node is None or type(node.op) is not Subtensor:
        raise GraphnetError("set_subtensor: the first argument must be a slice or integer indexing like x[a:b] "
                            "(integer arrays may repeat an index; use inc_subtensor)")
    cleared = inc_subtensor(x_sub, _ops.neg(x_sub))
    return IncSubtensor(node.op.entries)(cleared, y, *node.inputs[1:])


def grad(cost, wrt, consider_constant=None, known_grads=None, disconnected_inputs="raise"):
    """``theano.grad``: symbolic gradients of the scalar ``cost`` (``gn.grad``).

    ``consider_constant`` (variables) are treated as constants: no gradient
    flows through them. ``disconnected_inputs`` is accepted and ignored: an
    input that does not reach the cost gets zeros, as with
    ``disconnected_inputs='ignore'``.
    """
    return _grad(cost, wrt, known_grads=known_grads, consider_constant=consider_constant)
