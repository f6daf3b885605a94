"""A float32 matrix product for products with few rows, its accumulators in vector registers.

OpenBLAS's AVX-512 kernels run products with few rows far below the machine's rate (16x784 @
784x1024 at 79 GFLOP/s on one core of the AMD EPYC here, where 128-row products reach 200).
:func:`small_gemm_into` computes ``out = a @ b`` in blocks of 8 rows by 32 columns, the block's
8 x 2 vectors of 16 float32 in registers for the whole inner dimension (:func:`_block_intrinsic`,
written as LLVM IR: a Numba loop keeps such accumulators in memory, 39-48 GFLOP/s), each k x 32
panel of ``b`` read from memory once for every row block. The sum over the inner dimension runs
in order, one fused multiply-add a step. ``a`` may have any strides; ``b`` and ``out`` rows of
unit stride (else a plain loop computes it).

Where it runs: a compiled loop's per-step products (``compiled_loop.py``), whose weights stay in
cache from step to step (W7's ``h @ U``, 32x128 @ 128x512: 18 against OpenBLAS's 27-30 us on one
thread). From Python, in a step whose weights come from memory, it was no faster than OpenBLAS's
two threads (``bench/small_rows_gemm.py``, docs/benchmarks.md).
"""
import os

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

#: rows per register block (8 x 2 vectors of 16 float32 accumulators: 16 of AVX-512's 32 registers)
BLOCK_ROWS = 8
#: columns per register block: two vectors of 16 float32
BLOCK_COLS = 32
#: products with more rows go to BLAS (it blocks the inner dimension for the cache; this does not)
MAX_ROWS = 32

_F32 = ir.FloatType()
_V16 = ir.VectorType(_F32, 16)
_I64 = ir.IntType(64)
_I32 = ir.IntType(32)


def _element_pointer(builder, data, strides, indices):
    """``&array[indices]`` of a float32 array from its data pointer and byte strides."""
    offset = ir.Constant(_I64, 0)
    for stride, index in zip(strides, indices):
        offset = builder.add(offset, builder.mul(stride, index))
    raw = builder.gep(builder.bitcast(data, ir.IntType(8).as_pointer()), [offset])
    return builder.bitcast(raw, _F32.as_pointer())


def _block_intrinsic(rows, vectors):
    """``block(a, b, out, i0, j0)``: ``out[i0:i0 + rows, j0:j0 + 16 * vectors] = a[i0:i0 + rows] @
    b[:, j0:j0 + 16 * vectors]``, the ``rows * vectors`` accumulators as LLVM vector values."""

    @intrinsic
    def block(typingctx, a, b, out, i0, j0):
        def codegen(context, builder, signature, args):
            a_, b_, out_ = (cgutils.create_struct_proxy(t)(context, builder, value=v)
                            for t, v in zip(signature.args[:3], args[:3]))
            a_strides = cgutils.unpack_tuple(builder, a_.strides, 2)
            b_strides = cgutils.unpack_tuple(builder, b_.strides, 2)
            out_strides = cgutils.unpack_tuple(builder, out_.strides, 2)
            depth = cgutils.unpack_tuple(builder, a_.shape, 2)[1]
            first_row, first_col = args[3], args[4]
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V16, [_V16] * 3), "llvm.fma.v16f32")
            zero = ir.Constant(_V16, [0.0] * 16)
            broadcast = ir.Constant(ir.VectorType(_I32, 16), [0] * 16)
            before = builder.basic_block
            loop = builder.append_basic_block("depth")
            done = builder.append_basic_block("stored")
            builder.cbranch(builder.icmp_signed(">", depth, ir.Constant(_I64, 0)), loop, done)

            builder.position_at_end(loop)
            step = builder.phi(_I64)
            step.add_incoming(ir.Constant(_I64, 0), before)
            sums = [[builder.phi(_V16) for _ in range(vectors)] for _ in range(rows)]
            for row in sums:
                for phi in row:
                    phi.add_incoming(zero, before)
            b_row = []
            for v in range(vectors):
                column = builder.add(first_col, ir.Constant(_I64, 16 * v))
                pointer = _element_pointer(builder, b_.data, b_strides, [step, column])
                load = builder.load(builder.bitcast(pointer, _V16.as_pointer()))
                load.align = 4
                b_row.append(load)
            updated = []
            for r in range(rows):
                row = builder.add(first_row, ir.Constant(_I64, r))
                value = builder.load(_element_pointer(builder, a_.data, a_strides, [row, step]))
                lanes = builder.insert_element(ir.Constant(_V16, ir.Undefined), value, ir.Constant(_I32, 0))
                lanes = builder.shuffle_vector(lanes, ir.Constant(_V16, ir.Undefined), broadcast)
                updated.append([builder.call(fma, [lanes, b_row[v], sums[r][v]]) for v in range(vectors)])
            following = builder.add(step, ir.Constant(_I64, 1))
            end = builder.basic_block
            step.add_incoming(following, end)
            for r in range(rows):
                for v in range(vectors):
                    sums[r][v].add_incoming(updated[r][v], end)
            builder.cbranch(builder.icmp_signed("<", following, depth), loop, done)

            builder.position_at_end(done)
            results = []
            for r in range(rows):
                for v in range(vectors):
                    phi = builder.phi(_V16)
                    phi.add_incoming(zero, before)
                    phi.add_incoming(updated[r][v], end)
                    results.append((r, v, phi))
            for r, v, value in results:
                row = builder.add(first_row, ir.Constant(_I64, r))
                column = builder.add(first_col, ir.Constant(_I64, 16 * v))
                pointer = _element_pointer(builder, out_.data, out_strides, [row, column])
                store = builder.store(value, builder.bitcast(pointer, _V16.as_pointer()))
                store.align = 4
            return context.get_dummy_value()

        return types.void(a, b, out, i0, j0), codegen

    return block


# One block function per row count of a block (the last block of rows may be short), for 32
# and for 16 columns (the last columns).
_W1, _W2, _W3, _W4, _W5, _W6, _W7, _W8 = (_block_intrinsic(r, 2) for r in range(1, BLOCK_ROWS + 1))
_N1, _N2, _N3, _N4, _N5, _N6, _N7, _N8 = (_block_intrinsic(r, 1) for r in range(1, BLOCK_ROWS + 1))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _wide(a, b, out, i0, j0, rows):
    if rows == 8:
        _W8(a, b, out, i0, j0)
    elif rows == 7:
        _W7(a, b, out, i0, j0)
    elif rows == 6:
        _W6(a, b, out, i0, j0)
    elif rows == 5:
        _W5(a, b, out, i0, j0)
    elif rows == 4:
        _W4(a, b, out, i0, j0)
    elif rows == 3:
        _W3(a, b, out, i0, j0)
    elif rows == 2:
        _W2(a, b, out, i0, j0)
    else:
        _W1(a, b, out, i0, j0)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _narrow(a, b, out, i0, j0, rows):
    if rows == 8:
        _N8(a, b, out, i0, j0)
    elif rows == 7:
        _N7(a, b, out, i0, j0)
    elif rows == 6:
        _N6(a, b, out, i0, j0)
    elif rows == 5:
        _N5(a, b, out, i0, j0)
    elif rows == 4:
        _N4(a, b, out, i0, j0)
    elif rows == 3:
        _N3(a, b, out, i0, j0)
    elif rows == 2:
        _N2(a, b, out, i0, j0)
    else:
        _N1(a, b, out, i0, j0)


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def small_gemm_into(a, b, out):
    """``out[...] = a @ b`` for float32 ``a`` (m x k, any strides), ``b`` (k x n) and ``out``
    (m x n), the rows of ``b`` and ``out`` of unit stride (see :func:`fits`)."""
    m, n = out.shape
    if b.strides[1] != 4 or out.strides[1] != 4:   # not this kernel's layout: a plain loop
        for i in range(m):
            for j in range(n):
                total = np.float32(0.0)
                for p in range(a.shape[1]):
                    total += a[i, p] * b[p, j]
                out[i, j] = total
        return
    wide = n - n % 32
    # Column panels outermost: each k x 32 panel of ``b`` comes from memory once and from cache
    # for the other row blocks (rows outermost streamed all of ``b`` once per 8 rows: W1 at
    # batch 16 ran 2.7 against 1.7-2.1 ms on BLAS).
    for j0 in range(0, wide, 32):
        for i0 in range(0, m, 8):
            _wide(a, b, out, np.int64(i0), np.int64(j0), min(8, m - i0))
    if n - wide >= 16:
        for i0 in range(0, m, 8):
            _narrow(a, b, out, np.int64(i0), np.int64(wide), min(8, m - i0))
    # The last n % 16 columns: copied into 16 zero-padded ones and taken as one narrow block
    # (a loop per element over the inner dimension took 60 us of a 20x784 @ 784x500).
    rest = n % 16
    if rest:
        k = a.shape[1]
        padded = np.zeros((k, 16), np.float32)
        padded[:, :rest] = b[:, n - rest:]
        block_out = np.empty((m, 16), np.float32)
        for i0 in range(0, m, 8):
            _narrow(a, padded, block_out, np.int64(i0), np.int64(0), min(8, m - i0))
        out[:, n - rest:] = block_out[:, :rest]


def fits(a, b, out):
    """Whether :func:`small_gemm_into` can compute this product: float32 matrices, at most
    ``MAX_ROWS`` rows, none empty, ``b``'s and ``out``'s rows of unit stride."""
    return (a.dtype == b.dtype == out.dtype == np.float32 and a.ndim == b.ndim == out.ndim == 2
            and 0 < out.shape[0] <= MAX_ROWS and a.shape[1] > 0 and out.shape[1] > 0
            and b.strides[1] == 4 and out.strides[1] == 4
            and a.shape[1] == b.shape[0] and out.shape == (a.shape[0], b.shape[1]))


#: ``GRAPHNET_SMALL_GEMM=0``: every product on BLAS
ENABLED = os.environ.get("GRAPHNET_SMALL_GEMM", "1") != "0"
#: products with fewer multiply-adds keep BLAS (a call's argument handling outweighs the gain)
MIN_MACS = 1 << 16


def wanted(m, n, k, dtype, trans_b):
    """Whether an (m x k) @ (k x n) product of ``dtype`` is this kernel's (by its shapes)."""
    return ENABLED and np.dtype(dtype) == np.float32 and 0 < m <= MAX_ROWS and k > 0 and n > 0 and not trans_b \
        and m * n * k >= MIN_MACS
