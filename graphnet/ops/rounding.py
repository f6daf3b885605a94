"""Rounding and remainders: floor, ceil, round, ``%`` and ``//``, plus log1p/expm1.

Elementwise ops like those in ``elementwise.py`` (reference, gradient and
scalar expression side by side). Rounding is piecewise constant, so its
gradient is zero, as in Theano. ``%`` and ``//`` follow Python (and NumPy,
and Theano): the remainder takes the divisor's sign, ``a == (a // b) * b + a % b``.
"""
from __future__ import annotations

import numpy as np

from graphnet.ops.elementwise import Elemwise, UnaryFloat, add, exp, lit, mul, neg, true_div, zeros_like


class Floor(UnaryFloat):
    def impl(self, a): return np.floor(a)
    def scalar(self, args, dtype): return f"np.floor({args[0]})"
    def grad(self, inputs, outputs, g): return [zeros_like(inputs[0])]


class Ceil(UnaryFloat):
    def impl(self, a): return np.ceil(a)
    def scalar(self, args, dtype): return f"np.ceil({args[0]})"
    def grad(self, inputs, outputs, g): return [zeros_like(inputs[0])]


class RoundHalfAwayFromZero(UnaryFloat):
    """Theano's default ``T.round``: 2.5 -> 3, -2.5 -> -3 (C's ``round``)."""
    def impl(self, a):
        a = np.asarray(a)
        return np.where(a >= 0, np.floor(a + 0.5), np.ceil(a - 0.5))
    def scalar(self, args, dtype):
        x, half = args[0], lit(0.5, dtype)
        return f"(np.floor({x} + {half}) if {x} >= 0 else np.ceil({x} - {half}))"
    def grad(self, inputs, outputs, g): return [zeros_like(inputs[0])]


class RoundHalfToEven(UnaryFloat):
    """``T.round(x, mode='half_to_even')`` and NumPy's ``np.round``: 2.5 -> 2, 3.5 -> 4."""
    def impl(self, a): return np.rint(a)
    def scalar(self, args, dtype): return f"np.rint({args[0]})"
    def grad(self, inputs, outputs, g): return [zeros_like(inputs[0])]


class Mod(Elemwise):
    """``a % b`` with the divisor's sign (Python's rule, which Theano and NumPy follow)."""
    nin = 2
    def impl(self, a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.mod(a, b)
    def scalar(self, args, dtype): return f"({args[0]} % {args[1]})"
    def grad(self, inputs, outputs, g):
        a, b = inputs
        if outputs[0].dtype.kind != "f":
            return [None, None]
        # a % b = a - floor(a / b) * b: slope 1 in a, -floor(a / b) in b.
        return [g[0], neg(mul(g[0], floor(true_div(a, b))))]


class FloorDiv(Elemwise):
    """``a // b``: the floor of the quotient, an integer for integer operands."""
    nin = 2
    def impl(self, a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.floor_divide(a, b)
    def scalar(self, args, dtype): return f"({args[0]} // {args[1]})"
    def grad(self, inputs, outputs, g):
        return [None, None] if outputs[0].dtype.kind != "f" else [zeros_like(inputs[0]), zeros_like(inputs[1])]


class Log1p(UnaryFloat):
    """``log(1 + x)``, accurate for small ``x``."""
    def impl(self, a):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log1p(a)
    def scalar(self, args, dtype): return f"np.log1p({args[0]})"
    def grad(self, inputs, outputs, g): return [true_div(g[0], add(inputs[0], 1))]


class Expm1(UnaryFloat):
    """``exp(x) - 1``, accurate for small ``x``."""
    def impl(self, a): return np.expm1(a)
    def scalar(self, args, dtype): return f"np.expm1({args[0]})"
    def grad(self, inputs, outputs, g): return [mul(g[0], exp(inputs[0]))]


floor, ceil = Floor(), Ceil()
round_half_away_from_zero, round_half_to_even = RoundHalfAwayFromZero(), RoundHalfToEven()
mod, floor_div = Mod(), FloorDiv()
log1p, expm1 = Log1p(), Expm1()
