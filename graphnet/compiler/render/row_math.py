"""Vectorizable row arithmetic for the row-wise CPU templates (softmax family).

LLVM vectorizes a loop calling ``math.exp`` only with a vector math library
(Intel's SVML), which is absent here: ``exp`` then runs one scalar call per
element. :func:`vexp` is ``exp`` written so that it vectorizes: for float32, a
range reduction ``x = n ln 2 + r`` (|r| <= ln 2 / 2, ln 2 split in two
parts), Cephes' degree-7 polynomial for ``exp(r)`` and ``2^n`` built from
exponent bits (:func:`float32_from_bits`, two factors so that each is a normal
float32). Its error, measured against float64
``np.exp`` on 10^6 points of [-87.3, 88.7] (``tests/compiler/render``):
relative error <= 1 ulp (6.0e-8); below -87.34 (results under the smallest
normal float32, 1.2e-38) it returns 0 (absolute error < 1.2e-38); NaN stays
NaN, -inf gives 0, +inf and anything above 88.72 give inf. float64 data keeps
``math.exp`` (correctly rounded, scalar).

:func:`row_max_exp_sum` computes a row's maximum and ``sum(exp(x - max))`` in
one pass over memory ("online softmax" in blocks): each block of
``ROW_BLOCK`` elements (8 KiB of float32, resident in L1) is read for its
maximum, then for its exponentials; when a block raises the maximum, the
running total (and the exponentials already stored) are rescaled by
``exp(old - new)``. A row of at most ``ROW_BLOCK`` elements is one block:
two loops over it in L1, one read from memory.
"""
import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

#: elements of a row per block of the online max and sum (8 KiB of float32)
ROW_BLOCK = 2048

LOG2E = np.float32(1.4426950408889634)
LN2_HI = np.float32(0.693359375)        # ln 2 = LN2_HI + LN2_LO, LN2_HI exact in 9 bits
LN2_LO = np.float32(-2.12194440e-4)
EXP32_LOW = np.float32(-87.33654)       # exp below this is under the smallest normal float32
EXP32_HIGH = np.float32(88.72283)       # exp above this overflows float32


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


def vexp(x):
    """``exp`` in the dtype of ``x``: :func:`exp32` for float32, ``math.exp`` otherwise."""
    return math.exp(x)


@overload(vexp, jit_options={"cache": True})
def _vexp(x):
    if x == types.float32:
        return lambda x: exp32(x)
    return lambda x: math.exp(x)


def cast_like(array, value):
    """``value`` converted to the dtype of ``array``'s elements (so a row loop stays in that dtype)."""
    return np.asarray(value, array.dtype)[()]


@overload(cast_like, jit_options={"cache": True})
def _cast_like(array, value):
    dtype = array.dtype
    return lambda array, value: dtype(value)


@numba.njit(cache=True, error_model="numpy")
def row_max(xr, start, stop):
    """The largest entry of ``xr[start:stop]`` (not empty), in eight independent lanes.

    One chain of compares waits on itself; eight run side by side (2.7x faster
    from memory here). NaN entries are passed over unless the first is NaN: a
    NaN anywhere still makes the row's softmax NaN, through its exponential.
    """
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = xr[start]
    j = start
    while j + 8 <= stop:
        v = xr[j]
        m0 = v if v > m0 else m0
        v = xr[j + 1]
        m1 = v if v > m1 else m1
        v = xr[j + 2]
        m2 = v if v > m2 else m2
        v = xr[j + 3]
        m3 = v if v > m3 else m3
        v = xr[j + 4]
        m4 = v if v > m4 else m4
        v = xr[j + 5]
        m5 = v if v > m5 else m5
        v = xr[j + 6]
        m6 = v if v > m6 else m6
        v = xr[j + 7]
        m7 = v if v > m7 else m7
        j += 8
    for k in range(j, stop):
        v = xr[k]
        m0 = v if v > m0 else m0
    m0 = m1 if m1 > m0 else m0
    m2 = m3 if m3 > m2 else m2
    m4 = m5 if m5 > m4 else m4
    m6 = m7 if m7 > m6 else m6
    m0 = m2 if m2 > m0 else m0
    m4 = m6 if m6 > m4 else m4
    return m4 if m4 > m0 else m0


# reassoc: the block's sum of exponentials runs in vector lanes (a float32 sum
# of <= ROW_BLOCK terms in (0, 1], added to a float64 total per block).
@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def block_exp_sum(xr, m, out, start, stop, store):
    total = cast_like(xr, 0.0)
    if store:
        for j in range(start, stop):
            e = vexp(xr[j] - m)
            out[j] = e
            total += e
    else:
        for j in range(start, stop):
            total += vexp(xr[j] - m)
    return total


@numba.njit(cache=True, error_model="numpy")
def row_max_exp_sum(xr, out):
    """(``m = max(xr)``, ``sum(exp(xr - m))`` as float64), storing each ``exp(xr[j] - m)``
    in ``out`` unless ``out`` is empty: the online softmax described above."""
    n = xr.shape[0]
    if n == 0:
        return cast_like(xr, -np.inf), 0.0
    store = out.shape[0] > 0
    m = row_max(xr, 0, min(n, ROW_BLOCK))
    total = float(block_exp_sum(xr, m, out, 0, min(n, ROW_BLOCK), store))
    for start in range(ROW_BLOCK, n, ROW_BLOCK):
        stop = min(n, start + ROW_BLOCK)
        mb = row_max(xr, start, stop)
        if mb > m:
            # exp(m - mb) rescales what was summed; if every earlier entry was -inf, those
            # terms are 0 (their NaN, exp(-inf - -inf), belongs to an all -inf row only).
            earlier = m != -np.inf
            rescale = vexp(m - mb) if earlier else cast_like(xr, 0.0)
            total = total * rescale if earlier else 0.0
            if store:
                for j in range(start):
                    out[j] = out[j] * rescale if earlier else rescale
            m = mb
        total += block_exp_sum(xr, m, out, start, stop, store)
    return m, total


__all__ = ["vexp", "exp32", "cast_like", "row_max", "row_max_exp_sum", "ROW_BLOCK"]
