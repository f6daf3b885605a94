"""Neural-network ops that are more than a chain of elementwise ops.

Softmax and log-softmax normalize along one axis (a reduction followed by an
elementwise pass over the same row); softmax cross-entropy is fused with its
gradient ``softmax - onehot``; ``ModeSelect`` lets one graph hold both the
training and the evaluation form of dropout and batch norm.
"""
from __future__ import annotations

import numba
import numpy as np

from graphnet.errors import DTypeError, FeedError, GraphnetError, ShapeError
from graphnet.graph.ir import Apply, Op, TensorType, as_variable, shape_str
from graphnet.ops import elementwise as ew
from graphnet.ops import reduce as red


def _stable_log_softmax(x, axis):
    x = np.asarray(x)
    if x.shape[axis] == 0:
        return x.copy()  # nothing to normalize: an empty result, as in PyTorch and JAX
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


class Softmax(Op):
    kind = "rowwise"
    __props__ = ("axis",)

    def __init__(self, axis):
        self.axis = int(axis)

    def make_node(self, x):
        x = as_variable(x)
        if x.dtype.kind != "f":
            raise DTypeError(f"{self.name}: input must be floating point, got {x.dtype}{self.error_hint()}")
        return Apply(self, [x], [x.type])

    def infer_shape(self, node, shapes):
        return [shapes[0]]

    def perform(self, inputs):
        return [np.exp(_stable_log_softmax(inputs[0], self.axis)).astype(inputs[0].dtype)]

    def rowwise_applies(self, node):
        return node.inputs[0].ndim == 2 and self.axis % 2 == 1   # a matrix, along its rows

    def grad(self, inputs, outputs, g):
        s = outputs[0]
        dot_gs = red.sum(ew.mul(g[0], s), axis=self.axis, keepdims=True)
        return [ew.mul(s, ew.sub(g[0], dot_gs))]


class LogSoftmax(Softmax):
    def perform(self, inputs):
        return [_stable_log_softmax(inputs[0], self.axis).astype(inputs[0].dtype)]

    def grad(self, inputs, outputs, g):
        total = red.sum(g[0], axis=self.axis, keepdims=True)
        return [ew.sub(g[0], ew.mul(ew.exp(outputs[0]), total))]


def label_input_context(labels, node):
    """How a label error names a fed label input: ``input y of cross_entropy (train.py:12)``.

    Every backend checks fed labels before its kernels index with them and words the error
    with this, so the message is the same on each.
    """
    return f"input {labels.describe()} of cross_entropy ({node.source})"


def labels_where(node, position):
    """:func:`label_input_context` of ``node``'s input at ``position``."""
    return label_input_context(node.inputs[position], node)


@numba.njit(cache=True, nogil=True)
def _labels_in_range(flat, classes):
    # One pass, no temporaries: on a mini-batch this costs a fraction of a
    # microsecond, where labels.min() and labels.max() cost a few (every call checks).
    for label in flat:
        if label < 0 or label >= classes:
            return False
    return True


def check_labels(labels, classes, where):
    """Refuse labels outside ``[0, classes)`` before any kernel indexes with them."""
    labels = np.asarray(labels)
    if labels.size and labels.dtype.kind in "iu" and not _labels_in_range(labels.reshape(-1), classes):
        bad = np.flatnonzero((labels < 0) | (labels >= classes))[0]
        raise FeedError(f"{where}: label {labels.flat[bad]} at position {bad} is outside [0, {classes})")


class SoftmaxCrossEntropy(Op):
    """Per-example ``-log softmax(logits)[label]`` for integer labels."""

    kind = "rowwise"
    checked_inputs = (1,)   # the labels index the logits: range-checked before a kernel reads them
    same_shape_input = 1    # one loss per label (infer_shape checks that the batches agree)

    def rowwise_applies(self, node):
        return True

    def check_values(self, node, values, shapes):
        check_labels(values[1], shapes[0][1], labels_where(node, 1))

    def make_node(self, logits, labels):
        logits, labels = as_variable(logits), as_variable(labels)
        hint = self.error_hint()
        if logits.ndim != 2 or labels.ndim != 1:
            raise ShapeError(f"cross_entropy: expects logits (batch, classes) and labels (batch,), got "
                             f"{shape_str(logits.shape)} and {shape_str(labels.shape)}{hint}")
        if logits.dtype.kind != "f":
            raise DTypeError(f"cross_entropy: logits must be floating point, got {logits.dtype}{hint}")
        if labels.dtype.kind not in "iu":
            raise DTypeError(f"cross_entropy: labels must be integers (class indices), got {labels.dtype}{hint}")
        n_logits, n_labels = logits.shape[0], labels.shape[0]
        if n_logits is not None and n_labels is not None and n_logits != n_labels:
            raise ShapeError(f"cross_entropy: logits {shape_str(logits.shape)} hold {n_logits} rows but labels "
                             f"{shape_str(labels.shape)} hold {n_labels}{hint}")
        return Apply(self, [logits, labels], [TensorType(logits.dtype, (logits.shape[0],))])

    def infer_shape(self, node, shapes):
        check_batch_agrees(shapes[0], shapes[1])
        return [(shapes[0][0],)]

    def perform(self, inputs):
        logits, labels = np.asarray(inputs[0]), np.asarray(inputs[1])
        check_batch_agrees(logits.shape, labels.shape)
        check_labels(labels, logits.shape[1], "cross_entropy")
        logp = _stable_log_softmax(logits, 1)
        return [(-logp[np.arange(len(labels)), labels]).astype(logits.dtype)]

    def grad(self, inputs, outputs, g):
        return [SoftmaxCrossEntropyGrad()(g[0], inputs[0], inputs[1]), None]


def check_batch_agrees(logits_shape, labels_shape):
    if logits_shape[0] != labels_shape[0]:
        raise ShapeError(f"cross_entropy: {logits_shape[0]} rows of logits but {labels_shape[0]} labels "
                         "(inconsistent batch sizes)")


class SoftmaxCrossEntropyGrad(Op):
    """``(softmax(logits) - onehot(labels)) * g[:, None]``: the stable gradient."""

    kind = "rowwise"
    row_input = 1           # iterates over the logits' rows
    checked_inputs = (2,)

    def rowwise_applies(self, node):
        return True

    def check_values(self, node, values, shapes):
        check_labels(values[2], shapes[1][1], labels_where(node, 2))

    def make_node(self, g, logits, labels):
        return Apply(self, [g, logits, labels], [logits.type])

    def infer_shape(self, node, shapes):
        check_batch_agrees(shapes[1], shapes[2])
        return [shapes[1]]

    def perform(self, inputs):
        g, logits, labels = (np.asarray(a) for a in inputs)
        check_batch_agrees(logits.shape, labels.shape)
        check_labels(labels, logits.shape[1], "cross_entropy gradient")
        dz = np.exp(_stable_log_softmax(logits, 1))
        dz[np.arange(len(labels)), labels] -= 1
        return [(dz * g[:, None]).astype(logits.dtype)]

    def grad(self, inputs, outputs, g):
        raise GraphnetError("second derivatives of cross_entropy are not implemented")


class ModeSelect(Op):
    """``train`` in training mode, ``evaluate`` otherwise.

    Compilation resolves it (``specialize_mode``) before anything runs, so one
    graph serves both modes and nothing branches at run time.
    """

    kind = "mode"

    def make_node(self, train, evaluate):
        train, evaluate = as_variable(train), as_variable(evaluate, like=train)
        return Apply(self, [train, evaluate], [train.type])

    def perform(self, inputs):
        raise GraphnetError("mode_select must be resolved by compiling with training=True/False")

    def grad(self, inputs, outputs, g):
        zero = ew.gradient_zeros(g[0])
        return [mode_select(g[0], zero), mode_select(zero, g[0])]


def softmax(x, axis=-1):
    """``exp(x) / sum(exp(x))`` along ``axis``, computed without overflow."""
    x = as_variable(x)
    return Softmax(axis % x.ndim)(x)


def log_softmax(x, axis=-1):
    """``log(softmax(x))`` computed stably as ``x - max - log(sum(exp(x - max)))``."""
    x = as_variable(x)
    return LogSoftmax(axis % x.ndim)(x)


def softmax_cross_entropy(logits, labels):
    """Per-example negative log-likelihood of integer ``labels`` under ``softmax(logits)``."""
    return SoftmaxCrossEntropy()(logits, labels)


def mode_select(train, evaluate):
    return ModeSelect()(train, evaluate)
