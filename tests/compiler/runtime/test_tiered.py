"""Tiered execution: steps run on NumPy while their kernels compile in a worker, then compiled.

No test waits on a clock: the pool is paused to hold the first steps on
NumPy, and ``fn.wait_compiled()`` waits for the background compiles before the
steps that must run compiled.
"""
import gc
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphnet as gn
from graphnet.compiler.runtime import cache, compile_pool, tiered
from graphnet.ops.elementwise import Elemwise

STEPS_ON_NUMPY = 3
STEPS_COMPILED = 3
WAIT_S = 600   # a generous bound on a loaded machine; the tests never sleep


def build_training_step(seed=0):
    """A step with batch norm, dropout, softmax cross-entropy and SGD updates; its parameters."""
    rng = np.random.default_rng(seed)
    x, y = gn.placeholder("x", (None, 6)), gn.placeholder("y", (None,), "int64")
    W1 = gn.shared(rng.standard_normal((6, 8)).astype("float32"), name="W1")
    gamma, beta = gn.shared(np.ones(8, "float32"), name="gamma"), gn.shared(np.zeros(8, "float32"), name="beta")
    W2 = gn.shared(rng.standard_normal((8, 3)).astype("float32"), name="W2")
    b2 = gn.shared(np.zeros(3, "float32"), name="b2")
    h = gn.nn.dropout(gn.relu(gn.nn.batch_norm(gn.dot(x, W1), gamma, beta)), 0.5, seed=7)
    loss = gn.nn.cross_entropy(gn.dot(h, W2) + b2, y)
    params = [W1, gamma, beta, W2, b2]
    updates = [(p, p - 0.1 * g) for p, g in zip(params, gn.grad(loss, params))]
    return gn.function([x, y], loss, updates=updates, training=True, name="tiered_step"), params


def data():
    rng = np.random.default_rng(1)
    return rng.standard_normal((5, 6)).astype("float32"), rng.integers(0, 3, 5)


def generated_tiers(fn):
    return [k.current_tier for k in fn.kernels if k.current_tier is not None]


@pytest.fixture(scope="module")
def training_runs(tmp_path_factory):
    """The same training steps compiled only, and tiered: NumPy first, compiled after the switch."""
    X, Y = data()
    with pytest.MonkeyPatch.context() as env:
        try:
            env.setenv("GRAPHNET_TIERED", "0")
            cache.set_cache_dir(tmp_path_factory.mktemp("compiled_only"))
            fn, compiled_params = build_training_step()
            compiled = [float(fn(X, Y)) for _ in range(STEPS_ON_NUMPY + STEPS_COMPILED)]

            env.setenv("GRAPHNET_TIERED", "1")
            cache.set_cache_dir(tmp_path_factory.mktemp("tiered"))   # new modules: nothing compiled yet
            fn, tiered_params = build_training_step()
            losses, tiers, entries = [], [], []
            with compile_pool.pool().paused():
                for _ in range(STEPS_ON_NUMPY):
                    losses.append(float(fn(X, Y)))
                    tiers.append(generated_tiers(fn))
                    entries.append(_frame_of(fn).entry)
            assert fn.wait_compiled(WAIT_S)
            for _ in range(STEPS_COMPILED):
                losses.append(float(fn(X, Y)))
                tiers.append(generated_tiers(fn))
                entries.append(_frame_of(fn).entry)
        finally:
            cache.set_cache_dir(None)
    return {"compiled": (compiled, compiled_params), "tiered": (losses, tiered_params), "tiers": tiers, "fn": fn,
            "entries": entries}


def _frame_of(fn):
    return next(iter(fn.program._frames.values()))[0]


def test_a_frame_takes_its_generated_entry_only_once_every_kernel_runs_compiled(training_runs):
    entries = training_runs["entries"]
    assert all(entry is None for entry in entries[:STEPS_ON_NUMPY])   # a step still on NumPy
    assert entries[-1] is not None


def test_the_first_steps_run_on_numpy_and_the_steps_after_the_compiles_run_compiled(training_runs):
    tiers = training_runs["tiers"]
    assert all(len(t) >= 5 for t in tiers)   # the fused loops, epilogues and row-wise kernels
    assert all(tier == "numpy" for step in tiers[:STEPS_ON_NUMPY] for tier in step)
    assert all(tier == "compiled" for step in tiers[STEPS_ON_NUMPY:] for tier in step)


def test_tiered_steps_give_the_compiled_losses_and_parameters_with_dropout_and_batch_norm(training_runs):
    compiled_losses, compiled_params = training_runs["compiled"]
    tiered_losses, tiered_params = training_runs["tiered"]
    assert len(set(np.round(compiled_losses, 4))) == len(compiled_losses)   # the steps changed something
    np.testing.assert_allclose(tiered_losses, compiled_losses, rtol=1e-5, atol=1e-6)
    for a, b in zip(tiered_params, compiled_params):
        np.testing.assert_allclose(a.get_value(), b.get_value(), rtol=1e-5, atol=1e-6, err_msg=a.name)


def test_after_the_switch_the_frame_calls_the_compiled_kernels_directly(training_runs):
    frame, _ = next(iter(training_runs["fn"].program._frames.values()))
    assert not any(isinstance(call, tiered.KernelCall) for call in frame.calls)


def test_check_numerics_names_the_node_on_the_numpy_tier_too(tiering):
    x = gn.placeholder("x", (None, 3))
    fn = gn.function([x], gn.log(x) * 2.0, check_numerics=True)
    with tiering.paused():
        np.testing.assert_allclose(fn(np.ones((2, 3), "float32")), 0.0)
        with pytest.raises(gn.NumericsError, match="log"):
            fn(-np.ones((2, 3), "float32"))
        assert generated_tiers(fn) == ["numpy"]


# ------------------------------------------------------------------ failures
class UntypableScalar(Elemwise):
    """An elementwise op whose kernel expression Numba cannot compile (its NumPy reference is fine)."""

    def impl(self, a):
        return a + 1

    def scalar(self, args, dtype):
        return f"no_such_helper({args[0]})"


@pytest.fixture
def tiering(monkeypatch, tmp_path):
    """Tiering on, a kernel cache of this test's own (its kernels are new), the pool idle."""
    monkeypatch.setenv("GRAPHNET_TIERED", "1")
    cache.set_cache_dir(tmp_path / "kernels")
    assert compile_pool.pool().wait_idle(WAIT_S)
    yield compile_pool.pool()
    cache.set_cache_dir(None)


def test_a_kernel_numba_cannot_compile_keeps_running_on_numpy_and_says_why(tiering, capfd, monkeypatch):
    monkeypatch.setattr(tiered, "DEBUG", 1)
    x = gn.placeholder("x", (None, 3))
    fn = gn.function([x], gn.exp(UntypableScalar()(x)))
    a = np.linspace(-1, 1, 6, dtype="float32").reshape(2, 3)
    np.testing.assert_allclose(fn(a), np.exp(a + 1), rtol=1e-6)
    assert fn.wait_compiled(WAIT_S)
    np.testing.assert_allclose(fn(a), np.exp(a + 1), rtol=1e-6)
    [kernel] = fn.kernels
    assert kernel.tier.startswith("numpy (compiling failed")
    err = capfd.readouterr().err
    assert "could not be compiled" in err and "no_such_helper" in err and "keeps running on NumPy" in err


def test_a_killed_worker_falls_back_to_compiling_in_this_process(tiering, capfd, tmp_path):
    x = gn.placeholder("x", (None, 3))
    fn = gn.function([x], gn.tanh(x) * 3.0)
    a = np.linspace(-2, 2, 6, dtype="float32").reshape(2, 3)
    with tiering.paused():
        np.testing.assert_allclose(fn(a), np.tanh(a) * 3, rtol=1e-6)
        [call] = fn.kernels[0].background
        ticket = call.background.ticket
        # The worker will block opening this FIFO, named as the module: provably mid-compile when killed.
        (tmp_path / "fifo").mkdir()
        fifo = tmp_path / "fifo" / os.path.basename(ticket.job.path)
        os.mkfifo(fifo)
        ticket.job = type(ticket.job)(str(fifo), ticket.job.module_name, ticket.job.function, ticket.job.signature)
    [worker] = tiering.workers
    os.kill(worker.pid, signal.SIGKILL)
    assert fn.wait_compiled(WAIT_S) and ticket.lost and "killed by signal 9" in ticket.reason
    np.testing.assert_allclose(fn(a), np.tanh(a) * 3, rtol=1e-6)
    assert fn.kernels[0].tier == "compiled"
    err = capfd.readouterr().err
    assert "killed by signal 9" in err and "compiled in this process instead" in err


def test_no_worker_outlives_a_function_that_was_garbage_collected(tiering):
    x = gn.placeholder("x", (None, 3))
    fn = gn.function([x], gn.exp(x) * 0.5 - 2.0)
    with tiering.paused():
        fn(np.ones((2, 3), "float32"))
        ticket = fn.kernels[0].background[0].background.ticket
        del fn
        gc.collect()
        del ticket
    assert tiering.wait_idle(WAIT_S)
    assert tiering.workers == []


def test_building_a_function_with_a_new_kernel_starts_a_worker_before_the_first_call(tiering):
    # The worker's start (imports, Numba's CPU target) overlaps the build and the first call.
    x = gn.placeholder("x", (None, 3))
    assert tiering.workers == []
    fn = gn.function([x], gn.exp(x) * 3.5 + 1.25)
    [worker] = tiering.workers
    a = np.linspace(-1, 1, 6, dtype="float32").reshape(2, 3)
    np.testing.assert_allclose(fn(a), np.exp(a) * 3.5 + 1.25, rtol=1e-6)
    assert fn.wait_compiled(WAIT_S)
    assert [w.pid for w in tiering.workers] in ([worker.pid], [])   # its compile went to that worker
    np.testing.assert_allclose(fn(a), np.exp(a) * 3.5 + 1.25, rtol=1e-6)
    assert fn.kernels[0].tier == "compiled"


def test_without_tiering_a_build_starts_no_worker(tiering, monkeypatch):
    monkeypatch.setenv("GRAPHNET_TIERED", "0")
    x = gn.placeholder("x", (None, 3))
    gn.function([x], gn.exp(x) * 4.5 - 1.75)
    assert tiering.workers == []


def test_a_forked_child_compiles_in_the_background_on_its_own(tiering):
    x = gn.placeholder("x", (None, 3))
    a = np.linspace(-1, 1, 6, dtype="float32").reshape(2, 3)
    parent = gn.function([x], gn.tanh(x) + 2.0)
    parent(a)   # the parent's worker and loader thread are busy as it forks
    pid = os.fork()
    if pid == 0:   # the child: its own pool and loader thread, no lock left held by the parent's
        ok = False
        try:
            child = gn.function([x], gn.exp(x) * 7.0)
            child(a)
            ok = child.wait_compiled(WAIT_S) and np.allclose(child(a), np.exp(a) * 7, rtol=1e-6) \
                and child.kernels[0].tier == "compiled"
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert parent.wait_compiled(WAIT_S)
    np.testing.assert_allclose(parent(a), np.tanh(a) + 2, rtol=1e-6)
    assert parent.kernels[0].tier == "compiled"


EXIT_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import graphnet as gn
    from graphnet.compiler.runtime import compile_pool
    x = gn.placeholder("x", (None, 4))
    first = gn.function([x], gn.tanh(x) + 1.0, name="first")
    a = np.ones((2, 4), "float32")
    first(a)
    first.wait_compiled()
    first(a)
    second = gn.function([x], gn.exp(x) * 5.0, name="second")
    second(a)   # its compile is in flight as the script exits
    print(json.dumps([p.pid for p in compile_pool.pool().workers]))
""")


def test_the_debug_output_says_what_ran_where_and_no_worker_outlives_the_interpreter(tmp_path):
    env = dict(os.environ, GRAPHNET_CACHE_DIR=str(tmp_path), GRAPHNET_TIERED="1", GRAPHNET_DEBUG="2")
    out = subprocess.run([sys.executable, "-c", EXIT_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=WAIT_S)
    assert out.returncode == 0, out.stderr
    pids = json.loads(out.stdout.strip().splitlines()[-1])
    assert pids, "the second function's compile should still have been running"
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    err = out.stderr
    assert "first: compiling 1 kernel in the background" in err
    assert "[numpy]" in err                                  # the first call's step ran on NumPy
    assert "first: k0_fused compiled in the background" in err
    assert "ms to load" in err                               # on the loader thread, not in a step
