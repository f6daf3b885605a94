"""Random configurations of ``scan`` loops, ``conv2d`` and ``pool_2d``, with NumPy references of
their own (written from Theano's documented semantics, not from graphnet's code).

Each configuration comes from one integer seed, so a failure is reproduced by its seed:

- :func:`check_conv_or_pool`: a ``conv2d`` (border modes, strides, dilations, flipped or not)
  or a ``pool_2d`` (every mode, padding, ``ignore_border`` both ways) against the NumPy
  reference, and in float64 the gradients against central differences along a random
  direction.
- :func:`check_scan`: an Elman-style recurrence (two past values with ``taps``, backwards,
  an output not fed back, a non-sequence) compiled three ways (the loop in halves of the
  batch, whole, and the host loop), the host loop's hidden states against the NumPy
  recurrence and the two compiled ways against the host loop, gradients included. Each
  function is first called at another sequence length (a second frame), then past the call
  count after which the halves compile, then on a feed of another memory order.

Each returns a list of disagreements (empty when every value agreed).
"""
from __future__ import annotations

import numpy as np

import graphnet as gn
from graphnet.compiler.runtime import scan_steps


# ----------------------------------------------------------------- conv2d and pool_2d
def numpy_conv2d(x, w, pad, stride, dilation, flip):
    """Theano's conv2d of NCHW ``x`` by OIHW ``w``: zero padding ``pad``, then every window."""
    if flip:
        w = w[:, :, ::-1, ::-1]
    (ph, pw), (sh, sw), (dh, dw) = pad, stride, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    kh, kw = (w.shape[2] - 1) * dh + 1, (w.shape[3] - 1) * dw + 1
    rows, cols = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    out = np.zeros((x.shape[0], w.shape[0], rows, cols))
    for i in range(rows):
        for j in range(cols):
            patch = xp[:, :, i * sh:i * sh + kh:dh, j * sw:j * sw + kw:dw]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    return out


def conv_padding(border_mode, kernel, dilation):
    """The zero padding of each border mode (an int or a pair is the padding itself)."""
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    if border_mode == "valid":
        return (0, 0)
    if border_mode == "full":
        return (extent[0] - 1, extent[1] - 1)
    if border_mode == "half":
        return (extent[0] // 2, extent[1] // 2)
    return (border_mode, border_mode) if isinstance(border_mode, int) else tuple(border_mode)


def numpy_pool_2d(x, ws, stride, pad, mode, ignore_border):
    """Theano's pool_2d: its output length (with ``ignore_border=False`` a last, partial window
    where one starts inside the image), each window clipped to the image (``average_inc_pad``:
    to the padded image; "max and sum always exclude the padding"); averages over the clipped
    window."""
    rows, cols = x.shape[2:]

    def length(size, window, step, padding):
        if ignore_border:
            return (size + 2 * padding - window) // step + 1
        if step >= window:
            return (size - 1) // step + 1
        return max(0, (size - 1 - window + step) // step) + 1

    out_rows, out_cols = length(rows, ws[0], stride[0], pad[0]), length(cols, ws[1], stride[1], pad[1])
    (ph, pw) = pad
    padded = np.zeros(x.shape[:2] + (rows + 2 * ph, cols + 2 * pw))
    padded[:, :, ph:ph + rows, pw:pw + cols] = x
    out = np.zeros(x.shape[:2] + (out_rows, out_cols))
    for i in range(out_rows):
        r0 = i * stride[0]
        r1 = min(r0 + ws[0], padded.shape[2])
        if mode != "average_inc_pad":
            r0, r1 = max(r0, ph), min(r1, rows + ph)
        for j in range(out_cols):
            c0 = j * stride[1]
            c1 = min(c0 + ws[1], padded.shape[3])
            if mode != "average_inc_pad":
                c0, c1 = max(c0, pw), min(c1, cols + pw)
            window = padded[:, :, r0:r1, c0:c1]
            reduce = {"max": np.max, "sum": np.sum}.get(mode, np.mean)
            out[:, :, i, j] = reduce(window, axis=(2, 3))
    return out


def conv_or_pool_case(seed):
    """(description, graphnet output of ``x``, NumPy output of ``X``, x, X, shared weights and
    their values) of the configuration ``seed``."""
    rng = np.random.default_rng(seed)
    dtype = str(rng.choice(["float32", "float64"]))
    n, c = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    h, w = int(rng.integers(3, 9)), int(rng.integers(3, 9))
    x = gn.placeholder("x", (None, c, h, w), dtype)
    X = rng.standard_normal((n, c, h, w))
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    if rng.random() < 0.5:
        o, kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
        dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        if (kh - 1) * dilation[0] + 1 > h or (kw - 1) * dilation[1] + 1 > w:
            dilation = (1, 1)
        border_mode = ["valid", "full", "half", int(rng.integers(0, 3)),
                       (int(rng.integers(0, 3)), int(rng.integers(0, 3)))][int(rng.integers(0, 5))]
        flip = bool(rng.random() < 0.5)
        values = rng.standard_normal((o, c, kh, kw))
        filters = gn.shared(values.astype(dtype), name="filters")
        out = gn.nn.conv2d(x, filters, border_mode=border_mode, subsample=stride, filter_flip=flip,
                           filter_dilation=dilation)
        want = numpy_conv2d(X, values, conv_padding(border_mode, (kh, kw), dilation), stride, dilation, flip)
        what = (f"conv2d seed {seed}: {dtype} x {X.shape}, filters {values.shape}, border_mode={border_mode!r}, "
                f"subsample={stride}, filter_dilation={dilation}, filter_flip={flip}")
        return what, out, want, x, X, [(filters, values)]
    ws = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    ignore_border = bool(rng.random() < 0.7)
    pad = (int(rng.integers(0, ws[0])), int(rng.integers(0, ws[1]))) if ignore_border else (0, 0)
    mode = str(rng.choice(["max", "sum", "average_inc_pad", "average_exc_pad"]))
    if rng.random() < 0.35:   # windows tiling the image, as users mostly pool: the kernels' own loops
        stride, pad = ws, (0, 0)
    out = gn.nn.pool_2d(x, ws, ignore_border=ignore_border, stride=stride, pad=pad, mode=mode)
    want = numpy_pool_2d(X, ws, stride, pad, mode, ignore_border)
    what = (f"pool_2d seed {seed}: {dtype} x {X.shape}, ws={ws}, stride={stride}, pad={pad}, mode={mode}, "
            f"ignore_border={ignore_border}")
    return what, out, want, x, X, []


def check_conv_or_pool(seed):
    what, out, want, x, X, weights = conv_or_pool_case(seed)
    dtype = x.dtype
    rng = np.random.default_rng(seed + 1)
    probe = rng.standard_normal(want.shape)
    loss = gn.sum(out * gn.constant(probe.astype(dtype)))
    fn = gn.function([x], [out, loss] + list(gn.grad(loss, [x] + [v for v, _ in weights])), name="fuzz_conv")
    fn(X.astype(dtype))
    fn.wait_compiled()
    got = fn(X.astype(dtype))
    tolerance = 1e-4 if dtype == "float32" else 1e-8
    if got[0].shape != want.shape:
        return [f"{what}: output shape {got[0].shape}, NumPy's {want.shape}"]
    if not np.allclose(got[0], want, rtol=tolerance, atol=tolerance):
        return [f"{what}: output differs by {np.abs(got[0] - want).max():.3g}"]
    if dtype != "float64":
        return []
    problems = []

    def central_difference(loss_at):
        """d loss / d t at t = 0 of ``loss_at(t)``, by central differences."""
        eps = 1e-6
        return (loss_at(eps) - loss_at(-eps)) / (2 * eps)

    direction = rng.standard_normal(X.shape)
    numeric = central_difference(lambda t: float(fn(X + t * direction)[1]))
    analytic = float(np.sum(got[2] * direction))
    if not np.isclose(numeric, analytic, rtol=1e-5, atol=1e-6):
        problems.append(f"{what}: d loss / d x along a direction {analytic:.9g}, central differences {numeric:.9g}")
    for k, (var, values) in enumerate(weights):
        direction = rng.standard_normal(values.shape)

        def loss_at(t, var=var, values=values, direction=direction):
            var.set_value(values + t * direction)
            return float(fn(X)[1])
        numeric = central_difference(loss_at)
        var.set_value(values)
        analytic = float(np.sum(got[3 + k] * direction))
        if not np.isclose(numeric, analytic, rtol=1e-5, atol=1e-6):
            problems.append(f"{what}: d loss / d {var.name} {analytic:.9g}, central differences {numeric:.9g}")
    return problems


# ----------------------------------------------------------------- scan
ACTIVATIONS = {"tanh": (gn.tanh, np.tanh), "sigmoid": (gn.sigmoid, lambda v: 1 / (1 + np.exp(-v))),
               "relu": (gn.relu, lambda v: np.maximum(v, 0))}


def scan_case(seed):
    """The configuration ``seed``: shapes, dtype, body options. Seed 0 is the one CI must have:
    a batch the halves split (17 rows: 8 and 9), five steps."""
    rng = np.random.default_rng(seed)
    case = dict(seed=seed, T=int(rng.choice([1, 2, 5])), B=int(rng.choice([1, 3, 16, 17, 33])),
                I=int(rng.choice([1, 4])), H=int(rng.choice([2, 5, 16])),
                dtype=str(rng.choice(["float32", "float64"])), activation=str(rng.choice(list(ACTIVATIONS))),
                two_taps=bool(rng.random() < 0.3), backwards=bool(rng.random() < 0.3),
                extra_output=bool(rng.random() < 0.3), non_sequence=bool(rng.random() < 0.3))
    if seed == 0:
        case.update(T=5, B=17)
    return case


def build_scan(case, split_mode, compiled):
    """The training function of ``case`` (loss, hidden states, d/d W, U, x, h0) with the loop's
    split mode and compiled or host loop as given (both read when the function is built)."""
    scan_steps.SPLIT_MODE, scan_steps.ENABLED = split_mode, compiled
    dtype, hidden = case["dtype"], case["H"]
    rng = np.random.default_rng(case["seed"] + 1)
    W = gn.shared((0.5 * rng.standard_normal((case["I"], hidden))).astype(dtype), name="W")
    U = gn.shared((0.5 * rng.standard_normal((hidden, hidden))).astype(dtype), name="U")
    scale = gn.shared(np.asarray(1.5, dtype), name="scale")
    x = gn.placeholder("x", (None, case["B"], case["I"]), dtype)
    h0 = gn.placeholder("h0", ((2,) if case["two_taps"] else ()) + (case["B"], hidden), dtype)
    act = ACTIVATIONS[case["activation"]][0]

    def step(*args):
        if case["two_taps"]:
            x_t, before, last, *rest = args
            previous = last + 0.5 * before
        else:
            x_t, previous, *rest = args
        pre = gn.dot(x_t, W) + gn.dot(previous, U)
        if case["non_sequence"]:
            pre = pre * rest[-1]
        h = act(pre)
        return [h, h * h] if case["extra_output"] else h

    outputs_info = [dict(initial=h0, taps=[-2, -1])] if case["two_taps"] else [h0]
    if case["extra_output"]:
        outputs_info.append(None)
    outs, _ = gn.scan(step, sequences=x, outputs_info=outputs_info,
                      non_sequences=[scale] if case["non_sequence"] else None,
                      go_backwards=case["backwards"], name="fuzzed")
    hs = outs[0] if case["extra_output"] else outs
    loss = gn.sum(hs * hs) + (gn.sum(outs[1]) if case["extra_output"] else 0)
    fn = gn.function([x, h0], [loss, hs] + list(gn.grad(loss, [W, U, x, h0])), name="fuzz_scan")
    return fn, W.get_value(), U.get_value()


def numpy_recurrence(case, X, H0, W, U):
    """The hidden states of ``case``'s body, step by step in float64."""
    act = ACTIVATIONS[case["activation"]][1]
    if case["two_taps"]:
        before, last = H0[0], H0[1]
    else:
        before, last = None, H0
    states = []
    for x_t in (X[::-1] if case["backwards"] else X):
        previous = last + 0.5 * before if case["two_taps"] else last
        pre = x_t @ W + previous @ U
        h = act(pre * 1.5 if case["non_sequence"] else pre)
        states.append(h)
        before, last = last, h
    return np.array(states)


def check_scan(seed):
    case = scan_case(seed)
    rng = np.random.default_rng(seed + 2)
    dtype, shape = case["dtype"], (case["T"], case["B"], case["I"])
    X = rng.standard_normal(shape).astype(dtype)
    longer = rng.standard_normal((case["T"] + 3,) + shape[1:]).astype(dtype)
    feed = np.asfortranarray(X) if seed % 2 else X[:, ::-1][:, ::-1]   # another memory order, same values
    H0 = rng.standard_normal(((2,) if case["two_taps"] else ()) + (case["B"], case["H"])).astype(dtype)
    saved = scan_steps.SPLIT_MODE, scan_steps.ENABLED
    results, problems = {}, []
    try:
        for label, split_mode, compiled in (("halves", "always", True), ("whole", "0", True), ("host", "0", False)):
            fn, W, U = build_scan(case, split_mode, compiled)
            fn(longer, H0)   # a second frame first
            fn(X, H0)
            fn.wait_compiled()
            for _ in range(scan_steps.HALVES_AFTER_CALLS + 2):
                fn(X, H0)
            fn.wait_compiled()
            results[label] = [np.asarray(v, np.float64) for v in fn(feed, H0)]
            loops = [k for k in fn.kernels if k.kind == "loop"]
            if label == "halves" and case["T"] > 1 and case["B"] >= 16 and not all(k.split for k in loops):
                problems.append(f"scan {case}: the loops did not run in halves ({[(k.name, k.runs) for k in loops]})")
    finally:
        scan_steps.SPLIT_MODE, scan_steps.ENABLED = saved
    tolerance = 2e-4 if dtype == "float32" else 1e-9
    want = numpy_recurrence(case, X.astype(np.float64), H0.astype(np.float64), W.astype(np.float64),
                            U.astype(np.float64))
    if not np.allclose(results["host"][1], want, rtol=tolerance, atol=tolerance):
        problems.append(f"scan {case}: host loop's states differ from NumPy's by "
                        f"{np.abs(results['host'][1] - want).max():.3g}")
    names = ["loss", "states", "dW", "dU", "dx", "dh0"]
    for label in ("halves", "whole"):
        for name, got, reference in zip(names, results[label], results["host"]):
            scale = max(1.0, float(np.abs(reference).max()))
            if got.shape != reference.shape or not np.allclose(got, reference, rtol=10 * tolerance,
                                                                atol=10 * tolerance * scale):
                problems.append(f"scan {case}: {label} loop's {name} differs from the host loop's")
    return problems
