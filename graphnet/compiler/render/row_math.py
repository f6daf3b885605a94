"""Vectorizable row arithmetic for the row-wise CPU templates (softmax family).

The exponential is :func:`vexp` of :mod:`.vector_math` (vectorizable for float32).

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
from numba.core import cgutils, types
from numba.extending import intrinsic, overload
from numba.np.arrayobj import make_array, populate_array

from graphnet.compiler.render.vector_math import maxnum, vexp

#: elements of a row per block of the online max and sum (8 KiB of float32)
ROW_BLOCK = 2048


def cast_like(array, value):
    """``value`` converted to the dtype of ``array``'s elements (so a row loop stays in that dtype)."""
    return np.asarray(value, array.dtype)[()]


def contiguous_row(array, i, scratch):
    """Row ``i`` of a 2-D array as a contiguous vector: the row itself when the array is
    C-contiguous, else a copy into ``scratch`` (from :func:`row_scratch`).

    A fused kernel reading a strided view (an LSTM's gate ``z[:, H:2H]``) gets it as Numba's
    'A' layout, whose rows' stride is unknown when compiling: LLVM then kept the element loop
    scalar (the W7 cell kernel: 183 us against 20 us on contiguous arrays). Copying the row
    first (in cache, vectorized) makes every later read contiguous. The choice is made per
    compiled signature: C-contiguous arrays pay nothing. A strided array whose elements are
    adjacent within a row (a column slice of a C-ordered array: the gates ``z[:, H:2H]``) is
    checked at run time and its row handed out as a C-layout view, no copy (:func:`_row_view`;
    W7's cell kernel: the four gate rows' copies were ~4 of its ~21 us a time step).
    """
    return array[i]


def row_scratch(array, n):
    """What :func:`contiguous_row` copies into: ``n`` elements for a strided array, none else."""
    return np.empty(n, array.dtype)


@overload(contiguous_row, jit_options={"cache": True})
def _contiguous_row(array, i, scratch):
    if array.layout == "C":
        return lambda array, i, scratch: array[i]

    def copied(array, i, scratch):
        adjacent = array.strides[1] == array.itemsize
        if not adjacent:
            _copy_row(array[i], scratch)
        return _row_view(array, i, scratch, adjacent)
    return copied


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _copy_row(row, scratch):
    for j in range(row.shape[0]):
        scratch[j] = row[j]


@intrinsic
def _row_view(typingctx, array, i, scratch, adjacent):
    """Row ``i`` of a 2-D ``array`` when ``adjacent`` (its elements are adjacent within a row,
    ``strides[1] == itemsize``), else ``scratch`` (which holds the row's copy), as one C-layout
    1-D array: the data pointer is selected, not the array, and the view carries no meminfo.

    Numba types a row of an 'A'-layout array as 'A' even when its elements are adjacent, and
    LLVM keeps a loop over it scalar; a function returning either ``array[i]`` or ``scratch``
    as C-layout views (a branch joining two arrays) cost more than the copy saved (W7's cell
    kernel: 22.7 against 16.9 us a time step), the reference counts of the two views and the
    join kept in the row loop. A view without a meminfo has no reference count to keep: it is
    safe here because :func:`contiguous_row`'s caller, a kernel's row loop, holds ``array`` and
    ``scratch`` for as long as it reads the row."""
    if not (isinstance(array, types.Array) and array.ndim == 2 and isinstance(i, types.Integer)
            and isinstance(scratch, types.Array) and scratch.ndim == 1 and scratch.dtype == array.dtype):
        return None
    row_type = types.Array(array.dtype, 1, "C")

    def codegen(context, builder, signature, args):
        array_type, index_type, scratch_type, adjacent_type = signature.args
        source = make_array(array_type)(context, builder, args[0])
        copy = make_array(scratch_type)(context, builder, args[2])
        index = context.cast(builder, args[1], index_type, types.intp)
        chosen = context.cast(builder, args[3], adjacent_type, types.boolean)
        length = cgutils.unpack_tuple(builder, source.shape, 2)[1]
        row_stride = cgutils.unpack_tuple(builder, source.strides, 2)[0]
        in_place = cgutils.pointer_add(builder, source.data, builder.mul(index, row_stride))
        data = builder.select(chosen, in_place, copy.data)
        row = make_array(row_type)(context, builder)
        populate_array(row, data=data, shape=[length], strides=[source.itemsize],
                       itemsize=source.itemsize, meminfo=None)
        return row._getvalue()

    return row_type(array, i, scratch, adjacent), codegen


def output_row(array, i, scratch):
    """Row ``i`` of a 2-D output as a contiguous vector to write: the row itself when the
    array is C-contiguous or its elements are adjacent (a half of a loop's batch,
    ``split_loop.py``: a row view of a stack), else ``scratch``, which :func:`finish_row` then
    copies into the row. Writing through an 'A'-layout row kept the element loop scalar (W7's
    gate kernel on half-batch views: 5.2 ms a forward loop for half the rows, against 3.3 ms
    for all of them on C-ordered arrays)."""
    return array[i]


def finish_row(array, i, scratch):
    """Copy ``scratch`` into row ``i`` where :func:`output_row` handed out the scratch."""


@overload(output_row, jit_options={"cache": True})
def _output_row(array, i, scratch):
    if array.layout == "C":
        return lambda array, i, scratch: array[i]
    return lambda array, i, scratch: _row_view(array, i, scratch, array.strides[1] == array.itemsize)


@overload(finish_row, jit_options={"cache": True})
def _finish_row(array, i, scratch):
    if array.layout == "C":
        return lambda array, i, scratch: None

    def copied_back(array, i, scratch):
        if array.strides[1] != array.itemsize:
            _copy_row(scratch, array[i])
    return copied_back


@overload(row_scratch, jit_options={"cache": True})
def _row_scratch(array, n):
    if array.layout == "C":
        return lambda array, n: array.reshape(-1)[:0]   # a view: nothing allocated
    # no copy needed where the row's elements are adjacent (contiguous_row hands out a view)
    return lambda array, n: np.empty(0 if array.strides[1] == array.itemsize else n, array.dtype)


@overload(cast_like, jit_options={"cache": True})
def _cast_like(array, value):
    dtype = array.dtype
    return lambda array, value: dtype(value)


# nnan: LLVM may then fold the block into vector lanes of maxnum (a max reduction); the
# maximum only steadies the exponentials, and NaN reaches the row's softmax through them.
@numba.njit(cache=True, error_model="numpy", fastmath={"nnan"})
def row_max(xr, start, stop):
    """The largest entry of ``xr[start:stop]`` (not empty), folded with :func:`maxnum` in vector lanes.

    A compare-and-select chain waits on itself (8 scalar lanes of it: 2.7x faster than one,
    still 6x slower than this: 64-column rows 25 against 3.3 us per 1600 rows). A NaN
    entry leaves a maximum of the other entries, or NaN (what IEEE maxNum makes of it in
    vector lanes is not fixed); either way the NaN makes the row's softmax NaN, through its
    exponential, which runs without ``nnan``. The block is sliced first and indexed from 0
    (see :func:`block_exp_sum`).
    """
    xb = xr[start:stop]
    m = xb[0]
    for j in range(xb.shape[0]):   # from 0 (xb[0] twice): from 1, LLVM left it scalar
        m = maxnum(m, xb[j])
    return m


# reassoc: the block's sum of exponentials runs in vector lanes (a float32 sum
# of <= ROW_BLOCK terms in (0, 1], added to a float64 total per block).
@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def block_exp_store_sum(xr, m, out, start, stop):
    """``sum(exp(xr[start:stop] - m))``, each term stored in ``out[start:stop]``.

    The block is sliced first and its loop runs from 0: indexed as ``xr[j]`` for ``j`` in
    ``range(start, stop)``, an index whose sign LLVM cannot prove keeps Numba's check for a
    negative index (wrap around) in every element, and the loop ran 7x slower (AMD Zen 5,
    4096x1024 float32: 1.5 against 0.21 ns an element; softmax-xent 3.2 ms, JAX's time).
    Storing and not storing are two functions, not one with a flag: a flag passed as a
    variable kept its branch beside the vector loop, 1.7x slower on 64-element rows."""
    total = cast_like(xr, 0.0)
    xb, ob = xr[start:stop], out[start:stop]
    for j in range(xb.shape[0]):
        e = vexp(xb[j] - m)
        ob[j] = e
        total += e
    return total


@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def block_exp_sum(xr, m, start, stop):
    """``sum(exp(xr[start:stop] - m))`` (see :func:`block_exp_store_sum`)."""
    total = cast_like(xr, 0.0)
    xb = xr[start:stop]
    for j in range(xb.shape[0]):
        total += vexp(xb[j] - m)
    return total


def sum_zero(s):
    """The zero a sum of ``s``'s elements starts from: float64 for floating-point rows, int64 else."""
    return 0.0 if np.asarray(s).dtype.kind == "f" else 0


@overload(sum_zero, jit_options={"cache": True})
def _sum_zero(s):
    if isinstance(s.dtype, numba.types.Float):
        return lambda s: np.float64(0.0)
    return lambda s: np.int64(0)


# reassoc: the sum runs in vector lanes (several independent accumulators), the only
# reordering in the kernels that call it; each lane still adds in order.
@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def scratch_sum(s, n):
    """``sum(s[:n])`` of a kernel's scratch row of terms, in float64 (int64) vector lanes.

    A fused kernel that sums along rows while it stores per-element outputs
    writes each term into a cache-resident scratch row and sums the row here:
    a running scalar ``a += term`` in its element loop is one chain of
    dependent float64 additions that LLVM may not reorder, so the loop, its
    loads and its stores, never vectorized (W6's weight-decay kernel: 2.4 ms
    one thread, against 0.13-0.20 ms this way). The row holds the terms in their
    own dtype (float32 terms as float32: half the bytes the element loop stores
    and this loop reads, W6's penalty sums 97 -> 75 us) and each is widened here,
    so the sum is the float64 sum of the same terms as before.
    """
    total = sum_zero(s)
    for j in range(n):
        total += s[j]
    return total


@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def sum_and_squares(s, n):
    """``(sum(s[:n]), sum(s[:n] ** 2))``, each element widened to float64 first, in float64
    vector lanes as :func:`scratch_sum`: the per-channel moments of batch norm after a
    convolution (a scalar chain per element ran 478 us for 64 images of 20 x 576 float32,
    one thread)."""
    total = 0.0
    squares = 0.0
    for j in range(n):
        v = np.float64(s[j])
        total += v
        squares += v * v
    return total, squares


# inline="always": inlined into each kernel by Numba, not called (1600x64 float32 rows: 53
# against 85 us; LLVM's inlining across Numba's modules stopped short of it)
@numba.njit(cache=True, error_model="numpy", inline="always")
def row_max_exp_sum(xr, out):
    """(``m = max(xr)``, ``sum(exp(xr - m))`` as float64), storing each ``exp(xr[j] - m)``
    in ``out`` unless ``out`` is empty: the online softmax described above."""
    n = xr.shape[0]
    if n == 0:
        return cast_like(xr, -np.inf), 0.0
    store = out.shape[0] > 0
    # np.int64(0), not 0: a literal would type as Literal[int](0), a signature of row_max and
    # the block sums apart from the later blocks' int64 starts, compiling each twice (0.3 s cold)
    first = np.int64(0)
    m = row_max(xr, first, min(n, ROW_BLOCK))
    if store:
        total = float(block_exp_store_sum(xr, m, out, first, min(n, ROW_BLOCK)))
    else:
        total = float(block_exp_sum(xr, m, first, min(n, ROW_BLOCK)))
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
        total += block_exp_store_sum(xr, m, out, start, stop) if store else block_exp_sum(xr, m, start, stop)
    return m, total


__all__ = ["cast_like", "contiguous_row", "row_scratch", "row_max", "row_max_exp_sum",
           "scratch_sum", "ROW_BLOCK"]
