"""``T.nnet``: Theano's neural-network functions on graphnet ops.

``conv2d(input, filters, input_shape, filter_shape, border_mode, subsample,
filter_flip, filter_dilation)`` is ``gn.nn.conv2d``, with Theano's defaults
(``filter_flip=True``: a true convolution).

``categorical_crossentropy(p, y)`` is written the way Theano users write it,
``-log(p)[arange(n), y]``; the ``stabilize_nll_idiom`` pass turns that into the
fused, stable softmax cross-entropy when ``p`` is a softmax.
"""
from __future__ import annotations

from graphnet import ops as _ops
from graphnet.graph.ir import as_variable
from graphnet.ops.conv import conv2d  # noqa: F401  (theano.tensor.nnet.conv2d: same signature)
from graphnet.ops.indexing import arange

sigmoid = _ops.sigmoid
softplus = _ops.softplus
relu = _ops.relu


def softmax(x, axis=-1):
    """Softmax over the last axis (Theano's ``T.nnet.softmax`` works on rows)."""
    return _ops.softmax(x, axis)


def logsoftmax(x, axis=-1):
    return _ops.log_softmax(x, axis)


def ultra_fast_sigmoid(x):
    """Theano's fast approximation; here the exact (and as fast) sigmoid."""
    return _ops.sigmoid(x)


hard_sigmoid = ultra_fast_sigmoid


def categorical_crossentropy(coding_dist, true_dist):
    """Per-row ``-log(coding_dist[i, true_dist[i]])`` for integer labels ``true_dist``.

    One-hot (2-d float) targets give ``-sum(true_dist * log(coding_dist), axis=1)``.
    """
    p, t = as_variable(coding_dist), as_variable(true_dist)
    if t.ndim == 1:
        return _ops.neg(_ops.log(p)[arange(_ops.size_of(t, 0)), t])
    return _ops.neg(_ops.sum(_ops.mul(t, _ops.log(p)), axis=1))


def binary_crossentropy(output, target):
    """``-(target * log(output) + (1 - target) * log(1 - output))``, elementwise."""
    o, t = as_variable(output), as_variable(target)
    return _ops.neg(_ops.add(_ops.mul(t, _ops.log(o)), _ops.mul(_ops.sub(1, t), _ops.log(_ops.sub(1, o)))))
