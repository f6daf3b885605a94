"""scan's forward values against NumPy loops, on every backend.

Each graph is built once at module level, so the CPU backend compiles it once.
"""
import numpy as np
import pytest

import graphnet as gn
from graphnet.ops.linalg import Dot
from graphnet.ops.shape import Reshape, Transpose

RNG = np.random.default_rng(19)


# ---------------------------------------------------------------- a cumulative sum with taps
X = gn.placeholder("x", (None, 3))
Y_INIT = gn.placeholder("y_init", (2, 3))
# y[t] = x[t - 1] + 2 x[t] + y[t - 2] - 0.5 y[t - 1]
TAPPED, _ = gn.scan(lambda x_prev, x_now, y2, y1: x_prev + 2 * x_now + y2 - 0.5 * y1,
                    sequences=dict(input=X, taps=[-1, 0]),
                    outputs_info=dict(initial=Y_INIT, taps=[-2, -1]), name="tapped")


def numpy_tapped(x, y_init):
    y = [y_init[0], y_init[1]]
    for t in range(1, len(x)):   # tap -1 of x: the loop starts at x[1]
        y.append(x[t - 1] + 2 * x[t] + y[-2] - 0.5 * y[-1])
    return np.array(y[2:])


def test_a_cumulative_sum_with_taps_on_the_sequence_and_the_output(run, backend):
    x, y0 = RNG.standard_normal((6, 3)).astype("float32"), RNG.standard_normal((2, 3)).astype("float32")
    got = run(TAPPED, {X: x, Y_INIT: y0}, backend)
    assert got.shape == (5, 3), "taps [-1, 0] on 6 values leave 5 steps"
    np.testing.assert_allclose(got, numpy_tapped(x, y0), rtol=1e-5, atol=1e-5)


def test_a_plain_cumulative_sum_is_numpys_cumsum(run, backend):
    total, updates = gn.scan(lambda x_t, acc: acc + x_t, sequences=X, outputs_info=X[0] * 0)
    assert updates == {}
    x = RNG.standard_normal((4, 3)).astype("float32")
    np.testing.assert_allclose(run(total, {X: x}, "reference"), np.cumsum(x, axis=0), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- an Elman RNN
SEQ = gn.placeholder("seq", (None, 2, 3))
H0 = gn.placeholder("h0", (2, 4))
WX = gn.shared(RNG.standard_normal((3, 4)).astype("float32"), name="Wx")
WH = gn.shared((0.5 * RNG.standard_normal((4, 4))).astype("float32"), name="Wh")
B = gn.shared(RNG.standard_normal(4).astype("float32"), name="b")


def elman_step(x_t, h):
    return gn.tanh(gn.dot(x_t, WX) + gn.dot(h, WH) + B)


ELMAN, _ = gn.scan(elman_step, sequences=SEQ, outputs_info=H0, name="elman")


def numpy_elman(x, h, wx, wh, b, backwards=False):
    out = []
    for x_t in (x[::-1] if backwards else x):
        h = np.tanh(x_t @ wx + h @ wh + b)
        out.append(h)
    return np.array(out)


def test_an_elman_rnn_matches_a_numpy_loop(run, backend):
    x, h0 = RNG.standard_normal((5, 2, 3)).astype("float32"), RNG.standard_normal((2, 4)).astype("float32")
    expected = numpy_elman(x, h0, WX.get_value(), WH.get_value(), B.get_value())
    np.testing.assert_allclose(run(ELMAN, {SEQ: x, H0: h0}, backend), expected, rtol=1e-5, atol=1e-5)


BACKWARDS, _ = gn.scan(elman_step, sequences=SEQ, outputs_info=H0, go_backwards=True, name="backwards")


def test_go_backwards_reads_the_sequence_from_its_end(run, backend):
    x, h0 = RNG.standard_normal((4, 2, 3)).astype("float32"), RNG.standard_normal((2, 4)).astype("float32")
    expected = numpy_elman(x, h0, WX.get_value(), WH.get_value(), B.get_value(), backwards=True)
    np.testing.assert_allclose(run(BACKWARDS, {SEQ: x, H0: h0}, backend), expected, rtol=1e-5, atol=1e-5)


def test_loop_invariant_values_and_input_products_are_computed_once_outside_the_loop(run):
    out, _ = gn.scan(lambda x_t, h: gn.tanh(gn.dot(x_t, WX) + gn.dot(h, WH.T)), sequences=SEQ, outputs_info=H0)
    scan_node = out.owner.inputs[0].owner
    body_ops = [type(n.op) for n in scan_node.op.body.nodes()]
    assert Transpose not in body_ops, "Wh.T is loop-invariant: computed once"
    assert body_ops.count(Dot) == 1, "x_t @ Wx for every t is one product before the loop; h @ Wh.T stays"
    products = [v for v in scan_node.inputs if v.owner and isinstance(v.owner.op, Reshape)]
    assert len(products) == 1 and products[0].owner.inputs[0].owner.op == Dot()
    x, h0 = RNG.standard_normal((3, 2, 3)).astype("float32"), RNG.standard_normal((2, 4)).astype("float32")
    h, want = h0, []
    for x_t in x:
        h = np.tanh(x_t @ WX.get_value() + h @ WH.get_value().T)
        want.append(h)
    np.testing.assert_allclose(run(out, {SEQ: x, H0: h0}, "reference"), want, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- an LSTM (two states)
N_IN, N_HID = 3, 4
W = gn.shared((0.4 * RNG.standard_normal((N_IN, 4 * N_HID))).astype("float32"), name="W")
U = gn.shared((0.4 * RNG.standard_normal((N_HID, 4 * N_HID))).astype("float32"), name="U")
BL = gn.shared((0.1 * RNG.standard_normal(4 * N_HID)).astype("float32"), name="b_lstm")
C0 = gn.placeholder("c0", (2, 4))


def lstm_step(x_t, h, c):
    z = gn.dot(x_t, W) + gn.dot(h, U) + BL
    i, f = gn.sigmoid(z[:, :N_HID]), gn.sigmoid(z[:, N_HID:2 * N_HID])
    o, g = gn.sigmoid(z[:, 2 * N_HID:3 * N_HID]), gn.tanh(z[:, 3 * N_HID:])
    c_new = f * c + i * g
    return [o * gn.tanh(c_new), c_new]


(LSTM_H, LSTM_C), _ = gn.scan(lstm_step, sequences=SEQ, outputs_info=[H0, C0], name="lstm")


def test_an_lstm_with_two_states_matches_a_numpy_loop(run, backend, numpy_lstm):
    x = RNG.standard_normal((5, 2, 3)).astype("float32")
    h0, c0 = RNG.standard_normal((2, 4)).astype("float32"), RNG.standard_normal((2, 4)).astype("float32")
    got_h, got_c = run([LSTM_H, LSTM_C], {SEQ: x, H0: h0, C0: c0}, backend)
    want_h, want_c = numpy_lstm(x, h0, c0, W.get_value(), U.get_value(), BL.get_value())
    np.testing.assert_allclose(got_h, want_h, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_c, want_c, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- n_steps, outputs not fed back
A = gn.placeholder("A", (3, 3))
V0 = gn.placeholder("v0", (3,))
K = gn.placeholder("k", (), "int64")
POWERS, _ = gn.scan(lambda v, a: gn.dot(a, v), outputs_info=V0, non_sequences=A, n_steps=K, name="powers")


@pytest.mark.parametrize("k", [3, 1, 0])
def test_a_symbolic_n_steps_without_sequences(run, backend, k):
    a, v0 = RNG.standard_normal((3, 3)).astype("float32"), RNG.standard_normal(3).astype("float32")
    want, v = [], v0
    for _ in range(k):
        v = a @ v
        want.append(v)
    got = run(POWERS, {A: a, V0: v0, K: np.int64(k)}, backend)
    assert got.shape == (k, 3)
    np.testing.assert_allclose(got, np.array(want).reshape(k, 3), rtol=1e-5, atol=1e-5)


# state h and a stacked output 2h + x (outputs_info None), three steps of a longer sequence
MIXED = gn.scan(lambda x_t, h: [gn.tanh(h + x_t), 2 * h + x_t], sequences=X, outputs_info=[X[0] * 0, None],
                n_steps=3, name="mixed")[0]


def test_outputs_not_fed_back_are_stacked_and_n_steps_takes_a_prefix(run, backend):
    x = RNG.standard_normal((5, 3)).astype("float32")
    h, states, stacked = np.zeros(3, "float32"), [], []
    for x_t in x[:3]:
        stacked.append(2 * h + x_t)
        h = np.tanh(h + x_t)
        states.append(h)
    got_states, got_stacked = run(MIXED, {X: x}, backend)
    np.testing.assert_allclose(got_states, states, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_stacked, stacked, rtol=1e-5, atol=1e-6)


def test_theanos_map_reduce_and_folds_are_scans():
    from graphnet.compat import theano
    x = gn.placeholder("x_fold", (4, 3))
    doubled, _ = theano.map(lambda r: r * 2, sequences=x)
    total, _ = theano.reduce(lambda r, acc: acc + r, sequences=x, outputs_info=x[0] * 0)
    left, _ = theano.foldl(lambda r, acc: acc * 0.5 + r, sequences=x, outputs_info=x[0] * 0)
    right, _ = theano.foldr(lambda r, acc: acc * 0.5 + r, sequences=x, outputs_info=x[0] * 0)
    value = RNG.standard_normal((4, 3)).astype("float32")
    got = gn.function([x], [doubled, total, left, right], backend="reference")(value)

    def fold(rows):
        acc = np.zeros(3, "float32")
        for r in rows:
            acc = acc * 0.5 + r
        return acc

    for g, want in zip(got, [2 * value, value.sum(0), fold(value), fold(value[::-1])]):
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6)


def test_unread_outputs_are_dropped_and_a_state_read_at_its_end_keeps_only_its_last_value(run):
    from graphnet.ops.scan import Scan
    (states, unread, kept), _ = gn.scan(lambda x_t, h: [gn.tanh(h + x_t), h * 3, h + 1], sequences=X,
                                        outputs_info=[X[0] * 0, None, None], name="pruned")
    outputs = [states[-1], kept]
    fn = gn.function([X], outputs)
    loop = next(n for n in fn.fgraph.nodes() if isinstance(n.op, Scan))
    assert loop.op.n_stacked == 1, "h * 3 is read by nothing: not computed"
    assert loop.op.last_only == (True,), "only the final state is read: a window, not every step"
    x = RNG.standard_normal((5, 3)).astype("float32")
    for got, want in zip(fn(x), run(outputs, {X: x}, "reference")):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
