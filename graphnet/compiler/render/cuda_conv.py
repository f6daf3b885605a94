"""numba.cuda kernels of the convolution family: direct convolutions, pooling, per-channel sums.

Arrays reach the kernels flat (C order), as every CUDA kernel of graphnet. Each kernel is a
*gather*: one thread per output element (grid-stride), summing what it reads, so no two threads
write the same element and no atomics are needed. The input gradient of a convolution gathers
from the output gradient the taps that read each pixel; the max-pool gradient gathers from the
windows holding each pixel. Accumulation is in float64, as the CPU templates.

``flip`` is 1 for a true convolution (``filter_flip=True``): the filter is read at
``(KH - 1 - a, KW - 1 - b)`` for tap ``(a, b)``.
"""
from __future__ import annotations

from graphnet.compiler.render.conv import ConvTemplate

_UNFLAT4 = """\
        q4 = flat % D3
        t = flat // D3
        q3 = t % D2
        t = t // D2
        q2 = t % D1
        q1 = t // D1
"""


def _gather(signature, dims, body):
    """``kernel(signature)``: a grid-stride loop over D0 x D1 x D2 x D3 output elements (q1..q4)."""
    return (f"def kernel({signature}):\n"
            f"    D0, D1, D2, D3 = {dims}\n"
            "    for flat in range(cuda.grid(1), D0 * D1 * D2 * D3, cuda.gridsize(1)):\n"
            + _UNFLAT4 + body)


CONV_PARAMS = "N, C, H, W, O, KH, KW, OH, OW, ph, pw, sh, sw, dh, dw, flip"

#: out[n, o, i, j] = sum over c, a, b of x[n, c, i*sh - ph + a*dh, j*sw - pw + b*dw] * w'[o, c, a, b]
CONV_FORWARD = ConvTemplate("conv", _gather(CONV_PARAMS + ", x, w, out", "N, O, OH, OW", """\
        n, o, i, j = q1, q2, q3, q4
        s = 0.0
        for c in range(C):
            for a in range(KH):
                r = i * sh - ph + a * dh
                if r < 0 or r >= H:
                    continue
                wa = KH - 1 - a if flip else a
                for b in range(KW):
                    q = j * sw - pw + b * dw
                    if q < 0 or q >= W:
                        continue
                    wb = KW - 1 - b if flip else b
                    s += x[((n * C + c) * H + r) * W + q] * w[((o * C + c) * KH + wa) * KW + wb]
        out[flat] = s
"""))

#: dx[n, c, r, q]: every output (i, j) whose tap (a, b) read pixel (r, q), times that tap
CONV_GRAD_INPUT = ConvTemplate("conv_grad_input", _gather(CONV_PARAMS + ", w, g, dx", "N, C, H, W", """\
        n, c, r, q = q1, q2, q3, q4
        s = 0.0
        for o in range(O):
            for a in range(KH):
                ti = r + ph - a * dh
                if ti < 0 or ti % sh != 0 or ti // sh >= OH:
                    continue
                i = ti // sh
                wa = KH - 1 - a if flip else a
                for b in range(KW):
                    tj = q + pw - b * dw
                    if tj < 0 or tj % sw != 0 or tj // sw >= OW:
                        continue
                    wb = KW - 1 - b if flip else b
                    s += g[((n * O + o) * OH + i) * OW + tj // sw] * w[((o * C + c) * KH + wa) * KW + wb]
        dx[flat] = s
"""))

#: dw[o, c, wa, wb]: the tap's input pixels times the output gradient, over images and outputs
CONV_GRAD_FILTERS = ConvTemplate("conv_grad_filters", _gather(CONV_PARAMS + ", x, g, dw_", "O, C, KH, KW", """\
        o, c, wa, wb = q1, q2, q3, q4
        a = KH - 1 - wa if flip else wa
        b = KW - 1 - wb if flip else wb
        s = 0.0
        for n in range(N):
            for i in range(OH):
                r = i * sh - ph + a * dh
                if r < 0 or r >= H:
                    continue
                for j in range(OW):
                    q = j * sw - pw + b * dw
                    if q < 0 or q >= W:
                        continue
                    s += g[((n * O + o) * OH + i) * OW + j] * x[((n * C + c) * H + r) * W + q]
        dw_[flat] = s
"""))

POOL_PARAMS = "P, H, W, OH, OW, wh, ww, sh, sw, ph, pw"

#: one pooled value per thread; modes as the CPU template (0 max, 1 sum, 2 inc_pad, 3 exc_pad)
POOL = ConvTemplate("pool", _gather(POOL_PARAMS + ", mode, x, out", "1, P, OH, OW", """\
        p, i, j = q2, q3, q4
        r0 = i * sh - ph
        q0 = j * sw - pw
        r_lo, r_hi = max(r0, 0), min(r0 + wh, H)
        q_lo, q_hi = max(q0, 0), min(q0 + ww, W)
        base = p * H * W
        if mode == 0:
            m = x[base + r_lo * W + q_lo]
            for r in range(r_lo, r_hi):
                for q in range(q_lo, q_hi):
                    m = nan_max(m, x[base + r * W + q])
            out[flat] = m
        else:
            s = 0.0
            for r in range(r_lo, r_hi):
                for q in range(q_lo, q_hi):
                    s += x[base + r * W + q]
            if mode == 2:
                s /= (min(r0 + wh, H + ph) - max(r0, -ph)) * (min(q0 + ww, W + pw) - max(q0, -pw))
            elif mode == 3:
                s /= (r_hi - r_lo) * (q_hi - q_lo)
            out[flat] = s
"""))

#: dx[p, r, q]: the gradient of every window holding pixel (r, q) whose maximum it equals
MAX_POOL_GRAD = ConvTemplate("max_pool_grad", _gather(POOL_PARAMS + ", x, pooled, g, dx", "1, P, H, W", """\
        p, r, q = q2, q3, q4
        v = x[flat]
        s = 0.0
        i_lo = max(0, (r + ph - wh) // sh + 1)
        i_hi = min(OH - 1, (r + ph) // sh)
        j_lo = max(0, (q + pw - ww) // sw + 1)
        j_hi = min(OW - 1, (q + pw) // sw)
        for i in range(i_lo, i_hi + 1):
            for j in range(j_lo, j_hi + 1):
                k = (p * OH + i) * OW + j
                if v == pooled[k]:
                    s += g[k]
        dx[flat] = s
"""))

#: one thread per channel: the sum, or mean and biased variance, over (images, pixels)
CHANNEL_SUM = ConvTemplate("channel_sum", """\
def kernel(N, C, L, x, out):
    for c in range(cuda.grid(1), C, cuda.gridsize(1)):
        s = 0.0
        for n in range(N):
            base = (n * C + c) * L
            for j in range(L):
                s += x[base + j]
        out[c] = s
""")

CHANNEL_MOMENTS = ConvTemplate("channel_moments", """\
def kernel(N, C, L, x, mean, var):
    for c in range(cuda.grid(1), C, cuda.gridsize(1)):
        s = 0.0
        s2 = 0.0
        for n in range(N):
            base = (n * C + c) * L
            for j in range(L):
                v = numba.float64(x[base + j])
                s += v
                s2 += v * v
        m = s / (N * L)
        v2 = s2 / (N * L) - m * m
        mean[c] = m
        var[c] = v2 if not v2 < 0.0 else 0.0
""")
