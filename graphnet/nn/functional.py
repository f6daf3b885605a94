"""The network pieces of the lectures as graph functions: loss, weight decay,
dropout, batch normalization, and convolution and pooling (Theano's signatures).

Dropout and batch norm differ between training and evaluation; each builds both
forms joined by ``mode_select``, and compiling with ``training=True/False``
keeps one. Their state (the dropout step counter, batch norm's running
statistics) lives in shared variables whose ``default_update`` a training
function applies automatically.
"""
from __future__ import annotations

import numpy as np

from graphnet import ops
from graphnet.errors import GraphnetError, ShapeError
from graphnet.graph.ir import SharedVariable, as_variable
from graphnet.ops.conv import conv2d  # noqa: F401  (gn.nn.conv2d, Theano's T.nnet.conv2d)
from graphnet.ops.elementwise import DropoutScale
from graphnet.ops.pool import pool_2d  # noqa: F401  (gn.nn.pool_2d, Theano's pool.pool_2d)

_seed_source = np.random.SeedSequence()


def cross_entropy(logits, labels):
    """Mean over the batch of ``-log softmax(logits)[label]`` for integer labels."""
    return ops.mean(ops.softmax_cross_entropy(logits, labels))


def l2(*params):
    """Sum of squares of every parameter: the lecture's weight-decay term ``sum W^2``."""
    if not params:
        raise GraphnetError("l2: give at least one parameter")
    terms = [ops.sum(ops.mul(p, p)) for p in params]
    total = terms[0]
    for t in terms[1:]:
        total = ops.add(total, t)
    return total


def dropout(x, rate, seed=None):
    """Inverted dropout: zero each unit with probability ``rate`` and scale survivors by ``1/(1-rate)``.

    The identity in evaluation mode. Each training call draws a new mask (a step
    counter advances); the backward pass regenerates the same mask from
    (seed, step, element index) instead of storing it.
    """
    if not 0 <= rate < 1:
        raise GraphnetError(f"dropout: rate must be in [0, 1), got {rate}")
    x = as_variable(x)
    if rate == 0:
        return x
    if seed is None:
        seed = int(_seed_source.spawn(1)[0].generate_state(1, dtype=np.uint32)[0])
    step = SharedVariable(np.int64(0), name=f"dropout_step_{seed}")
    step.default_update = ops.add(step, 1)
    return ops.mode_select(DropoutScale(1.0 - rate, seed)(x, step), x)


def batch_norm(x, gamma, beta, eps=1e-5, momentum=0.1, running_mean=None, running_var=None):
    """Batch normalization per feature: ``gamma * (x - mean) / sqrt(var + eps) + beta``.

    A 2-D input (batch, features) is normalized over axis 0. A 4-D input
    (batch, channels, rows, cols), a convolution's output, is normalized per
    channel, with statistics over the batch and both spatial axes, as
    PyTorch's ``BatchNorm2d`` (and any 3-D or 5-D input likewise over every
    axis but 1); ``gamma``, ``beta`` and the running statistics then hold one
    value per channel.

    Training mode uses the mini-batch mean and biased variance (the gradient
    flows through both) and updates the running statistics as PyTorch does:
    ``running = (1 - momentum) * running + momentum * batch``, with the unbiased
    batch variance for ``running_var``. Evaluation mode uses the running
    statistics. They are created here (mean 0, variance 1) unless given.
    """
    x = as_variable(x)
    if x.ndim < 2:
        raise ShapeError(f"batch_norm: the input must have a batch axis and a feature axis, got shape {x.shape}")
    axes = (0,) if x.ndim == 2 else (0,) + tuple(range(2, x.ndim))
    features = x.shape[1:] if x.ndim == 2 else (x.shape[1],)
    if None in features:
        raise ShapeError(f"batch_norm: feature dimensions must be known, got shape {x.shape}")
    if running_mean is None:
        running_mean = SharedVariable(np.zeros(features, x.dtype), name="running_mean")
    if running_var is None:
        running_var = SharedVariable(np.ones(features, x.dtype), name="running_var")
    mean, var = ops.moments(x, axis=axes)
    per_channel = (lambda v: v) if x.ndim == 2 else (lambda v: ops.expand_dims(v, axes))
    train = normalize(x, per_channel(mean), per_channel(var), per_channel(gamma), per_channel(beta), eps)
    evaluate = normalize(x, per_channel(running_mean), per_channel(running_var), per_channel(gamma),
                         per_channel(beta), eps)
    count = ops.cast(ops.size_of(x, axes), x.dtype)
    unbiased = ops.mul(var, ops.true_div(count, ops.maximum(ops.sub(count, 1), 1)))
    running_mean.default_update = ops.add(ops.mul(running_mean, 1 - momentum), ops.mul(mean, momentum))
    running_var.default_update = ops.add(ops.mul(running_var, 1 - momentum), ops.mul(unbiased, momentum))
    return ops.mode_select(train, evaluate)


def normalize(x, mean, var, gamma, beta, eps):
    """``(x - mean) / sqrt(var + eps) * gamma + beta``."""
    inv_std = ops.true_div(1, ops.sqrt(ops.add(var, eps)))
    return ops.add(ops.mul(ops.mul(ops.sub(x, mean), inv_std), gamma), beta)
