"""Hand-written Numba kernels of W3's and W5's math: the bar graphnet's generated kernels are held to.

Written by hand here, not generated: what a Numba user who knows the machine
would write for BN(train)+ReLU forward and backward (given nothing but ``x``,
``dy``, ``gamma``, ``beta``: the backward recomputes the batch statistics, as
graphnet's does), the bias+ReLU backward and the softmax cross-entropy with
its gradient. Each is two passes at most over the big arrays: column sums in
float64 over row slices (rows read 4 at a time), then one fused elementwise
pass, both ``prange`` over blocks of rows. ``build_hand`` returns None for the
tasks it has no kernel for (the variant is then absent from that case).
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from bench.workloads import BN_EPS, BN_MOMENTUM

NAME = "hand numba"
BLOCK = 4   # rows read at a time by the column sums


def _chunks():
    return max(1, numba.get_num_threads())


@numba.njit(parallel=True, cache=True, error_model="numpy")
def column_moments(x, chunks):
    """(mean, biased variance) per column, float64 partial sums per block of rows."""
    rows, cols = x.shape
    s1 = np.zeros((chunks, cols))
    s2 = np.zeros((chunks, cols))
    for c in prange(chunks):
        start, stop = c * rows // chunks, (c + 1) * rows // chunks
        a, b = s1[c], s2[c]
        i = start
        while i + BLOCK <= stop:
            r0, r1, r2, r3 = x[i], x[i + 1], x[i + 2], x[i + 3]
            for j in range(cols):
                v0, v1, v2, v3 = np.float64(r0[j]), np.float64(r1[j]), np.float64(r2[j]), np.float64(r3[j])
                a[j] += (v0 + v1) + (v2 + v3)
                b[j] += (v0 * v0 + v1 * v1) + (v2 * v2 + v3 * v3)
            i += BLOCK
        for k in range(i, stop):
            r = x[k]
            for j in range(cols):
                v = np.float64(r[j])
                a[j] += v
                b[j] += v * v
    mean = s1.sum(axis=0) / rows
    var = np.maximum(s2.sum(axis=0) / rows - mean * mean, 0.0)
    return mean, var


@numba.njit(parallel=True, cache=True, error_model="numpy")
def bn_relu_forward(x, gamma, beta, running_mean, running_var, out, chunks):
    rows, cols = x.shape
    mean, var = column_moments(x, chunks)
    scale = (gamma / np.sqrt(var + BN_EPS)).astype(np.float32)
    shift = (beta - mean * scale).astype(np.float32)
    for c in prange(chunks):
        for i in range(c * rows // chunks, (c + 1) * rows // chunks):
            xr, o = x[i], out[i]
            for j in range(cols):
                o[j] = max(xr[j] * scale[j] + shift[j], np.float32(0))
    unbiased = rows / max(rows - 1, 1)
    for j in range(cols):
        running_mean[j] = (1 - BN_MOMENTUM) * running_mean[j] + BN_MOMENTUM * mean[j]
        running_var[j] = (1 - BN_MOMENTUM) * running_var[j] + BN_MOMENTUM * var[j] * unbiased


@numba.njit(parallel=True, cache=True, error_model="numpy")
def bn_relu_backward(x, dy, gamma, beta, dx, dgamma, dbeta, chunks):
    """dx, dgamma, dbeta of relu(BN(x)); the statistics recomputed (one pass), then the two sums
    of BN's backward (one pass over x and dy), then dx (one more)."""
    rows, cols = x.shape
    mean, var = column_moments(x, chunks)
    inv_std = (1.0 / np.sqrt(var + BN_EPS)).astype(np.float32)
    mean32 = mean.astype(np.float32)
    sums = np.zeros((chunks, 2, cols))   # per block: sum(da), sum(da * xhat)
    for c in prange(chunks):
        s_da, s_dax = sums[c, 0], sums[c, 1]
        for i in range(c * rows // chunks, (c + 1) * rows // chunks):
            xr, dr = x[i], dy[i]
            for j in range(cols):
                xhat = (xr[j] - mean32[j]) * inv_std[j]
                da = dr[j] if xhat * gamma[j] + beta[j] > 0 else np.float32(0)
                s_da[j] += da
                s_dax[j] += da * xhat
    total = sums.sum(axis=0)
    for j in range(cols):
        dbeta[j] = total[0, j]
        dgamma[j] = total[1, j]
    k_mean = (total[0] / rows).astype(np.float32)
    k_xhat = (total[1] / rows).astype(np.float32)
    for c in prange(chunks):
        for i in range(c * rows // chunks, (c + 1) * rows // chunks):
            xr, dr, o = x[i], dy[i], dx[i]
            for j in range(cols):
                xhat = (xr[j] - mean32[j]) * inv_std[j]
                da = dr[j] if xhat * gamma[j] + beta[j] > 0 else np.float32(0)
                o[j] = gamma[j] * inv_std[j] * (da - k_mean[j] - xhat * k_xhat[j])


@numba.njit(parallel=True, cache=True, error_model="numpy")
def bias_relu_backward(h, b, dy, dh, db, chunks):
    rows, cols = h.shape
    sums = np.zeros((chunks, cols))
    for c in prange(chunks):
        s = sums[c]
        for i in range(c * rows // chunks, (c + 1) * rows // chunks):
            hr, dr, o = h[i], dy[i], dh[i]
            for j in range(cols):
                g = dr[j] if hr[j] + b[j] > 0 else np.float32(0)
                o[j] = g
                s[j] += g
    total = sums.sum(axis=0)
    for j in range(cols):
        db[j] = total[j]


@numba.njit(parallel=True, cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def softmax_xent(logits, labels, grad, chunks):
    """Mean cross-entropy and its gradient in one pass per row (float32 math.exp: scalar here)."""
    rows, cols = logits.shape
    losses = np.zeros(rows)
    for c in prange(chunks):
        for i in range(c * rows // chunks, (c + 1) * rows // chunks):
            xr, g = logits[i], grad[i]
            m = xr[0]
            for j in range(cols):
                m = max(m, xr[j])
            total = np.float32(0)
            for j in range(cols):
                e = np.float32(math.exp(xr[j] - m))
                g[j] = e
                total += e
            losses[i] = m + math.log(total) - xr[labels[i]]
            scale = np.float32(1.0 / (total * rows))
            for j in range(cols):
                g[j] *= scale
            g[labels[i]] -= np.float32(1.0 / rows)
    return losses.mean()


def build_hand(case, problem):
    """A :class:`bench.peers.Runner` of the hand-written kernel of ``case``, or None."""
    from bench.peers import Runner
    task = case.task
    chunks = _chunks()
    if task in ("bn_relu_fwd", "bn_relu_bwd"):
        x, dy = problem["x"], problem["dy"]
        gamma, beta = problem["gamma"], problem["beta"]
        cols = x.shape[1]
        if task == "bn_relu_fwd":
            out = np.empty_like(x)
            running_mean, running_var = np.zeros(cols, np.float32), np.ones(cols, np.float32)

            def forward():
                bn_relu_forward(x, gamma, beta, running_mean, running_var, out, chunks)
                return [out]
            return Runner(run=forward, check=forward)
        dx, dgamma, dbeta = np.empty_like(x), np.empty(cols, np.float32), np.empty(cols, np.float32)

        def backward():
            bn_relu_backward(x, dy, gamma, beta, dx, dgamma, dbeta, chunks)
            return [dx, dgamma, dbeta]
        return Runner(run=backward, check=backward)
    if task == "bias_relu_bwd":
        h, b, dy = problem["h"], problem["b"], problem["dy"]
        dh, db = np.empty_like(h), np.empty(h.shape[1], np.float32)

        def backward():
            bias_relu_backward(h, b, dy, dh, db, chunks)
            return [dh, db]
        return Runner(run=backward, check=backward)
    if task == "softmax_xent":
        logits, labels = problem["logits"], problem["labels"]
        grad = np.empty_like(logits)

        def run():
            return [np.float32(softmax_xent(logits, labels, grad, chunks)), grad]
        return Runner(run=run, check=run)
    return None
