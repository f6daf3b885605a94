"""Gradients through scan (backpropagation through time as a reversed scan) against finite
differences (``gn.check_grad``, in float64) and a NumPy BPTT loop for truncate_gradient."""
import numpy as np
import pytest

import graphnet as gn

RNG = np.random.default_rng(7)


def f32(*shape, scale=1.0):
    return (scale * RNG.standard_normal(shape)).astype("float32")


SEQ = gn.placeholder("seq", (None, 2, 3))
H0 = gn.placeholder("h0", (2, 4))
WX = gn.shared(f32(3, 4), name="Wx")
WH = gn.shared(f32(4, 4, scale=0.5), name="Wh")
B = gn.shared(f32(4), name="b")
FEED = {SEQ: f32(5, 2, 3), H0: f32(2, 4)}


def elman_step(x_t, h):
    return gn.tanh(gn.dot(x_t, WX) + gn.dot(h, WH) + B)


def assert_gradients_pass(cost, wrt, feed):
    report = gn.check_grad(cost, wrt, feed)
    assert report.passed, str(report)


def test_an_elman_rnn_gradient_for_sequence_initial_state_and_weights():
    hs, _ = gn.scan(elman_step, sequences=SEQ, outputs_info=H0, name="elman")
    cost = gn.sum(hs ** 2) + gn.sum(hs[-1] * 3)
    assert_gradients_pass(cost, [SEQ, H0, WX, WH, B], FEED)


def test_an_lstm_gradient():
    w, u = gn.shared(f32(3, 16, scale=0.4), name="W"), gn.shared(f32(4, 16, scale=0.4), name="U")
    c0 = gn.placeholder("c0", (2, 4))

    def step(x_t, h, c):
        z = gn.dot(x_t, w) + gn.dot(h, u)
        i, f, o, g = gn.sigmoid(z[:, :4]), gn.sigmoid(z[:, 4:8]), gn.sigmoid(z[:, 8:12]), gn.tanh(z[:, 12:])
        c_new = f * c + i * g
        return [o * gn.tanh(c_new), c_new]

    (hs, cs), _ = gn.scan(step, sequences=SEQ, outputs_info=[H0, c0], name="lstm")
    cost = gn.sum(gn.softplus(hs)) + gn.sum(cs[-1] ** 2)
    assert_gradients_pass(cost, [SEQ, H0, c0, w, u], {**FEED, c0: f32(2, 4)})


def test_taps_on_a_sequence_and_on_an_output_get_their_gradients():
    x, y0 = gn.placeholder("x", (None, 3)), gn.placeholder("y0", (2, 3))
    ys, _ = gn.scan(lambda a, b, y2, y1: gn.tanh(a * b + y2 - 0.5 * y1), sequences=dict(input=x, taps=[-1, 1]),
                    outputs_info=dict(initial=y0, taps=[-2, -1]), name="tapped")
    assert_gradients_pass(gn.sum(ys * ys) + gn.sum(ys[0]), [x, y0], {x: f32(6, 3), y0: f32(2, 3)})


def test_go_backwards_and_an_output_not_fed_back():
    hs, zs = gn.scan(lambda x_t, h: [elman_step(x_t, h), gn.sum(h * x_t[:, :1])], sequences=SEQ,
                     outputs_info=[H0, None], go_backwards=True)[0]
    assert_gradients_pass(gn.sum(hs[1:] ** 2) + gn.sum(zs), [SEQ, H0, WH], FEED)


def test_a_symbolic_n_steps_shorter_than_the_sequence():
    k = gn.placeholder("k", (), "int64")
    hs, _ = gn.scan(elman_step, sequences=SEQ, outputs_info=H0, n_steps=k)
    report = gn.check_grad(gn.sum(hs ** 2), [SEQ, WX], {**FEED, k: np.int64(3)})
    assert report.passed, str(report)
    grads = gn.function([SEQ, H0, k], gn.grad(gn.sum(hs ** 2), SEQ), backend="reference")(
        FEED[SEQ], FEED[H0], np.int64(3))
    assert not grads[3:].any(), "steps past n_steps get no gradient"


def numpy_truncated_bptt(x, h0, wx, wh, b, truncate):
    """dcost/d(x, h0, Wx, Wh) for cost = sum(h_t ** 2), backpropagating ``truncate`` steps back."""
    hs, h = [], h0
    for x_t in x:
        h = np.tanh(x_t @ wx + h @ wh + b)
        hs.append(h)
    n = len(x)
    dx, dwx, dwh, carry = np.zeros_like(x), np.zeros_like(wx), np.zeros_like(wh), np.zeros_like(h0)
    for t in range(n - 1, max(n - truncate, 0) - 1, -1):
        da = (2 * hs[t] + carry) * (1 - hs[t] ** 2)
        previous = hs[t - 1] if t > 0 else h0
        dwx += x[t].T @ da
        dwh += previous.T @ da
        dx[t] = da @ wx.T
        carry = da @ wh.T
    dh0 = carry if truncate >= n else np.zeros_like(h0)
    return dx, dh0, dwx, dwh


STATIC_SEQ = gn.placeholder("static_seq", (5, 2, 3))


@pytest.mark.parametrize("truncate", [2, 5, 9])
@pytest.mark.parametrize("length", ["symbolic", "static"])
def test_truncate_gradient_backpropagates_that_many_steps(run, backend, truncate, length):
    seq = SEQ if length == "symbolic" else STATIC_SEQ
    hs, _ = gn.scan(elman_step, sequences=seq, outputs_info=H0, truncate_gradient=truncate)
    grads = gn.grad(gn.sum(hs ** 2), [seq, H0, WX, WH])
    got = run(grads, {seq: FEED[SEQ], H0: FEED[H0]}, backend)
    want = numpy_truncated_bptt(FEED[SEQ], FEED[H0], WX.get_value(), WH.get_value(), B.get_value(), truncate)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


ELMAN, _ = gn.scan(elman_step, sequences=SEQ, outputs_info=H0, name="elman")
COST = gn.sum(ELMAN ** 2)
GRADS = gn.grad(COST, [SEQ, H0, WX, WH, B])


def test_the_compiled_backward_loop_equals_the_reference(run):
    want = run([COST] + GRADS, FEED, "reference")
    got = run([COST] + GRADS, FEED, "cpu")
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_an_sgd_step_through_scan_lowers_the_loss():
    w = gn.shared(WH.get_value(), name="Wh_trained")
    hs, _ = gn.scan(lambda x_t, h: gn.tanh(gn.dot(x_t, WX) + gn.dot(h, w)), sequences=SEQ, outputs_info=H0)
    cost = gn.mean((hs - 0.5) ** 2)
    step = gn.function([SEQ, H0], cost, updates=[(w, w - 0.5 * gn.grad(cost, w))], backend="reference")
    losses = [float(step(FEED[SEQ], FEED[H0])) for _ in range(5)]
    assert losses[-1] < losses[0]


def test_the_backward_loop_recomputes_nothing_and_sums_weight_gradients_after_the_loop(compiled):
    from graphnet.ops.elementwise import Tanh
    from graphnet.ops.linalg import Dot
    from graphnet.ops.scan import Scan
    fn = compiled([COST] + GRADS, [SEQ, H0], "cpu")
    loops = [n for n in fn.fgraph.nodes() if isinstance(n.op, Scan)]
    assert len(loops) == 2, "one forward loop (the extended one its gradient reads) and one backward"
    forward, backward = sorted(loops, key=lambda n: n.op.reverse)
    body_ops = [type(n.op) for n in backward.op.body.nodes()]
    assert Tanh not in body_ops, "tanh(...) of each step is read from the forward loop's stack"
    assert body_ops.count(Dot) == 1, "per step only dh @ Wh.T; dWx, dWh are one product each after the loop"
    assert backward.op.n_states == 1, "the only carried state is the pending dh, not the weights' sums"


def test_saved_forward_values_and_share_loops(run):
    from graphnet.ops.scan import Scan
    hs, _ = gn.scan(lambda x_t, h: gn.sigmoid(gn.dot(h, WH)) * gn.tanh(gn.dot(x_t, WX)) + 0.5 * h,
                    sequences=SEQ, outputs_info=H0, name="gated")
    cost = gn.sum(hs ** 2)
    outputs = [cost] + gn.grad(cost, [SEQ, H0, WX, WH])
    want = run(outputs, FEED, "reference")
    for disabled, loops in (([], 2), (["share_loops"], 3)):
        fn = gn.function([SEQ, H0], outputs, disable_passes=disabled)
        assert sum(isinstance(n.op, Scan) for n in fn.fgraph.nodes()) == loops, \
            "the gate values the gradient reads come from one forward loop, unless share_loops is off"
        for got, expected in zip(fn(FEED[SEQ], FEED[H0]), want):
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_a_scan_inside_a_scan_and_its_gradient(run, backend):
    x = gn.placeholder("x3", (3, 4, 2))

    def outer(x_t, acc):
        inner, _ = gn.scan(lambda r, a: gn.tanh(a + r * 2), sequences=x_t, outputs_info=acc * 0, name="inner")
        return acc + inner[-1]

    out, _ = gn.scan(outer, sequences=x, outputs_info=gn.constant(np.zeros(2, "float32")), name="outer")
    cost = gn.sum(out ** 2)
    value = f32(3, 4, 2)
    want, a = [], np.zeros(2, "float32")
    for x_t in value:
        h = np.zeros(2, "float32")
        for r in x_t:
            h = np.tanh(h + 2 * r)
        a = a + h
        want.append(a)
    np.testing.assert_allclose(run(out, {x: value}, backend), want, rtol=1e-5, atol=1e-6)
    if backend == "reference":
        assert_gradients_pass(cost, [x], {x: value})
