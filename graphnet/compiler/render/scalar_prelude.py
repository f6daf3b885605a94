"""Scalar helpers that generated CPU kernels call (``from ... import *``).

Each is a small ``numba.njit`` function inlined by LLVM; op ``scalar``
expressions name them. ``keep_mask`` is the counter-based RNG of
``graphnet.ops.rng``, shared with the NumPy reference and the CUDA backend.
"""
import math

import numba
import numpy as np

from graphnet.ops.rng import keep_mask_nb as keep_mask  # noqa: F401


@numba.njit(cache=True, error_model="numpy")
def sigmoid(x):
    # Two branches so that exp never overflows.
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    e = math.exp(x)
    return e / (1 + e)


@numba.njit(cache=True, error_model="numpy")
def softplus(x):
    return max(x, 0) + math.log1p(math.exp(-abs(x)))


@numba.njit(cache=True, error_model="numpy")
def safe_log(x):
    # NumPy semantics: log(0) = -inf, log(<0) = nan, no exception.
    if x > 0:
        return math.log(x)
    if x == 0:
        return -np.inf
    return np.nan


@numba.njit(cache=True, error_model="numpy")
def safe_sqrt(x):
    return math.sqrt(x) if x >= 0 else np.nan


@numba.njit(cache=True, error_model="numpy")
def nan_max(a, b):
    # np.maximum semantics: a NaN in either operand is the result (Python's max drops it).
    return a if a >= b or a != a else b


@numba.njit(cache=True, error_model="numpy")
def nan_min(a, b):
    return a if a <= b or a != a else b


@numba.njit(cache=True, error_model="numpy")
def row_max(xr):
    """The largest entry of a row: softmax's shift, so that no exp overflows."""
    m = -np.inf
    for j in range(xr.shape[0]):
        m = max(m, xr[j])
    return m


@numba.njit(cache=True, error_model="numpy")
def row_exp_sum(xr, m, out):
    """``sum(exp(xr - m))``, storing each term in ``out`` unless ``out`` is empty."""
    total = 0.0
    store = out.shape[0] > 0
    for j in range(xr.shape[0]):
        e = math.exp(xr[j] - m)
        if store:
            out[j] = e
        total += e
    return total


__all__ = ["math", "np", "numba", "keep_mask", "sigmoid", "softplus", "safe_log", "safe_sqrt", "nan_max",
           "nan_min", "row_max", "row_exp_sum"]
