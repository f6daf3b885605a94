"""Kernel templates of the convolution family: im2col, col2im, pooling, per-channel reductions.

Each template is a ``kernel(...)`` body rendered as a serial and a parallel
dispatcher by :func:`graphnet.compiler.render.cpu.module_source`, loaded
through the on-disk cache like every generated kernel. They are fixed texts
(the shapes and parameters are arguments), so one compile serves every
convolution of a program and of later programs.

Layouts: images are NCHW. im2col writes one image's columns as a (K, L)
matrix, ``K = channels * kernel rows * kernel cols`` (row ``(c * kh + a) * kw +
b`` for channel ``c`` and tap ``(a, b)``), ``L = out rows * out cols``, so the
convolution of one image is the GEMM ``filters (O, K) @ columns (K, L)`` and
its output is the image's (O, L) slice of the NCHW result, with no transpose.
Pooling runs over ``planes`` (every leading axis collapsed) of (rows, cols).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConvTemplate:
    """A fixed kernel text (``def kernel(...)``) and the word kernel names use for it."""

    name: str
    body: str


#: one image (C, H, W) -> its columns (K, L); zero where a tap reads the padding
IM2COL = ConvTemplate("im2col", """\
def kernel(n_chunks, x, cols, kh, kw, ph, pw, sh, sw, dh, dw, oh, ow):
    C, H, W = x.shape
    for t in prange(n_chunks):
        for c in range(t * C // n_chunks, (t + 1) * C // n_chunks):
            xc = x[c]
            for a in range(kh):
                for b in range(kw):
                    row = cols[(c * kh + a) * kw + b]
                    for i in range(oh):
                        r = i * sh - ph + a * dh
                        base = i * ow
                        if r < 0 or r >= H:
                            for j in range(ow):
                                row[base + j] = 0
                            continue
                        xr = xc[r]
                        for j in range(ow):
                            q = j * sw - pw + b * dw
                            row[base + j] = xr[q] if q >= 0 and q < W else 0
""")

#: the adjoint: columns (K, L) added back onto one image (C, H, W), which it first zeroes
COL2IM = ConvTemplate("col2im", """\
def kernel(n_chunks, cols, x, kh, kw, ph, pw, sh, sw, dh, dw, oh, ow):
    C, H, W = x.shape
    for t in prange(n_chunks):
        for c in range(t * C // n_chunks, (t + 1) * C // n_chunks):
            xc = x[c]
            xc[:, :] = 0
            for a in range(kh):
                for b in range(kw):
                    row = cols[(c * kh + a) * kw + b]
                    for i in range(oh):
                        r = i * sh - ph + a * dh
                        if r < 0 or r >= H:
                            continue
                        xr = xc[r]
                        base = i * ow
                        for j in range(ow):
                            q = j * sw - pw + b * dw
                            if q >= 0 and q < W:
                                xr[q] += row[base + j]
""")

#: the ``mode`` argument of the pooling template for each of Pool2D's modes
POOL_MODE_CODES = {"max": 0, "sum": 1, "average_inc_pad": 2, "average_exc_pad": 3}

#: pooling of every plane (P, H, W) -> (P, oh, ow). mode: 0 max, 1 sum, 2 average_inc_pad,
#: 3 average_exc_pad. A window starts at (i * sh - ph, j * sw - pw) and holds the real
#: pixels it covers (the padding never wins a max nor adds to a sum); inc_pad counts the
#: padded image's pixels (rows -ph .. H + ph), exc_pad the real ones, as Pool2D's reference.
#: Max windows that tile the image (stride = window, no padding, every window whole: the usual
#: 2x2 / 2) skip the clipping of each window, and a 2x2 max is one expression LLVM vectorizes:
#: LeNet's first pool, 1280 planes of 24x24, took 1096 us on one thread in the general loop,
#: 87 us so. The order of the comparisons keeps the general loop's answer (the first of equal
#: values, the first NaN).
POOL = ConvTemplate("pool", """\
def kernel(n_chunks, x, out, wh, ww, sh, sw, ph, pw, mode):
    P, H, W = x.shape
    oh, ow = out.shape[1], out.shape[2]
    tiled_max = mode == 0 and sh == wh and sw == ww and ph == 0 and pw == 0 and oh * wh <= H and ow * ww <= W
    for t in prange(n_chunks):
        for p in range(t * P // n_chunks, (t + 1) * P // n_chunks):
            xp = x[p]
            op = out[p]
            # One loop nest per case, each simple (a nest branching inside vectorizes nothing)
            if tiled_max and wh == 2 and ww == 2:
                for i in range(oh):
                    upper = xp[2 * i]
                    lower = xp[2 * i + 1]
                    orow = op[i]
                    for j in range(ow):
                        orow[j] = nan_max(nan_max(upper[2 * j], upper[2 * j + 1]),
                                          nan_max(lower[2 * j], lower[2 * j + 1]))
            elif tiled_max:
                for i in range(oh):
                    for j in range(ow):
                        m = xp[i * wh, j * ww]
                        for r in range(i * wh, i * wh + wh):
                            xr = xp[r]
                            for q in range(j * ww, j * ww + ww):
                                m = nan_max(m, xr[q])
                        op[i, j] = m
            else:
                for i in range(oh):
                    r0 = i * sh - ph
                    r_lo, r_hi = max(r0, 0), min(r0 + wh, H)
                    for j in range(ow):
                        q0 = j * sw - pw
                        q_lo, q_hi = max(q0, 0), min(q0 + ww, W)
                        if mode == 0:
                            m = xp[r_lo, q_lo]
                            for r in range(r_lo, r_hi):
                                for q in range(q_lo, q_hi):
                                    m = nan_max(m, xp[r, q])
                            op[i, j] = m
                        else:
                            s = 0.0
                            for r in range(r_lo, r_hi):
                                for q in range(q_lo, q_hi):
                                    s += xp[r, q]
                            if mode == 2:
                                s /= (min(r0 + wh, H + ph) - max(r0, -ph)) * (min(q0 + ww, W + pw) - max(q0, -pw))
                            elif mode == 3:
                                s /= (r_hi - r_lo) * (q_hi - q_lo)
                            op[i, j] = s
""")

#: max pooling's gradient: each window sends its output gradient to every pixel equal to
#: its maximum (ties share it, as graphnet's max); overlapping windows add up. Windows that
#: tile the image (see POOL) write each pixel once, its gradient or 0, with no zeroing pass
#: and no accumulation (LeNet's first pool, 2x2: 2922 us on one thread in the general loop,
#: 220 us so; 3x3 windows over the same planes: 2492 against 650 us).
MAX_POOL_GRAD = ConvTemplate("max_pool_grad", """\
def kernel(n_chunks, x, pooled, g, dx, wh, ww, sh, sw, ph, pw):
    P, H, W = x.shape
    oh, ow = g.shape[1], g.shape[2]
    tiled = sh == wh and sw == ww and ph == 0 and pw == 0 and oh * wh <= H and ow * ww <= W
    for t in prange(n_chunks):
        for p in range(t * P // n_chunks, (t + 1) * P // n_chunks):
            xp = x[p]
            dp = dx[p]
            mp = pooled[p]
            gp = g[p]
            # Three loop nests, each simple: one nest branching on the window's width inside
            # vectorized none of them (1578 against 228 us on one thread).
            if tiled and ww == 2:
                for r in range(H):
                    dr = dp[r]
                    i = r // wh
                    if i >= oh:   # below the last window: no gradient
                        dr[:] = 0
                        continue
                    xr = xp[r]
                    mr = mp[i]
                    gr = gp[i]
                    for j in range(ow):
                        m = mr[j]
                        gij = gr[j]
                        dr[2 * j] = gij if xr[2 * j] == m else 0
                        dr[2 * j + 1] = gij if xr[2 * j + 1] == m else 0
                    for q in range(2 * ow, W):
                        dr[q] = 0
            elif tiled:
                for r in range(H):
                    dr = dp[r]
                    i = r // wh
                    if i >= oh:
                        dr[:] = 0
                        continue
                    xr = xp[r]
                    mr = mp[i]
                    gr = gp[i]
                    for j in range(ow):
                        m = mr[j]
                        gij = gr[j]
                        for q in range(j * ww, j * ww + ww):
                            dr[q] = gij if xr[q] == m else 0
                    for q in range(ow * ww, W):
                        dr[q] = 0
            else:
                dp[:, :] = 0
                for i in range(oh):
                    r0 = i * sh - ph
                    for j in range(ow):
                        q0 = j * sw - pw
                        m = mp[i, j]
                        gij = gp[i, j]
                        for r in range(max(r0, 0), min(r0 + wh, H)):
                            for q in range(max(q0, 0), min(q0 + ww, W)):
                                if xp[r, q] == m:
                                    dp[r, q] += gij
""")

#: per-channel sum over (images, pixels) of x (N, C, L), accumulated in float64 vector lanes
#: (scratch_sum: 453 against 42 us for 64 images of 20 x 576 float32, one thread)
CHANNEL_SUM = ConvTemplate("channel_sum", """\
def kernel(n_chunks, x, out):
    N, C, L = x.shape
    for t in prange(n_chunks):
        for c in range(t * C // n_chunks, (t + 1) * C // n_chunks):
            s = 0.0
            for n in range(N):
                s += scratch_sum(x[n, c], L)
            out[c] = s
""")

#: per-channel mean and biased variance over (images, pixels): batch norm's statistics.
#: E[x^2] - mean^2 in float64 (as the fused moments kernels), clamped at 0 (keeping NaN)
CHANNEL_MOMENTS = ConvTemplate("channel_moments", """\
def kernel(n_chunks, x, mean, var):
    N, C, L = x.shape
    count = N * L
    for t in prange(n_chunks):
        for c in range(t * C // n_chunks, (t + 1) * C // n_chunks):
            s = 0.0
            s2 = 0.0
            for n in range(N):
                a, b = sum_and_squares(x[n, c], L)
                s += a
                s2 += b
            m = s / count
            v2 = s2 / count - m * m
            mean[c] = m
            var[c] = v2 if not v2 < 0.0 else 0.0
""")

#: one image's (C, L) output added to per-channel sums of x and x^2 (float64): a convolution's
#: statistics epilogue, while the image is in cache
CHANNEL_ACCUMULATE = ConvTemplate("channel_accumulate", """\
def kernel(n_chunks, image, s, s2):
    C, L = image.shape
    for c in range(C):
        a, b = sum_and_squares(image[c], L)
        s[c] += a
        s2[c] += b
""")
