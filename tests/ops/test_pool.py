"""pool_2d (Theano's contract) against Theano's own region-by-region definition,
its gradients against finite differences and PyTorch, and its errors.

The oracle follows ``theano.tensor.signal.pool.Pool.perform``: pad with zeros,
then for every output pixel reduce the region ``[j*stride, j*stride + ws)``
clipped to the padded image and, except for ``average_inc_pad``, to the real
image as well (so padding never wins a max and does not count in
``average_exc_pad``). Inputs are distinct values: max pooling has no ties.
"""
import os

import numpy as np
import pytest

import graphnet as gn
from graphnet.ops.pool import AveragePool2DGrad, MaxPool2DGrad, Pool2D

MODES = ("max", "sum", "average_inc_pad", "average_exc_pad")
X = np.random.default_rng(21).permutation(2 * 3 * 7 * 6).reshape(2, 3, 7, 6) / 50.0 - 2.0


def theano_out_size(size, ws, stride, pad, ignore_border):
    if ignore_border:
        return (size + 2 * pad - ws) // stride + 1
    if stride >= ws:
        return (size - 1) // stride + 1
    return max(0, (size - 1 - ws + stride) // stride) + 1


def region_pool(x, ws, ignore_border=True, stride=None, pad=(0, 0), mode="max"):
    """Theano's Pool.perform, one region at a time."""
    stride = stride or ws
    rows, cols = x.shape[-2:]
    image = (rows + 2 * pad[0], cols + 2 * pad[1])
    padded = np.zeros(x.shape[:-2] + image)
    padded[..., pad[0]:pad[0] + rows, pad[1]:pad[1] + cols] = x
    out_hw = [theano_out_size(s, w, st, p, ignore_border) for s, w, st, p in zip((rows, cols), ws, stride, pad)]
    regions = []
    for axis in range(2):
        spans = []
        for j in range(out_hw[axis]):
            start, end = j * stride[axis], min(j * stride[axis] + ws[axis], image[axis])
            if mode != "average_inc_pad":
                start, end = max(start, pad[axis]), min(end, image[axis] - pad[axis])
            spans.append(slice(start, end))
        regions.append(spans)
    reduce = {"max": np.max, "sum": np.sum}.get(mode, np.mean)
    out = np.zeros(x.shape[:-2] + tuple(out_hw))
    for i, rs in enumerate(regions[0]):
        for j, cs in enumerate(regions[1]):
            out[..., i, j] = reduce(padded[..., rs, cs], axis=(-2, -1))
    return out


CONFIGS = [
    dict(ws=(2, 2)),                                            # windows tiling the image, a row left over
    dict(ws=(3, 3)),                                            # tiled, not 2x2: the kernels' tiled loops
    dict(ws=(3, 2)),                                            # tiled, two columns a window
    dict(ws=(3, 2), ignore_border=False),                       # truncated windows at the edges
    dict(ws=(3, 3), stride=(2, 1), pad=(1, 1)),
    dict(ws=(3, 2), ignore_border=False, stride=(1, 2)),        # overlapping, stride < ws
    dict(ws=(2, 3), stride=(1, 1), pad=(1, 2)),
]
CASES = [dict(config, mode=mode) for mode in MODES for config in CONFIGS]
_x = gn.placeholder("x", (None, 3, 7, 6), "float64")
GRAPHS = [gn.nn.pool_2d(_x, **case) for case in CASES]
IDS = ["-".join(str(v) for v in case.values()) for case in CASES]


@pytest.mark.parametrize("case", range(len(CASES)), ids=IDS)
def test_pool_2d_equals_theanos_region_definition(case, backend, run):
    out = run(GRAPHS[case], {_x: X}, backend)
    expected = region_pool(X, **CASES[case])
    assert out.shape == expected.shape and GRAPHS[case].type.shape[1:] == expected.shape[1:]
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_pools_the_last_two_axes_of_any_rank(backend, run):
    x = gn.placeholder("x2", (5, 4), "float64")
    value = X[0, 0, :5, :4]
    out = run(gn.nn.pool_2d(x, (2, 2), mode="sum"), {x: value}, backend)
    np.testing.assert_allclose(out, region_pool(value, (2, 2), mode="sum"))


@pytest.mark.parametrize("case", range(len(CASES)), ids=IDS)
def test_gradients_match_finite_differences(case, backend):
    x = gn.placeholder("x", (2, 3, 7, 6), "float64")
    out = gn.nn.pool_2d(x, **CASES[case])
    cost = gn.sum(out * np.random.default_rng(case).normal(size=out.type.shape))
    report = gn.check_grad(cost, x, feed={x: X}, backend=backend)
    assert report.passed, report


def test_max_pooling_ties_share_the_gradient_as_theano():
    x = np.ones((1, 1, 2, 2))
    op = MaxPool2DGrad((2, 2), True, (2, 2), (0, 0), "max")
    dx, = op.perform([x, np.ones((1, 1, 1, 1)), np.full((1, 1, 1, 1), 3.0)])
    np.testing.assert_array_equal(dx[0, 0], np.full((2, 2), 3.0))


@pytest.mark.parametrize("ws", [(2, 2), (3, 3)])
def test_compiled_max_pooling_keeps_ties_and_nans_as_the_reference(ws):
    """The kernels' loops for windows tiling the image (the 2x2 one compares in pairs) against
    the reference's: a tie sends the gradient to each tied pixel, a NaN wins its window and
    takes no gradient, rows and columns past the last window get none."""
    rng = np.random.default_rng(5)
    value = rng.integers(-2, 3, size=(2, 3, 7, 8)).astype(np.float32)   # many ties, zeros of both signs
    value[0, 0, 0, 0] = np.nan
    value[1, 2, 4, 5] = -0.0
    x = gn.placeholder("xt", (None, 3, 7, 8), "float32")
    g = gn.placeholder("gt", (None, 3) + tuple(n // w for n, w in zip((7, 8), ws)), "float32")
    out = gn.nn.pool_2d(x, ws)
    dx = gn.grad(gn.sum(out * g), x)
    fn = gn.function([x, g], [out, dx])
    g_value = rng.normal(size=(2, 3, 7 // ws[0], 8 // ws[1])).astype(np.float32)
    got_out, got_dx = fn(value, g_value)
    op = Pool2D(ws, True, ws, (0, 0), "max")
    want_out = op.perform([value])[0]
    want_dx = MaxPool2DGrad(*op._props()).perform([value, want_out, g_value])[0]
    np.testing.assert_array_equal(got_out, want_out)
    np.testing.assert_array_equal(got_dx, want_dx)
    assert np.isnan(got_out[0, 0, 0, 0]) and not got_dx[0, 0, :ws[0], :ws[1]].any()


def test_average_pooling_gradient_has_a_gradient_of_its_own():
    x = gn.placeholder("x", (1, 2, 5, 5), "float64")
    out = gn.nn.pool_2d(x, (3, 3), stride=(2, 2), pad=(1, 1), mode="average_exc_pad")
    dx = gn.grad(gn.sum(out * out), x)
    assert isinstance(dx.owner.op, AveragePool2DGrad)
    report = gn.check_grad(gn.sum(dx * dx), x, feed={x: X[:1, :2, :5, :5]})
    assert report.passed, report


@pytest.mark.parametrize("mode", MODES)
def test_forward_and_gradient_match_pytorch(mode):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    xt = torch.tensor(X, requires_grad=True)
    if mode == "max":
        yt = F.max_pool2d(xt, (3, 3), stride=(2, 1), padding=(1, 1))
    elif mode == "sum":
        yt = F.avg_pool2d(xt, (3, 3), stride=(2, 1), padding=(1, 1), count_include_pad=True) * 9
    else:
        yt = F.avg_pool2d(xt, (3, 3), stride=(2, 1), padding=(1, 1), count_include_pad=mode == "average_inc_pad")
    g = np.random.default_rng(4).normal(size=tuple(yt.shape))
    yt.backward(torch.tensor(g))
    op = Pool2D((3, 3), True, (2, 1), (1, 1), mode)
    out = op.perform([X])[0]
    np.testing.assert_allclose(out, yt.detach().numpy(), rtol=1e-12)
    dx = (MaxPool2DGrad(*op._props()).perform([X, out, g]) if mode == "max"
          else AveragePool2DGrad(*op._props()).perform([X, g]))[0]
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ bad input
def test_window_larger_than_the_input_names_the_shapes_and_the_line():
    x = gn.placeholder("x", (None, 1, 3, 8))
    with pytest.raises(gn.ShapeError, match=r"pool_2d: the window \(4, 2\) is larger than the padded input "
                                            r"\(\?, 1, 3, 8\).*built at .*test_pool.py:\d+"):
        gn.nn.pool_2d(x, (4, 2))
    assert gn.nn.pool_2d(x, (4, 2), ignore_border=False).shape == (None, 1, 1, 4)


def test_bad_parameters_are_refused():
    x = gn.placeholder("x", (None, 1, 8, 8))
    with pytest.raises(gn.GraphnetError, match="mode must be one of max, sum"):
        gn.nn.pool_2d(x, (2, 2), mode="average")
    with pytest.raises(gn.GraphnetError, match="smaller than the window"):
        gn.nn.pool_2d(x, (2, 2), pad=(2, 0))
    with pytest.raises(gn.GraphnetError, match="needs ignore_border=True"):
        gn.nn.pool_2d(x, (2, 2), pad=(1, 1), ignore_border=False)
    with pytest.raises(gn.ShapeError, match="ws must hold ints >= 1"):
        gn.nn.pool_2d(x, (0, 2))
    with pytest.raises(gn.DTypeError, match="floating point"):
        gn.nn.pool_2d(gn.placeholder("xi", (None, 1, 8, 8), "int64"), (2, 2))


def test_run_time_shapes_are_checked_with_the_nodes_line(backend, compiled):
    x = gn.placeholder("x", (None, None, None, None), "float64")
    fn = compiled(gn.nn.pool_2d(x, (3, 3)), [x], backend)
    assert fn(np.zeros((1, 1, 3, 3))).shape == (1, 1, 1, 1)
    with pytest.raises(gn.ShapeError, match=f"larger than the padded input[\\s\\S]*{os.path.basename(__file__)}"):
        fn(np.zeros((1, 1, 2, 5)))
