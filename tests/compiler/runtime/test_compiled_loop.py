"""The compiled loop of a scan (``runtime/compiled_loop.py``): what runs, and that it agrees with
the host loop (``GRAPHNET_COMPILED_LOOP=0``), the reference backend and NumPy loops."""
import numpy as np
import pytest

import graphnet as gn
from graphnet.compiler.runtime import cache, scan_steps
from graphnet.errors import ShapeError

RNG = np.random.default_rng(191)


def f32(*shape, scale=1.0):
    return (scale * RNG.standard_normal(shape)).astype("float32")


SEQ = gn.placeholder("seq", (None, 2, 3))
H0 = gn.placeholder("h0", (2, 4))
C0 = gn.placeholder("c0", (2, 4))
WX = gn.shared(f32(3, 4), name="Wx")
WH = gn.shared(f32(4, 4, scale=0.5), name="Wh")
B = gn.shared(f32(4), name="b")
W = gn.shared(f32(3, 16, scale=0.4), name="W")
U = gn.shared(f32(4, 16, scale=0.4), name="U")
FEED = {SEQ: f32(6, 2, 3), H0: f32(2, 4), C0: f32(2, 4)}


def elman_step(x_t, h):
    return gn.tanh(gn.dot(x_t, WX) + gn.dot(h, WH) + B)


def lstm_step(x_t, h, c):
    z = gn.dot(x_t, W) + gn.dot(h, U)
    i, f, o, g = gn.sigmoid(z[:, :4]), gn.sigmoid(z[:, 4:8]), gn.sigmoid(z[:, 8:12]), gn.tanh(z[:, 12:])
    c_new = f * c + i * g
    return [o * gn.tanh(c_new), c_new]


def numpy_elman(x, h, backwards=False, scale=1.0, bias_sign=1.0):
    """NumPy's ``h = tanh(x_t @ Wx + scale * (h @ Wh) + bias_sign * b)`` over ``x``, stacked."""
    out = []
    for x_t in (x[::-1] if backwards else x):
        h = np.tanh(x_t @ WX.get_value() + scale * (h @ WH.get_value()) + bias_sign * B.get_value())
        out.append(h)
    return np.array(out)


def loops_of(fn):
    return [k for k in fn.kernels if k.kind == "loop"]


def compile_both(inputs, outputs, monkeypatch, **options):
    """(compiled-loop function, host-loop function) of the same graph."""
    compiled = gn.function(inputs, outputs, **options)
    monkeypatch.setattr(scan_steps, "ENABLED", False)
    host = gn.function(inputs, outputs, **options)
    monkeypatch.setattr(scan_steps, "ENABLED", True)
    return compiled, host


def assert_all_close(got, want, rtol=1e-5, atol=1e-5):
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


# ---------------------------------------------------------------- what runs
def test_an_elman_rnn_runs_as_one_compiled_loop_and_matches_numpy(monkeypatch):
    hs, _ = gn.scan(elman_step, sequences=SEQ, outputs_info=H0, name="elman")
    compiled, host = compile_both([SEQ, H0], hs, monkeypatch)
    got, on_host = compiled(FEED[SEQ], FEED[H0]), host(FEED[SEQ], FEED[H0])
    (loop,), (host_loop,) = loops_of(compiled), loops_of(host)
    assert loop.runs == "compiled loop"
    assert host_loop.runs == "host loop (GRAPHNET_COMPILED_LOOP=0)"
    np.testing.assert_allclose(got, numpy_elman(FEED[SEQ], FEED[H0]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, on_host, rtol=1e-6, atol=1e-6)


def test_the_loops_source_is_shown_with_the_body_kernels_and_views_inside_it():
    (hs, _), _ = gn.scan(lstm_step, sequences=SEQ, outputs_info=[H0, C0], name="lstm_source")
    fn = gn.function([SEQ, H0, C0], hs)
    fn(FEED[SEQ], FEED[H0], FEED[C0])
    (loop,) = loops_of(fn)
    source = loop.source
    assert "def loop(" in source and "for i in range(steps):" in source
    assert "gemm_into as f0" in source and "f0(x1, w0, a1, n[0])" in source, \
        "the body's product runs inside the loop, on the BLAS the loop's integer n[0] names"
    assert "[:, :4]" in source and "[:, 12:]" in source, "the gate views are slices inside the loop"
    assert "# the body's kernels:" in source
    assert "NumPy view" not in source.split("# the body's kernels:")[0], "no host step left inside the loop"


def test_zero_d_step_values_run_compiled_as_one_element_views(monkeypatch):
    x, scale = gn.placeholder("x", (None,)), gn.placeholder("scale", ())
    total, _ = gn.scan(lambda x_t, acc, k: acc * k + x_t, sequences=x, outputs_info=gn.constant(np.float32(0)),
                       non_sequences=scale, name="scalar_sum")
    compiled, host = compile_both([x, scale], total, monkeypatch)
    values, k = f32(5), np.float32(0.5)
    got = compiled(values, k)
    assert loops_of(compiled)[0].runs == "compiled loop"
    want, acc = [], 0.0
    for v in values:
        acc = acc * k + v
        want.append(acc)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got, host(values, k), rtol=1e-6, atol=1e-6)


def test_check_numerics_keeps_the_loop_on_the_host_and_says_why():
    hs, _ = gn.scan(elman_step, sequences=SEQ, outputs_info=H0, name="checked")
    fn = gn.function([SEQ, H0], hs, check_numerics=True)
    np.testing.assert_allclose(fn(FEED[SEQ], FEED[H0]), numpy_elman(FEED[SEQ], FEED[H0]), rtol=1e-5, atol=1e-5)
    assert loops_of(fn)[0].runs == "host loop (check_numerics checks the body's values step by step)"


# ---------------------------------------------------------------- agreement
def test_an_lstm_forward_and_gradients_agree_with_the_host_loop_and_the_reference(monkeypatch, numpy_lstm):
    (hs, cs), _ = gn.scan(lstm_step, sequences=SEQ, outputs_info=[H0, C0], name="lstm")
    cost = gn.sum(gn.softplus(hs)) + gn.sum(cs[-1] ** 2)
    outputs = [hs, cs, cost] + gn.grad(cost, [SEQ, H0, C0, W, U])
    inputs = [SEQ, H0, C0]
    compiled, host = compile_both(inputs, outputs, monkeypatch)
    args = [FEED[v] for v in inputs]
    got = compiled(*args)
    assert [k.runs for k in loops_of(compiled)] == ["compiled loop"] * 2, "the forward and the backward loop"
    want_hs, want_cs = numpy_lstm(*args, W.get_value(), U.get_value())
    np.testing.assert_allclose(got[0], want_hs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1], want_cs, rtol=1e-5, atol=1e-5)
    assert_all_close(got, host(*args), rtol=1e-5, atol=1e-6)
    assert_all_close(got, gn.function(inputs, outputs, backend="reference")(*args), rtol=1e-4, atol=1e-5)


def test_taps_on_a_sequence_and_on_a_state_agree_with_numpy_and_the_host_loop(monkeypatch):
    x, y0 = gn.placeholder("x", (None, 3)), gn.placeholder("y0", (2, 3))
    ys, _ = gn.scan(lambda a, b, y2, y1: gn.tanh(a * b + y2 - 0.5 * y1), sequences=dict(input=x, taps=[-1, 1]),
                    outputs_info=dict(initial=y0, taps=[-2, -1]), name="tapped")
    cost = gn.sum(ys * ys)
    outputs = [ys] + gn.grad(cost, [x, y0])
    compiled, host = compile_both([x, y0], outputs, monkeypatch)
    xv, yv = f32(7, 3), f32(2, 3)
    got = compiled(xv, yv)
    assert [k.runs for k in loops_of(compiled)] == ["compiled loop"] * 2
    want, y = [], [yv[0], yv[1]]
    for t in range(1, 6):   # taps -1 and +1 of x leave 5 steps
        y.append(np.tanh(xv[t - 1] * xv[t + 1] + y[-2] - 0.5 * y[-1]))
    np.testing.assert_allclose(got[0], np.array(y[2:]), rtol=1e-5, atol=1e-5)
    assert_all_close(got, host(xv, yv), rtol=1e-5, atol=1e-6)


def test_go_backwards_agrees_with_numpy_and_the_host_loop(monkeypatch):
    hs, _ = gn.scan(elman_step, sequences=SEQ, outputs_info=H0, go_backwards=True, name="backwards")
    outputs = [hs] + gn.grad(gn.sum(hs ** 2), [SEQ, H0, WH])
    compiled, host = compile_both([SEQ, H0], outputs, monkeypatch)
    got = compiled(FEED[SEQ], FEED[H0])
    assert [k.runs for k in loops_of(compiled)] == ["compiled loop"] * 2
    np.testing.assert_allclose(got[0], numpy_elman(FEED[SEQ], FEED[H0], backwards=True), rtol=1e-5, atol=1e-5)
    assert_all_close(got, host(FEED[SEQ], FEED[H0]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("truncate", [2, 9])
def test_truncate_gradient_agrees_with_the_host_loop_and_the_reference(monkeypatch, truncate):
    hs, _ = gn.scan(elman_step, sequences=SEQ, outputs_info=H0, truncate_gradient=truncate, name="truncated")
    grads = gn.grad(gn.sum(hs ** 2), [SEQ, H0, WX, WH])
    compiled, host = compile_both([SEQ, H0], grads, monkeypatch)
    got = compiled(FEED[SEQ], FEED[H0])
    assert all(k.runs == "compiled loop" for k in loops_of(compiled))
    assert_all_close(got, host(FEED[SEQ], FEED[H0]), rtol=1e-5, atol=1e-6)
    assert_all_close(got, gn.function([SEQ, H0], grads, backend="reference")(FEED[SEQ], FEED[H0]), 1e-4, 1e-5)
    if truncate < len(FEED[SEQ]):
        assert not np.asarray(got[0])[:len(FEED[SEQ]) - truncate].any(), "steps past the truncation get nothing"


def test_slice_gradients_that_do_not_tile_and_reshapes_run_inside_the_compiled_loop(monkeypatch):
    def step(x_t, h):
        z = gn.dot(x_t, WX) + gn.dot(h, WH)
        a, b = gn.tanh(z[:, :2]), gn.sigmoid(z[:, 3:])   # column 2 is in neither slice
        return [gn.tanh(z), a * 2, gn.reshape(b, (2,))]

    (hs, as_, bs), _ = gn.scan(step, sequences=SEQ, outputs_info=[H0, None, None], name="gapped")
    cost = gn.sum(hs ** 2) + gn.sum(as_) + gn.sum(bs * 3)
    outputs = [hs, as_, bs] + gn.grad(cost, [SEQ, H0, WH])
    compiled, host = compile_both([SEQ, H0], outputs, monkeypatch)
    got = compiled(FEED[SEQ], FEED[H0])
    forward, backward = loops_of(compiled)
    assert forward.runs == backward.runs == "compiled loop"
    assert ".reshape((" in forward.source
    assert "add_2d(" in backward.source.split("# the body's kernels:")[0], "slice accumulation inside the loop"
    assert_all_close(got, host(FEED[SEQ], FEED[H0]), rtol=1e-5, atol=1e-6)
    assert_all_close(got, gn.function([SEQ, H0], outputs, backend="reference")(FEED[SEQ], FEED[H0]), 1e-4, 1e-5)


def test_one_compiled_loop_serves_another_batch_size():
    seq, h0 = gn.placeholder("s", (None, None, 3)), gn.placeholder("h", (None, 4))
    hs, _ = gn.scan(elman_step, sequences=seq, outputs_info=h0, name="batches")
    fn = gn.function([seq, h0], hs)
    for batch in (2, 5):
        x, h = f32(4, batch, 3), f32(batch, 4)
        np.testing.assert_allclose(fn(x, h), numpy_elman(x, h), rtol=1e-5, atol=1e-5)
        assert loops_of(fn)[0].runs == "compiled loop"
    (step,) = [s for s in fn.program.steps if s.kind == "loop"]
    functions = {id(runner.program.function): runner.program.function for runner in step._loops.values()}
    assert len(step._loops) == 2 and len(functions) == 1, "two body frames, one loop function"
    assert len(next(iter(functions.values())).signatures) == 1, "lengths are arguments: one compile"


# ---------------------------------------------------------------- errors and tiers
def test_a_sequence_shorter_than_n_steps_names_the_scan():
    k = gn.placeholder("k", (), "int64")
    hs, _ = gn.scan(elman_step, sequences=SEQ, outputs_info=H0, n_steps=k, name="too_short")
    fn = gn.function([SEQ, H0, k], hs)
    np.testing.assert_allclose(fn(FEED[SEQ], FEED[H0], np.int64(3)), numpy_elman(FEED[SEQ][:3], FEED[H0]),
                               rtol=1e-5, atol=1e-5)
    assert loops_of(fn)[0].runs == "compiled loop"
    with pytest.raises(ShapeError, match="too_short"):
        fn(FEED[SEQ], FEED[H0], np.int64(9))


def test_with_tiering_the_host_loop_runs_until_the_compiled_loop_is_ready(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAPHNET_TIERED", "1")
    cache.set_cache_dir(tmp_path)   # nothing compiled yet: the loop goes to a worker
    try:
        hs, _ = gn.scan(lambda x_t, h: gn.tanh(gn.dot(x_t, WX) + gn.dot(h, WH) - B), sequences=SEQ,
                        outputs_info=H0, name="tiered")
        fn = gn.function([SEQ, H0], hs)
        want = numpy_elman(FEED[SEQ], FEED[H0], bias_sign=-1.0)
        np.testing.assert_allclose(fn(FEED[SEQ], FEED[H0]), want, rtol=1e-5, atol=1e-5)
        assert loops_of(fn)[0].runs.startswith("host loop"), "the first call does not wait for the compile"
        assert fn.wait_compiled(timeout=300)
        np.testing.assert_allclose(fn(FEED[SEQ], FEED[H0]), want, rtol=1e-5, atol=1e-5)
        assert loops_of(fn)[0].runs == "compiled loop"
    finally:
        cache.set_cache_dir(None)


def scan_step_of(fn):
    [step] = [s for s in fn.program.steps if isinstance(s, scan_steps.ScanStep)]
    return step


@pytest.fixture
def tiered_in_new_cache(monkeypatch, tmp_path):
    """Tiered compiles on, into an empty kernel cache (every kernel compiles in this test)."""
    monkeypatch.setenv("GRAPHNET_TIERED", "1")
    cache.set_cache_dir(tmp_path)
    yield
    cache.set_cache_dir(None)


def scaled_elman(scale, name):
    """A function of the Elman scan ``h = tanh(x_t @ Wx + scale * (h @ Wh) + b)`` (a new kernel per scale)."""
    hs, _ = gn.scan(lambda x_t, h: gn.tanh(gn.dot(x_t, WX) + gn.dot(h, WH) * scale + B), sequences=SEQ,
                    outputs_info=H0, name=name)
    return gn.function([SEQ, H0], hs)


def test_the_loop_inlines_its_body_kernels_and_they_never_compile_on_their_own(tiered_in_new_cache):
    # Linked, a callee is compiled on its own and then optimized and made into machine code a
    # second time inside the loop; inlined, once. Meanwhile the host loop runs it on NumPy.
    fn = scaled_elman(0.5, "inlined")
    want = numpy_elman(FEED[SEQ], FEED[H0], scale=0.5)
    np.testing.assert_allclose(fn(FEED[SEQ], FEED[H0]), want, rtol=1e-5, atol=1e-5)
    assert fn.wait_compiled(timeout=300)
    np.testing.assert_allclose(fn(FEED[SEQ], FEED[H0]), want, rtol=1e-5, atol=1e-5)
    assert loops_of(fn)[0].runs == "compiled loop"
    assert "= inlined(sibling_module(" in loops_of(fn)[0].source
    body = scan_step_of(fn).body
    generated = [k for k in body.kernels if k.current_tier is not None]
    assert generated, "the body has kernels"
    tiers = [(k.name, k.current_tier, len(k.all_background())) for k in generated]
    assert tiers == [(k.name, "numpy", 0) for k in generated]   # never compiled, nor sent to a worker


def test_a_loop_that_cannot_compile_lets_its_body_kernels_compile(tiered_in_new_cache):
    fn = scaled_elman(0.25, "uncompilable")

    class Failed:   # the worker's answer for a loop Numba could not compile
        ready, error, ticket = True, "TypingError: forced by the test", None

        def wait(self, timeout=None):
            return True
    step = scan_step_of(fn)
    fn(FEED[SEQ], FEED[H0])
    [runner] = step._loops.values()
    runner.background = Failed()
    fn(FEED[SEQ], FEED[H0])   # gives up: the host loop from now on, its kernels released
    assert not step.compile_hold.held
    assert fn.wait_compiled(timeout=300)
    fn(FEED[SEQ], FEED[H0])
    assert fn.wait_compiled(timeout=300)
    want = numpy_elman(FEED[SEQ], FEED[H0], scale=0.25)
    np.testing.assert_allclose(fn(FEED[SEQ], FEED[H0]), want, rtol=1e-5, atol=1e-5)
    assert loops_of(fn)[0].runs.startswith("host loop (compiling it failed")
    generated = [k for k in step.body.kernels if k.current_tier is not None]
    assert generated and all(k.current_tier == "compiled" for k in generated)


def test_a_weight_read_transposed_at_every_step_is_copied_once_before_the_loop(monkeypatch):
    # The backward loop multiplies by Wh.T at every step: OpenBLAS reads a C-ordered copy faster
    # than the transposed view, and the copy is made once per call, before the loop
    hs, _ = gn.scan(elman_step, sequences=SEQ, outputs_info=H0, name="transposed")
    cost = gn.sum(hs * hs)
    outputs = [hs] + gn.grad(cost, [SEQ, H0, WH])
    compiled, host = compile_both([SEQ, H0], outputs, monkeypatch)
    got = compiled(FEED[SEQ], FEED[H0])
    backward = loops_of(compiled)[1]
    assert backward.runs == "compiled loop"
    loop_text = backward.source[backward.source.index("def loop("):backward.source.index("# the body's kernels")]
    before, inside = loop_text.split("for i in range(steps):", 1)
    assert "= np.ascontiguousarray(w0.T)" in before and "w0_t" in inside and "w0.T" not in inside
    assert_all_close(got, host(FEED[SEQ], FEED[H0]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[0], numpy_elman(FEED[SEQ], FEED[H0]), rtol=1e-5, atol=1e-5)
