"""Transcendental functions that vectorize, for the generated CPU kernels.

LLVM vectorizes a loop calling ``math.exp`` or ``math.tanh`` only with a
vector math library (Intel's SVML), which is absent here: each then runs as
one scalar libm call per element (a 20x500 ``tanh`` took 172 us; written as
below, 8.7 us). The float32 forms here are branch-free (selects), so a loop
calling them runs in vector lanes; ``vexp``, ``vtanh`` and ``vsigmoid``
pick them for float32 and keep the correctly rounded scalar libm functions
for float64. Each error bound is checked in ``tests/compiler/render``
against float64 NumPy:

- :func:`exp32`: a range reduction ``x = n ln 2 + r`` (|r| <= ln 2 / 2, ln 2
  split in two parts), Cephes' degree-7 polynomial for ``exp(r)`` and ``2^n``
  built from exponent bits (:func:`float32_from_bits`, two factors so that
  each is a normal float32). Relative error <= 1 ulp (6.0e-8) on
  [-87.3, 88.7]; below -87.34 (results under the smallest normal float32,
  1.2e-38) it returns 0; NaN stays NaN, -inf gives 0, +inf and anything
  above 88.72 give inf.
- :func:`tanh32`: Cephes' odd polynomial for |x| < 0.625, else
  ``1 - 2 / (exp(2|x|) + 1)`` with the sign of x; <= 2 ulp everywhere
  (1.26 ulp measured on 2*10^6 points of [-20, 20]); +-1 beyond +-9.
- :func:`sigmoid32`: ``1 / (1 + exp(-x))``; <= 3 ulp where the result is a
  normal float32, 0 below x = -88.7 (absolute error < 1.2e-38).

The CUDA backend defines the ``v`` names as its (already per-thread) libm
calls (``render/cuda.py``), so an op's scalar expression is one text for both.
"""
import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

LOG2E = np.float32(1.4426950408889634)
LN2_HI = np.float32(0.693359375)        # ln 2 = LN2_HI + LN2_LO, LN2_HI exact in 9 bits
LN2_LO = np.float32(-2.12194440e-4)
EXP32_LOW = np.float32(-87.33654)       # exp below this is under the smallest normal float32
EXP32_HIGH = np.float32(88.72283)       # exp above this overflows float32
TANH32_SMALL = np.float32(0.625)        # below: the polynomial; above: from exp


@intrinsic
def float32_from_bits(typingctx, bits):
    """The float32 whose IEEE bits are the int32 ``bits`` (a bit cast, no conversion)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def exp32(x):
    """``exp`` of a float32 in float32 arithmetic, branch-free (selects) so that loops vectorize."""
    xc = min(max(x, EXP32_LOW), EXP32_HIGH)
    n = np.floor(xc * LOG2E + np.float32(0.5))   # np.floor keeps float32 (math.floor gives an int64)
    r = xc - n * LN2_HI - n * LN2_LO
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * r * r + r + np.float32(1.0)
    # 2^n as two normal factors 2^(n//2) * 2^(n - n//2): n reaches 128 near the top of the range
    half = np.int32(n) >> np.int32(1)
    rest = np.int32(n) - half
    y = p * float32_from_bits((half + np.int32(127)) << np.int32(23)) \
        * float32_from_bits((rest + np.int32(127)) << np.int32(23))
    y = np.float32(0.0) if x < EXP32_LOW else y
    y = np.float32(np.inf) if x > EXP32_HIGH else y
    return x if x != x else y


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def tanh32(x):
    """``tanh`` of a float32 in float32 arithmetic, both branches computed and one selected."""
    a = abs(x)
    z = x * x
    p = np.float32(-5.70498872745e-3)
    p = p * z + np.float32(2.06390887954e-2)
    p = p * z - np.float32(5.37397155531e-2)
    p = p * z + np.float32(1.33314422036e-1)
    p = p * z - np.float32(3.33332819422e-1)
    small = p * z * x + x
    # exp32(2a) is inf beyond a = 44: 2 / inf is 0 and the result 1, as it should be
    big = np.float32(1.0) - np.float32(2.0) / (exp32(a + a) + np.float32(1.0))
    big = big if x >= 0 else -big
    y = small if a < TANH32_SMALL else big
    return x if x != x or x == 0 else y   # NaN, and the sign of -0.0


@numba.njit(cache=True, error_model="numpy")
def sigmoid32(x):
    """``1 / (1 + exp(-x))`` of a float32: exp32(-x) is inf, never an error, for large -x."""
    return np.float32(1.0) / (np.float32(1.0) + exp32(-x))


@numba.njit(cache=True, error_model="numpy")
def sigmoid(x):
    """The scalar logistic function of any float: two branches so that exp never overflows."""
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    e = math.exp(x)
    return e / (1 + e)


@intrinsic
def maxnum(typingctx, a, b):
    """``max(a, b)`` of two floats of one type, NaN passed over (IEEE maxNum: ``maxnum(nan, b)``
    is ``b``), as LLVM's ``llvm.maxnum``: a loop folding a row into it with ``fastmath={"nnan"}``
    vectorizes as a max reduction, where a compare-and-select ``a if a > b else b`` stays one
    scalar chain (:func:`..row_math.row_max`)."""
    if not (isinstance(a, types.Float) and a == b):
        return None

    def codegen(context, builder, signature, args):
        t = args[0].type
        fn = builder.module.declare_intrinsic("llvm.maxnum", [t], ir.FunctionType(t, [t, t]))
        return builder.call(fn, args)
    return a(a, b), codegen


def vexp(x):
    """``exp`` in the dtype of ``x``: :func:`exp32` for float32, ``math.exp`` otherwise."""
    return math.exp(x)


def vtanh(x):
    """``tanh`` in the dtype of ``x``: :func:`tanh32` for float32, ``math.tanh`` otherwise."""
    return math.tanh(x)


def vsigmoid(x):
    """The logistic function in the dtype of ``x``: :func:`sigmoid32` for float32, else :func:`sigmoid`."""
    return sigmoid(x)


@overload(vexp, jit_options={"cache": True})
def _vexp(x):
    if x == types.float32:
        return lambda x: exp32(x)
    return lambda x: math.exp(x)


@overload(vtanh, jit_options={"cache": True})
def _vtanh(x):
    if x == types.float32:
        return lambda x: tanh32(x)
    return lambda x: math.tanh(x)


@overload(vsigmoid, jit_options={"cache": True})
def _vsigmoid(x):
    if x == types.float32:
        return lambda x: sigmoid32(x)
    return lambda x: sigmoid(x)


__all__ = ["exp32", "tanh32", "sigmoid32", "sigmoid", "vexp", "vtanh", "vsigmoid"]
