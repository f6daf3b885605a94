"""Optimizers as graph updates: SGD, momentum, Nesterov, AdaGrad, RMSProp, Adam.

An optimizer turns parameters and their symbolic gradients into update pairs
``(shared, new-value expression)`` for ``gn.function(..., updates=...)``. The
rules are graph expressions, so the compiler fuses each one into the training
step. The learning rate lives in a shared scalar (``optimizer.lr``): a schedule
changes it between calls without recompiling. Each rule's state (velocities,
squared-gradient caches, Adam's step counter) is shared variables too,
created on the first call of ``updates``.

The formulas are the lectures' (CS231n notation, ``g`` the gradient)::

    SGD       p -= lr g
    Momentum  v = mu v - lr g;                 p += v
    Nesterov  v' = mu v - lr g;                p += -mu v + (1 + mu) v'
    AdaGrad   c += g^2;                        p -= lr g / (sqrt(c) + eps)
    RMSProp   c = rho c + (1 - rho) g^2;       p -= lr g / (sqrt(c) + eps)
    Adam      m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  t += 1
              p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
"""
from __future__ import annotations

import numpy as np

from graphnet import ops
from graphnet.errors import GraphnetError
from graphnet.graph.ir import SharedVariable
from graphnet.nn.functional import l2

__all__ = ["Optimizer", "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSProp", "Adam", "weight_decay", "get"]


def _check_rate(value, what):
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise GraphnetError(f"{what} must be a finite number >= 0, got {value!r}")
    return value


def _check_fraction(value, what):
    value = float(value)
    if not 0 <= value < 1:
        raise GraphnetError(f"{what} must be in [0, 1), got {value!r}")
    return value


class Optimizer:
    """Base class: holds the learning rate in a shared scalar and builds update pairs."""

    def __init__(self, lr, dtype="float32"):
        self.lr = SharedVariable(np.asarray(_check_rate(lr, "learning rate"), dtype), name="learning_rate")
        self.slots = {}   # slot name -> list of shared variables, one per parameter

    @property
    def learning_rate(self):
        """The current learning rate (a float); assign to change it without recompiling."""
        return float(self.lr.get_value())

    @learning_rate.setter
    def learning_rate(self, value):
        self.lr.set_value(np.asarray(_check_rate(value, "learning rate"), self.lr.dtype))

    def updates(self, params, grads):
        """``[(shared, expression), ...]`` updating every parameter (and this optimizer's state)."""
        params, grads = list(params), list(grads)
        if len(params) != len(grads):
            raise GraphnetError(f"{type(self).__name__}.updates: {len(params)} parameters but "
                                f"{len(grads)} gradients")
        for p in params:
            if not isinstance(p, SharedVariable):
                raise GraphnetError(f"{type(self).__name__}.updates: {p!r} is not a shared variable")
        pairs = self._global_updates()
        for p, g in zip(params, grads):
            pairs.extend(self._param_updates(p, ops.cast(g, p.dtype)))
        return pairs

    def minimize(self, cost, params):
        """Update pairs that take one step down the gradient of ``cost``."""
        from graphnet.graph.autodiff import grad
        params = list(params)
        return self.updates(params, grad(cost, params))

    def _rate(self, p):
        return ops.cast(self.lr, p.dtype)

    def _slot(self, kind, p):
        """A zero-initialized state variable of ``p``'s shape, named after it."""
        var = SharedVariable(np.zeros(p.shape, p.dtype), name=f"{p.name or 'param'}.{kind}")
        self.slots.setdefault(kind, []).append(var)
        return var

    def _global_updates(self):
        return []

    def _param_updates(self, p, g):
        raise NotImplementedError

    def state_variables(self):
        """Every shared variable the optimizer owns (learning rate, slots, counters)."""
        return [self.lr] + [v for slot in self.slots.values() for v in slot]

    def __repr__(self):
        return f"{type(self).__name__}(lr={self.learning_rate:g})"


class SGD(Optimizer):
    """Plain stochastic gradient descent: ``p -= lr g``."""

    def _param_updates(self, p, g):
        return [(p, ops.sub(p, ops.mul(self._rate(p), g)))]


class Momentum(Optimizer):
    """Heavy-ball momentum: ``v = mu v - lr g; p += v``."""

    def __init__(self, lr, mu=0.9, dtype="float32"):
        super().__init__(lr, dtype)
        self.mu = _check_fraction(mu, "Momentum: mu")

    def _param_updates(self, p, g):
        v = self._slot("velocity", p)
        v_new = ops.sub(ops.mul(v, self.mu), ops.mul(self._rate(p), g))
        return [(v, v_new), (p, ops.add(p, v_new))]


class Nesterov(Momentum):
    """Nesterov momentum, in the form that stores the parameter after the look-ahead step.

    ``v' = mu v - lr g; p += -mu v + (1 + mu) v'`` (CS231n, Sutskever et al. 2013).
    """

    def _param_updates(self, p, g):
        v = self._slot("velocity", p)
        v_new = ops.sub(ops.mul(v, self.mu), ops.mul(self._rate(p), g))
        step = ops.add(ops.mul(v, -self.mu), ops.mul(v_new, 1.0 + self.mu))
        return [(v, v_new), (p, ops.add(p, step))]


class AdaGrad(Optimizer):
    """Per-parameter rates: divide by the root of the running sum of squared gradients."""

    def __init__(self, lr, eps=1e-8, dtype="float32"):
        super().__init__(lr, dtype)
        self.eps = _check_rate(eps, "AdaGrad: eps")

    def _param_updates(self, p, g):
        cache = self._slot("sum_sq", p)
        cache_new = ops.add(cache, ops.mul(g, g))
        step = ops.true_div(ops.mul(self._rate(p), g), ops.add(ops.sqrt(cache_new), self.eps))
        return [(cache, cache_new), (p, ops.sub(p, step))]


class RMSProp(Optimizer):
    """AdaGrad with an exponential moving average (decay ``rho``) instead of the sum."""

    def __init__(self, lr, rho=0.9, eps=1e-8, dtype="float32"):
        super().__init__(lr, dtype)
        self.rho = _check_fraction(rho, "RMSProp: rho")
        self.eps = _check_rate(eps, "RMSProp: eps")

    def _param_updates(self, p, g):
        cache = self._slot("mean_sq", p)
        cache_new = ops.add(ops.mul(cache, self.rho), ops.mul(ops.mul(g, g), 1.0 - self.rho))
        step = ops.true_div(ops.mul(self._rate(p), g), ops.add(ops.sqrt(cache_new), self.eps))
        return [(cache, cache_new), (p, ops.sub(p, step))]


class Adam(Optimizer):
    """RMSProp with momentum and bias correction (Kingma and Ba 2015).

    One shared step counter ``t`` (int64) serves every parameter; the
    corrections use the new count, so the first step is ``lr * g / (|g| + eps)``.
    """

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, dtype="float32"):
        super().__init__(lr, dtype)
        self.beta1 = _check_fraction(beta1, "Adam: beta1")
        self.beta2 = _check_fraction(beta2, "Adam: beta2")
        self.eps = _check_rate(eps, "Adam: eps")
        self.t = SharedVariable(np.int64(0), name="adam_step")
        self._t_new = None

    def _global_updates(self):
        self._t_new = ops.add(self.t, 1)
        return [(self.t, self._t_new)]

    def _param_updates(self, p, g):
        m, v = self._slot("m", p), self._slot("v", p)
        m_new = ops.add(ops.mul(m, self.beta1), ops.mul(g, 1.0 - self.beta1))
        v_new = ops.add(ops.mul(v, self.beta2), ops.mul(ops.mul(g, g), 1.0 - self.beta2))
        # The bias corrections are scalars computed in float64, then cast once.
        t = ops.cast(self._t_new, "float64")
        correction1 = ops.cast(ops.sub(1.0, ops.pow(self.beta1, t)), p.dtype)
        correction2 = ops.cast(ops.sub(1.0, ops.pow(self.beta2, t)), p.dtype)
        m_hat = ops.true_div(m_new, correction1)
        v_hat = ops.true_div(v_new, correction2)
        step = ops.true_div(ops.mul(self._rate(p), m_hat), ops.add(ops.sqrt(v_hat), self.eps))
        return [(m, m_new), (v, v_new), (p, ops.sub(p, step))]

    def state_variables(self):
        return super().state_variables() + [self.t]


def weight_decay(lam, params, include_biases=False):
    """The L2 penalty ``lam * sum W^2`` to add to the loss (its gradient is ``2 lam W``).

    ``params`` is a model (its ``regularized_params`` are used) or a list of
    shared variables, from which 1-D ones (biases, batch-norm gamma and beta,
    PReLU slopes) are skipped unless ``include_biases=True``.
    """
    lam = _check_rate(lam, "weight_decay: lambda")
    if hasattr(params, "regularized_params"):
        chosen = list(params.params if include_biases else params.regularized_params)
    else:
        chosen = [p for p in params if include_biases or p.ndim >= 2]
    if not chosen:
        raise GraphnetError("weight_decay: no parameters to regularize")
    return ops.mul(l2(*chosen), lam)


_BY_NAME = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adagrad": AdaGrad,
            "rmsprop": RMSProp, "adam": Adam}


def get(name, lr, **hyper):
    """An optimizer by name (``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adagrad"``, ``"rmsprop"``, ``"adam"``)."""
    cls = _BY_NAME.get(str(name).lower())
    if cls is None:
        raise GraphnetError(f"unknown optimizer {name!r}; choose one of {', '.join(_BY_NAME)}")
    return cls(lr, **hyper)
