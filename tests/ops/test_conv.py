"""conv2d (Theano's contract) against a direct nested-loop convolution, its gradients
against finite differences and PyTorch autograd, and its errors.

The oracle is the definition, written out loop by loop: with ``filter_flip=True``
output pixel (i, j) sums ``x_padded[i*s + a*d, j*s + b*d] * w[kh-1-a, kw-1-b]``
(a true convolution), with ``False`` the filter is read unflipped
(cross-correlation, as PyTorch and JAX). ``scipy.signal.convolve2d`` checks
the meaning of the flip independently. Shapes are tiny; every graph is built
once and run on every backend.
"""
import os

import numpy as np
import pytest

import graphnet as gn
from graphnet.ops.conv import Conv2D, Conv2DGradFilters, Conv2DGradInput

RNG = np.random.default_rng(20)
X = RNG.normal(size=(2, 3, 7, 6))
W = RNG.normal(size=(4, 3, 3, 2))


def padding_of(border_mode, filter_hw, dilation):
    extent = [(k - 1) * d + 1 for k, d in zip(filter_hw, dilation)]
    if border_mode == "valid":
        return 0, 0
    if border_mode == "full":
        return extent[0] - 1, extent[1] - 1
    if border_mode == "half":
        return extent[0] // 2, extent[1] // 2
    return (border_mode, border_mode) if isinstance(border_mode, int) else tuple(border_mode)


def loop_conv2d(x, w, border_mode="valid", subsample=(1, 1), filter_flip=True, filter_dilation=(1, 1)):
    """The definition of Theano's conv2d, one multiply-add at a time."""
    n, c, rows, cols = x.shape
    o, _, kh, kw = w.shape
    ph, pw = padding_of(border_mode, (kh, kw), filter_dilation)
    (sh, sw), (dh, dw) = subsample, filter_dilation
    padded = np.zeros((n, c, rows + 2 * ph, cols + 2 * pw))
    padded[:, :, ph:ph + rows, pw:pw + cols] = x
    out_rows = (rows + 2 * ph - (kh - 1) * dh - 1) // sh + 1
    out_cols = (cols + 2 * pw - (kw - 1) * dw - 1) // sw + 1
    out = np.zeros((n, o, out_rows, out_cols))
    for b_ in range(n):
        for oc in range(o):
            for i in range(out_rows):
                for j in range(out_cols):
                    total = 0.0
                    for ic in range(c):
                        for a in range(kh):
                            for b in range(kw):
                                tap = w[oc, ic, kh - 1 - a, kw - 1 - b] if filter_flip else w[oc, ic, a, b]
                                total += padded[b_, ic, i * sh + a * dh, j * sw + b * dw] * tap
                    out[b_, oc, i, j] = total
    return out


# ------------------------------------------------------------------ forward
FORWARD_CASES = [
    dict(border_mode=mode, subsample=stride, filter_flip=flip, filter_dilation=dilation)
    for mode in ("valid", "full", "half", 1, (2, 1))
    for stride in ((1, 1), (2, 3))
    for dilation in ((1, 1), (2, 1))
    for flip in (True, False)
]
_x = gn.placeholder("x", (None, 3, 7, 6), "float64")
_w = gn.placeholder("w", (4, 3, 3, 2), "float64")
FORWARD_GRAPHS = {i: gn.nn.conv2d(_x, _w, **case) for i, case in enumerate(FORWARD_CASES)}


@pytest.mark.parametrize("case", range(len(FORWARD_CASES)),
                         ids=[f"{c['border_mode']}-s{c['subsample']}-d{c['filter_dilation']}-flip{c['filter_flip']}"
                              for c in FORWARD_CASES])
def test_conv2d_equals_the_nested_loop_definition(case, backend, run):
    out = run(FORWARD_GRAPHS[case], {_x: X, _w: W}, backend)
    expected = loop_conv2d(X, W, **FORWARD_CASES[case])
    assert out.shape == expected.shape
    assert FORWARD_GRAPHS[case].type.shape[1:] == expected.shape[1:]  # the static shape was right too
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10)


def test_static_output_shape_is_inferred_for_every_border_mode():
    x = gn.placeholder("x", (None, 3, 7, 6))
    w = gn.placeholder("w", (4, 3, 3, 2))
    assert gn.nn.conv2d(x, w).shape == (None, 4, 5, 5)
    assert gn.nn.conv2d(x, w, border_mode="full").shape == (None, 4, 9, 7)
    assert gn.nn.conv2d(x, w, border_mode="half").shape == (None, 4, 7, 7)
    assert gn.nn.conv2d(x, w, border_mode=(1, 0), subsample=2).shape == (None, 4, 4, 3)
    assert gn.nn.conv2d(x, w, filter_dilation=2).shape == (None, 4, 3, 4)


def test_filter_flip_true_is_scipys_convolution_and_false_its_correlation():
    from scipy.signal import convolve2d, correlate2d
    x, w = X[:1, :1], W[:1, :1]
    flipped = Conv2D("full", filter_flip=True).perform([x, w])[0][0, 0]
    unflipped = Conv2D("full", filter_flip=False).perform([x, w])[0][0, 0]
    np.testing.assert_allclose(flipped, convolve2d(x[0, 0], w[0, 0], mode="full"), rtol=1e-12)
    np.testing.assert_allclose(unflipped, correlate2d(x[0, 0], w[0, 0], mode="full"), rtol=1e-12)


def test_float32_stays_float32(backend, run):
    x = gn.placeholder("x32", (None, 1, 5, 5))
    w = gn.shared(np.ones((2, 1, 3, 3), "float32"), name="w32")
    out = run(gn.nn.conv2d(x, w), {x: np.ones((1, 1, 5, 5), "float32")}, backend)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.full((1, 2, 3, 3), 9, "float32"))


# ------------------------------------------------------------------ gradients
GRAD_CASES = [
    dict(border_mode="valid"),
    dict(border_mode="full", filter_flip=False),
    dict(border_mode="half", subsample=(2, 2)),
    dict(border_mode=(1, 2), subsample=(2, 1), filter_dilation=(2, 1)),
    dict(border_mode="valid", subsample=(3, 2), filter_dilation=(1, 2), filter_flip=False),  # rows left unread
]


@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_gradients_match_finite_differences(case, backend):
    x = gn.placeholder("x", (2, 3, 7, 6), "float64")
    w = gn.shared(W, name="w")
    out = gn.nn.conv2d(x, w, **case)
    weights = np.random.default_rng(1).normal(size=out.type.shape)
    cost = gn.sum(out * weights)
    report = gn.check_grad(cost, [x, w], feed={x: X}, backend=backend)
    assert report.passed, report


def test_second_derivatives_flow_through_the_gradient_ops():
    # d/dw of |dcost/dx|^2 reads Conv2DGradInput's own gradient (Conv2DGradFilters and Conv2D).
    x = gn.placeholder("x", (1, 2, 5, 4), "float64")
    w = gn.shared(RNG.normal(size=(3, 2, 2, 3)), name="w")
    out = gn.nn.conv2d(x, w, border_mode="half", subsample=(2, 1))
    inner = gn.sum(out * np.random.default_rng(2).normal(size=out.type.shape)) + gn.sum(out * out)
    dx = gn.grad(inner, x)
    dw = gn.grad(inner, w)
    outer = gn.sum(dx * dx) + gn.sum(dw * x.sum() * dw)
    report = gn.check_grad(outer, [w, x], feed={x: RNG.normal(size=(1, 2, 5, 4))})
    assert report.passed, report


def test_gradient_ops_are_ordinary_nodes_of_the_backward_graph():
    x = gn.placeholder("x", (None, 3, 7, 6), "float64")
    w = gn.shared(W, name="w")
    dx, dw = gn.grad(gn.sum(gn.nn.conv2d(x, w, border_mode="half")), [x, w])
    assert isinstance(dx.owner.op, Conv2DGradInput) and isinstance(dw.owner.op, Conv2DGradFilters)
    assert dx.owner.op.border_mode == dw.owner.op.border_mode == "half"
    assert dx.shape == (None, 3, 7, 6) and dw.shape == (4, 3, 3, 2)


@pytest.mark.parametrize("case", GRAD_CASES + [dict(border_mode="valid", filter_flip=True)],
                         ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_forward_and_gradients_match_pytorch_autograd(case):
    torch = pytest.importorskip("torch")
    params = dict(dict(border_mode="valid", subsample=(1, 1), filter_flip=True, filter_dilation=(1, 1)), **case)
    pads = padding_of(params["border_mode"], W.shape[2:], params["filter_dilation"])
    xt = torch.tensor(X, requires_grad=True)
    wt = torch.tensor(W, requires_grad=True)
    # PyTorch cross-correlates: a true convolution reads the filters flipped.
    taps = torch.flip(wt, dims=(2, 3)) if params["filter_flip"] else wt
    yt = torch.nn.functional.conv2d(xt, taps, padding=pads, stride=params["subsample"],
                                    dilation=params["filter_dilation"])
    g = np.random.default_rng(3).normal(size=tuple(yt.shape))
    yt.backward(torch.tensor(g))
    op_params = (params["border_mode"], params["subsample"], params["filter_flip"], params["filter_dilation"])
    np.testing.assert_allclose(Conv2D(*op_params).perform([X, W])[0], yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(Conv2DGradInput(*op_params).perform([W, g, X])[0], xt.grad.numpy(), rtol=1e-10,
                               atol=1e-10)
    np.testing.assert_allclose(Conv2DGradFilters(*op_params).perform([X, g, W])[0], wt.grad.numpy(), rtol=1e-10,
                               atol=1e-10)


# ------------------------------------------------------------------ bad input
HERE = os.path.basename(__file__)


def test_channel_mismatch_names_the_op_both_shapes_and_the_line():
    x = gn.placeholder("x", (None, 3, 8, 8))
    w = gn.placeholder("w", (4, 2, 3, 3))
    with pytest.raises(gn.ShapeError) as excinfo:
        gn.nn.conv2d(x, w)
    message = str(excinfo.value)
    assert "conv2d" in message and "(?, 3, 8, 8)" in message and "(4, 2, 3, 3)" in message
    assert "input channels (3 vs 2)" in message and f"{HERE}:" in message


def test_filters_larger_than_the_padded_input_are_refused_at_build_time():
    x = gn.placeholder("x", (None, 1, 4, 4))
    w = gn.placeholder("w", (2, 1, 5, 3))
    with pytest.raises(gn.ShapeError, match=r"conv2d: the filters \(5 rows.*larger than the padded input \(4 rows\)"
                                            r".*\(\?, 1, 4, 4\).*\(2, 1, 5, 3\).*built at .*test_conv.py:\d+"):
        gn.nn.conv2d(x, w)
    assert gn.nn.conv2d(x, w, border_mode=1).shape == (None, 2, 2, 4)  # padding makes room


def test_dilation_can_make_the_filter_too_large():
    x = gn.placeholder("x", (None, 1, 6, 6))
    w = gn.placeholder("w", (2, 1, 3, 3))
    with pytest.raises(gn.ShapeError, match="with dilation 3"):
        gn.nn.conv2d(x, w, filter_dilation=3)


def test_wrong_ranks_and_dtypes_and_parameters_are_refused():
    w = gn.placeholder("w", (2, 1, 3, 3))
    with pytest.raises(gn.ShapeError, match=r"4-d input.*\(\?, 8, 8\)"):
        gn.nn.conv2d(gn.placeholder("x3", (None, 8, 8)), w)
    with pytest.raises(gn.DTypeError, match="floating point"):
        gn.nn.conv2d(gn.placeholder("xi", (None, 1, 8, 8), "int32"), w)
    x = gn.placeholder("x", (None, 1, 8, 8))
    with pytest.raises(gn.ShapeError, match="border_mode must be one of valid, full, half"):
        gn.nn.conv2d(x, w, border_mode="same")
    with pytest.raises(gn.ShapeError, match="subsample must hold ints >= 1"):
        gn.nn.conv2d(x, w, subsample=0)
    with pytest.raises(gn.ShapeError, match="border_mode must hold ints >= 0"):
        gn.nn.conv2d(x, w, border_mode=(-1, 0))
    with pytest.raises(gn.ShapeError, match=r"filter_shape=\(2, 3, 3, 3\) does not match w"):
        gn.nn.conv2d(x, w, filter_shape=(2, 3, 3, 3))


def test_run_time_shapes_are_checked_with_the_nodes_line(backend, compiled):
    x = gn.placeholder("x", (None, None, None, None), "float64")
    w = gn.placeholder("w", (None, None, None, None), "float64")
    fn = compiled(gn.nn.conv2d(x, w), [x, w], backend)
    with pytest.raises(gn.ShapeError, match=r"input channels \(3 vs 2\)[\s\S]*built at .*test_conv.py:\d+"):
        fn(np.zeros((1, 3, 5, 5)), np.zeros((1, 2, 3, 3)))
    with pytest.raises(gn.ShapeError, match=r"larger than the padded input[\s\S]*test_conv.py"):
        fn(np.zeros((1, 2, 2, 5)), np.zeros((1, 2, 3, 3)))
