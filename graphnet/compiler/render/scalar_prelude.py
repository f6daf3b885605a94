"""Scalar helpers that generated CPU kernels call (``from ... import *``).

Each is a small ``numba.njit`` function inlined by LLVM; op ``scalar``
expressions name them; the row-wise templates call the vectorizable row
arithmetic of :mod:`.row_math`. ``keep_mask`` is the counter-based RNG of
``graphnet.ops.rng``, shared with the NumPy reference and the CUDA backend.
"""
import math

import numba
import numpy as np

from graphnet.compiler.render.row_math import (cast_like, contiguous_row, finish_row, output_row,  # noqa: F401
                                              row_max_exp_sum, row_scratch, scratch_sum, sum_and_squares)
from graphnet.compiler.render.vector_math import sigmoid, vexp, vsigmoid, vtanh  # noqa: F401
from graphnet.ops.rng import keep_mask_nb as keep_mask  # noqa: F401


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


__all__ = ["math", "np", "numba", "keep_mask", "sigmoid", "softplus", "safe_log", "safe_sqrt", "nan_max",
           "nan_min", "vexp", "vtanh", "vsigmoid", "cast_like", "contiguous_row", "finish_row", "output_row",
           "row_scratch", "row_max_exp_sum",
           "scratch_sum", "sum_and_squares"]
