"""A loop run as two halves of its batch at once (``runtime/split_loop.py``): which bodies may
be split (``runtime/batch_rows.py``), and that the halves compute what the whole loop does."""
import numba
import numpy as np
import pytest

import graphnet as gn
from graphnet.compiler.runtime import scan_steps, threads
from graphnet.compiler.runtime.call_address import address_of

RNG = np.random.default_rng(1907)
T, I, H = 5, 3, 4


def f32(*shape, scale=1.0):
    return (scale * RNG.standard_normal(shape)).astype("float32")


W = gn.shared(f32(I, 4 * H, scale=0.4), name="W")
U = gn.shared(f32(H, 4 * H, scale=0.4), name="U")
BIAS = gn.shared(f32(4 * H, scale=0.1), name="b")


def lstm_step(x_t, h, c):
    z = gn.dot(x_t, W) + gn.dot(h, U) + BIAS
    i, f, o, g = gn.sigmoid(z[:, :H]), gn.sigmoid(z[:, H:2 * H]), gn.sigmoid(z[:, 2 * H:3 * H]), gn.tanh(z[:, 3 * H:])
    c_new = f * c + i * g
    return [o * gn.tanh(c_new), c_new]


def lstm_training(batch):
    """(function of (x, h0, c0) -> [loss, hidden states, dW, dU, db, dx]) of an LSTM."""
    x, h0, c0 = gn.placeholder("x", (None, batch, I)), gn.placeholder("h0", (batch, H)), gn.placeholder("c0", (batch, H))
    (hs, _), _ = gn.scan(lstm_step, sequences=x, outputs_info=[h0, c0], name="lstm")
    loss = gn.sum(hs * hs)
    return gn.function([x, h0, c0], [loss, hs] + list(gn.grad(loss, [W, U, BIAS, x])), name="split")


def run(monkeypatch, mode, batch, feeds):
    monkeypatch.setattr(scan_steps, "SPLIT_MODE", mode)
    fn = lstm_training(batch)
    fn(*feeds)
    fn.wait_compiled()
    return fn, fn(*feeds)


@pytest.mark.parametrize("batch", [16, 17])
def test_an_lstm_split_in_two_halves_of_its_batch_matches_the_whole_loop_and_numpy(monkeypatch, numpy_lstm, batch):
    feeds = [f32(T, batch, I), f32(batch, H), f32(batch, H)]
    split, got = run(monkeypatch, "always", batch, feeds)
    whole, want = run(monkeypatch, "0", batch, feeds)
    loops = [k for k in split.kernels if k.kind == "loop"]
    assert len(loops) == 2 and all(k.split for k in loops) and all(k.runs == "compiled loop" for k in loops)
    assert not any(k.split for k in whole.kernels if k.kind == "loop")
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    hs, _ = numpy_lstm_gates_in_this_order(numpy_lstm, feeds)
    np.testing.assert_allclose(got[1], hs, rtol=1e-5, atol=1e-5)


def test_the_halves_call_the_loop_by_address_for_one_signature_only(monkeypatch):
    # both() passes the loop arguments of the types the address was taken for: once ready, its
    # dispatcher compiles no other signature (a TypeError, not arguments of the wrong layout)
    feeds = [f32(T, 16, I), f32(16, H), f32(16, H)]
    fn, _ = run(monkeypatch, "always", 16, feeds)
    runners = [r for step in fn.program.steps for r in getattr(step, "_loops", {}).values()]
    halves = [r.halves for r in runners if r.halves is not None]
    assert len(halves) == 2 and all(h.ready() and h.address for h in halves)
    h = halves[0]
    assert h.address == address_of(h.loop, h.signature)
    with pytest.raises(TypeError):
        h.function(h.address, *([np.zeros(3)] * (2 * len(h.signature))))


def numpy_lstm_gates_in_this_order(numpy_lstm, feeds):
    """The oracle's gate order is i, f, o, g (as here); its bias is added to every step."""
    return numpy_lstm(feeds[0], feeds[1], feeds[2], W.get_value(), U.get_value(), BIAS.get_value())


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two threads")
def test_who_takes_the_second_core_is_measured_over_whole_calls_and_both_agree(monkeypatch):
    # BLAS threads for the large products, or the loops' halves with every product on one
    # thread: the frame's first calls alternate the two (threads.cores_choice)
    monkeypatch.setattr(threads.Neighbours, "crowded", lambda self, now: False)   # a quiet machine
    monkeypatch.setattr(threads, "CORES_WARM_CALLS", 2)
    monkeypatch.setattr(threads, "CORES_SETTLE_S", 0.0)
    monkeypatch.setattr(scan_steps, "HALVES_AFTER_CALLS", 1)   # the halves compile from the first call
    feeds = [f32(T, 16, I), f32(16, H), f32(16, H)]
    before = threads.num_threads()
    gn.set_num_threads(2)
    try:
        fn, first = run(monkeypatch, "1", 16, feeds)
        fn.wait_compiled()   # the halves, which the compiled loop's first call started
        seen, results = set(), []
        for _ in range(threads.CORES_WARM_CALLS + 2 * (threads.MeasuredChoice.SAMPLES + 2)):
            results.append(fn(*feeds))
            seen.add(tuple(k.split for k in fn.kernels if k.kind == "loop"))
    finally:
        gn.set_num_threads(before)
    assert (True, True) in seen and (False, False) in seen
    for got in results:
        for g, w in zip(got, first):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_a_one_step_sequence_runs_whole_and_right(monkeypatch):
    # one step: a half's view is C-contiguous, not the type the halves were compiled for
    feeds = [f32(1, 16, I), f32(16, H), f32(16, H)]
    split, got = run(monkeypatch, "always", 16, feeds)
    assert not any(k.split for k in split.kernels if k.kind == "loop")
    _, want = run(monkeypatch, "0", 16, feeds)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_a_batch_too_small_to_halve_runs_whole(monkeypatch):
    feeds = [f32(T, 8, I), f32(8, H), f32(8, H)]
    fn, _ = run(monkeypatch, "always", 8, feeds)
    assert not any(k.split for k in fn.kernels if k.kind == "loop")


# ------------------------------------------------------------- which bodies split
def refusal(step_fn, outputs_info, sequences):
    out, _ = gn.scan(step_fn, sequences=sequences, outputs_info=outputs_info, name="probe")
    fn = gn.function([sequences], out)
    (step,) = [s for s in fn.program.steps if getattr(s, "body", None) is not None]
    return step.split_refusal()


SEQ = gn.placeholder("seq", (T, 16, H))
H0 = gn.constant(np.zeros((16, H), np.float32))


def test_an_elementwise_and_product_body_keeps_rows_apart():
    assert refusal(lambda x_t, h: gn.tanh(gn.dot(x_t + h, U[:, :H]) + BIAS[:H]), H0, SEQ) is None


@pytest.mark.parametrize("body, why", [
    (lambda x_t, h: h + gn.sum(x_t, axis=0), "reduces over the batch"),
    (lambda x_t, h: h + x_t[::-1], "slices the batch axis"),
    (lambda x_t, h: h + gn.dot(gn.transpose(x_t), x_t)[:1], "no rule says it keeps rows apart"),
    (lambda x_t, h: h + gn.mean(x_t, axis=0, keepdims=True), "reduces over the batch"),
])
def test_a_body_mixing_rows_is_not_split_and_says_where(body, why):
    found = refusal(body, H0, SEQ)
    assert found is not None and why in found
