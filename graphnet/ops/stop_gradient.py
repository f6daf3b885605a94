"""``stop_gradient(x)``: ``x`` itself, through which no gradient flows.

Theano's ``disconnected_grad`` and ``zero_grad`` (and ``consider_constant``,
which ``grad`` applies without building this op). Forward it is the identity,
an elementwise op that fuses into its neighbours at no cost; backward it
returns no gradient, so ``grad`` treats ``x`` as a constant: a ``wrt`` reached
only through it gets zeros.
"""
from __future__ import annotations

import numpy as np

from graphnet.ops.elementwise import Elemwise


class StopGradient(Elemwise):
    def impl(self, a): return np.array(a, copy=True)
    def scalar(self, args, dtype): return args[0]
    def grad(self, inputs, outputs, g): return [None]


stop_gradient = StopGradient()
