"""Reliability: calls from several threads, the numerical guard, error provenance, and
the kernel cache seen from whole compiled functions in separate processes.

Bad input on the cpu backend lives in tests/compiler/test_bad_input_cpu.py;
the differential fuzzer in tests/fuzz/. The policies tested here are written
down in docs/reliability.md.
"""
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import graphnet as gn
from graphnet.compiler.runtime import cache
from graphnet.graph import Apply, TensorType
from graphnet.ops.elementwise import Elemwise

REPO = Path(__file__).resolve().parents[1]
THIS_FILE = Path(__file__).name


def line_of(marker):
    """The line number of this file holding ``marker`` (a comment), for provenance checks."""
    for number, text in enumerate(Path(__file__).read_text().splitlines(), start=1):
        if marker in text and "line_of(" not in text:
            return number
    raise AssertionError(marker)


def run_threads(target, count):
    errors = []

    def guarded(k):
        try:
            target(k)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


# ----------------------------------------------------------------------- threads
def test_one_function_called_from_several_threads_gives_each_caller_its_own_result():
    # Compiled programs reuse preallocated buffers; calls are serialized, so none
    # reads another's half-written buffer.
    x = gn.placeholder("x", (None, 32))
    W = gn.shared(np.eye(32, dtype="float32") * 0.5, name="W")
    y = gn.tanh(gn.dot(x, W)) * 2 + 1
    fn = gn.function([x], [y, gn.sum(y, axis=1)], backend="cpu")
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((128, 32)).astype("float32") for _ in range(6)]
    expected = [fn(xb) for xb in batches]
    wrong = []

    def work(k):
        for it in range(60):
            i = (k + it) % len(batches)
            got = fn(batches[i])
            if not all(np.array_equal(a, b) for a, b in zip(got, expected[i])):
                wrong.append((k, it))

    run_threads(work, 4)
    assert not wrong, f"{len(wrong)} calls saw another thread's buffers"


def test_a_reader_never_sees_a_parameter_half_updated_in_place_by_another_function():
    W = gn.shared(np.zeros((1024, 1024), "float32"), name="W")
    bump = gn.function([], [], updates=[(W, W + 1)], backend="cpu")
    spread = gn.function([], gn.max(W) - gn.min(W), backend="cpu")
    assert bump.program.in_place, "the update should be written in place for this test to mean anything"
    torn = []

    def work(k):
        for _ in range(40):
            if k % 2:
                bump()
            elif spread() != 0:
                torn.append(k)

    run_threads(work, 4)
    assert not torn
    assert W.get_value()[0, 0] == 80


def test_session_run_from_several_threads_is_safe():
    x = gn.placeholder("x", (None, 8))
    y = gn.sum(gn.exp(x * 0.1), axis=1)
    sess = gn.Session(backend="cpu")
    xb = np.arange(40, dtype="float32").reshape(5, 8)
    expected = sess.run(y, {x: xb})

    def work(k):
        for _ in range(50):
            np.testing.assert_array_equal(sess.run(y, {x: xb}), expected)

    run_threads(work, 3)


# ---------------------------------------------------------------- check_numerics
def test_nan_passes_silently_when_check_numerics_is_off():
    x = gn.placeholder("x", (None, 3))
    fn = gn.function([x], gn.log(x), backend="cpu")
    assert np.isnan(fn(-np.ones((2, 3), "float32"))).all()


@pytest.mark.parametrize("backend,fuse", [("cpu", True), ("cpu", False), ("reference", True)],
                         ids=["cpu-fused", "cpu-unfused", "reference"])
def test_check_numerics_names_the_first_node_with_nan_its_op_and_user_line(backend, fuse):
    x = gn.placeholder("x", (None, 3))
    scaled = x * 2.0
    logged = gn.log(scaled)  # first NaN here
    logged.name = "logged"
    out = gn.exp(logged) + 1.0
    fn = gn.function([x], out, backend=backend, fuse=fuse, check_numerics=True)
    np.testing.assert_allclose(fn(np.ones((2, 3), "float32")), 3.0, rtol=1e-6)
    with pytest.raises(gn.NumericsError) as excinfo:
        fn(np.array([[1, -1, 1], [1, 1, 1]], "float32"))
    message = str(excinfo.value)
    assert "log" in message and "logged" in message and "NaN" in message
    assert f"{THIS_FILE}:{line_of('# first NaN here')}" in message


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_check_numerics_sees_nan_in_a_value_fused_away_inside_a_kernel(backend):
    # log(x) is never written to memory in the fused kernel, yet it holds NaN:
    # every backend reports it, as the reference (which checks every node) does.
    x = gn.placeholder("x", (None, 4))
    safe = gn.where(x > 0, gn.log(x), 0.0)  # log of a negative: NaN, then discarded
    fn = gn.function([x], safe * 2.0, backend=backend, check_numerics=True)
    if backend == "cpu":
        assert len([k for k in fn.kernels if k.kind == "fused"]) == 1
    with pytest.raises(gn.NumericsError, match="log"):
        fn(np.array([[1, -1, 2, 3]], "float32"))


def test_check_numerics_is_computed_inside_the_fused_kernel():
    x = gn.placeholder("x", (None, 4))
    fn = gn.function([x], gn.exp(x) * 2.0 + 1.0, backend="cpu", check_numerics=True)
    (kernel,) = [k for k in fn.kernels if k.kind == "fused"]
    assert "flags" in kernel.source
    with pytest.raises(gn.NumericsError, match=r"Inf.*exp"):
        fn(np.array([[1, 1000, 2, 3]], "float32"))


def test_check_numerics_reports_overflow_in_a_matrix_product():
    x = gn.placeholder("x", (None, 2))
    W = gn.shared(np.full((2, 2), 1e30, "float32"), name="W")
    product = gn.dot(x, W)  # overflows here
    fn = gn.function([x], gn.tanh(product), backend="cpu", check_numerics=True)
    with pytest.raises(gn.NumericsError) as excinfo:
        fn(np.full((3, 2), 1e10, "float32"))
    assert "dot" in str(excinfo.value) and f"{THIS_FILE}:{line_of('# overflows here')}" in str(excinfo.value)


def test_check_numerics_names_a_nan_computed_on_reduced_values_in_a_kernel_epilogue():
    x = gn.placeholder("x", (None, 4))
    inv_std = 1.0 / gn.sqrt(gn.var(x, axis=0) - 1.0)  # NaN where the variance is below 1
    fn = gn.function([x], x * inv_std, backend="cpu", check_numerics=True)
    assert any(k.kind == "fused" and "sqrt" in k.ops and "moments" in k.ops for k in fn.kernels)
    np.testing.assert_allclose(fn(np.array([[0, 0, 0, 0], [4, 4, 4, 4]], "float32"))[1], 4 / np.sqrt(3), rtol=1e-5)
    with pytest.raises(gn.NumericsError, match=r"NaN in the output of sqrt"):
        fn(np.array([[0, 0, 0, 0], [4, 4, 1, 4]], "float32"))


def test_check_numerics_reports_a_reduction_that_overflows():
    x = gn.placeholder("x", (None, 4))
    fn = gn.function([x], gn.sum(x, axis=0), backend="cpu", check_numerics=True)
    with pytest.raises(gn.NumericsError, match="sum"):
        fn(np.full((4, 4), 3e38, "float32"))


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_check_numerics_sees_nan_in_an_update_the_optimizer_reduced_to_the_old_value(backend):
    # Found by the fuzzer: W - 0.1 * dW with dW = 0 (W does not reach the cost)
    # simplifies to W on the cpu backend, so no kernel computed the NaN already
    # in W; the reference computed the subtraction and stopped.
    x = gn.placeholder("x", (None, 2))
    W = gn.shared(np.array([np.nan, 1.0], "float32"), name="W")
    V = gn.shared(np.ones(2, "float32"), name="V")
    cost = gn.sum(x * V)
    gW, gV = gn.grad(cost, [W, V])
    new_W = W - 0.1 * gW  # the NaN shows here
    fn = gn.function([x], cost, updates=[(W, new_W), (V, V - 0.1 * gV)], backend=backend,
                     check_numerics=True)
    with pytest.raises(gn.NumericsError) as excinfo:
        fn(np.ones((3, 2), "float32"))
    assert "NaN in the output of sub" in str(excinfo.value)
    assert f"{THIS_FILE}:{line_of('# the NaN shows here')}" in str(excinfo.value)
    np.testing.assert_array_equal(V.get_value(), [1.0, 1.0])


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_a_call_stopped_by_check_numerics_leaves_parameters_unchanged(backend):
    # The cpu backend updates parameters in place; a NaN found after that kernel
    # ran would otherwise leave W half trained by a failed call.
    x = gn.placeholder("x", (None, 4))
    W = gn.shared(np.ones((4, 3), "float32"), name="W")
    loss = gn.mean(gn.dot(x, W) ** 2)
    new_W = W - 0.01 * gn.grad(loss, W)
    late = gn.log(gn.sum(new_W) - 100.0)  # NaN, computed after the update
    fn = gn.function([x], [loss, late], updates=[(W, new_W)], backend=backend, check_numerics=True)
    with pytest.raises(gn.NumericsError, match="log"):
        fn(np.ones((5, 4), "float32"))
    np.testing.assert_array_equal(W.get_value(), np.ones((4, 3)))


# ------------------------------------------------------------- error provenance
class BrokenScalar(Elemwise):
    """An elementwise op whose kernel expression the code generator cannot produce."""

    def impl(self, a):
        return a

    def scalar(self, args, dtype):
        raise KeyError("no scalar form")


class UntypableScalar(Elemwise):
    """An elementwise op whose kernel expression Numba cannot compile."""

    def impl(self, a):
        return a

    def scalar(self, args, dtype):
        return f"no_such_helper({args[0]})"


def test_a_codegen_failure_names_the_node_and_the_user_line():
    x = gn.placeholder("x", (None, 3))
    y = BrokenScalar()(gn.exp(x))  # codegen fails here
    with pytest.raises(gn.CompileError) as excinfo:
        gn.function([x], y * 2.0, backend="cpu")
    message = str(excinfo.value)
    assert "brokenscalar" in message and f"{THIS_FILE}:{line_of('# codegen fails here')}" in message


def test_a_kernel_numba_cannot_compile_names_its_nodes_and_user_lines():
    x = gn.placeholder("x", (None, 3))
    y = UntypableScalar()(x)  # numba fails here
    fn = gn.function([x], gn.exp(y), backend="cpu")
    with pytest.raises(gn.CompileError) as excinfo:
        fn(np.ones((2, 3), "float32"))
    message = str(excinfo.value)
    assert "untypablescalar" in message and f"{THIS_FILE}:{line_of('# numba fails here')}" in message
    assert "no_such_helper" in message   # Numba's own reason is kept


def test_a_pass_that_fails_on_a_node_names_the_pass_the_node_and_the_user_line(monkeypatch):
    from graphnet.compiler import pipeline
    from graphnet.compiler.rewrite import apply_local_rules

    def exploding_rule(node):
        if node.op.name == "tanh":
            raise ZeroDivisionError("rule bug")
        return None

    monkeypatch.setattr(pipeline, "PASSES", pipeline.PASSES + [
        ("explode", lambda fg: apply_local_rules(fg, [exploding_rule]), "a broken rewrite")])
    monkeypatch.setattr(pipeline, "PASS_NAMES", pipeline.PASS_NAMES + ("explode",))
    x = gn.placeholder("x", (None, 3))
    y = gn.tanh(x) + 1.0  # the rule fails here
    with pytest.raises(gn.CompileError) as excinfo:
        gn.function([x], y, backend="cpu")
    message = str(excinfo.value)
    assert "explode" in message and "exploding_rule" in message and "tanh" in message
    assert f"{THIS_FILE}:{line_of('# the rule fails here')}" in message


# -------------------------------------------------- the kernel cache, process by process
PROGRAM = textwrap.dedent("""
    import json, sys
    import numpy as np
    import graphnet as gn
    from graphnet.compiler.runtime import cache
    x = gn.placeholder("x", (None, 4))
    W = gn.shared(np.arange(12, dtype="float32").reshape(4, 3) / 10, name="W")
    y = gn.sum(gn.tanh(gn.dot(x, W) + 1.0) * 2.0, axis=1)
    probs = gn.softmax(gn.dot(x, W))
    fn = gn.function([x], [y, probs], backend="cpu")
    out = fn(np.linspace(-1, 1, 20, dtype="float32").reshape(5, 4))
    print(json.dumps({"y": out[0].tolist(), "probs": out[1].tolist(), "stats": cache.compile_stats()}))
""")


def run_program(cache_dir, wait_for=None):
    """Run PROGRAM in a fresh interpreter with ``cache_dir`` as its kernel cache; its JSON result."""
    import json
    env = dict(os.environ, GRAPHNET_CACHE_DIR=str(cache_dir), PYTHONPATH=str(REPO))
    source = PROGRAM
    if wait_for is not None:   # start compiling together with a sibling process
        source = (f"import os, time\nwhile not os.path.exists({str(wait_for)!r}): time.sleep(0.01)\n"
                  + source)
    done = subprocess.run([sys.executable, "-c", source], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def expected_result():
    out = None
    x = gn.placeholder("x", (None, 4))
    W = gn.shared(np.arange(12, dtype="float32").reshape(4, 3) / 10, name="W")
    y = gn.sum(gn.tanh(gn.dot(x, W) + 1.0) * 2.0, axis=1)
    probs = gn.softmax(gn.dot(x, W))
    out = gn.function([x], [y, probs], backend="reference")(np.linspace(-1, 1, 20, dtype="float32").reshape(5, 4))
    return out


def assert_correct(result):
    y, probs = expected_result()
    np.testing.assert_allclose(result["y"], y, rtol=1e-5)
    np.testing.assert_allclose(result["probs"], probs, rtol=1e-5)


def cache_files(cache_dir, suffix):
    return sorted(p for p in Path(cache_dir).rglob(f"*{suffix}") if not p.name.startswith("."))


def test_a_truncated_kernel_module_is_detected_and_recompiled_by_the_next_process(tmp_path):
    first = run_program(tmp_path)
    assert_correct(first)
    modules = cache_files(tmp_path, ".py")
    assert modules and first["stats"]["modules_written"] == len(modules)
    for module in modules:
        module.write_bytes(module.read_bytes()[:200])  # a crash mid-write, a full disk
    second = run_program(tmp_path)
    assert_correct(second)
    assert second["stats"]["corrupt_entries_removed"] == len(modules)
    third = run_program(tmp_path)   # repaired for good: loaded, nothing rewritten
    assert_correct(third)
    assert third["stats"]["modules_written"] == 0 and third["stats"]["corrupt_entries_removed"] == 0


@pytest.mark.parametrize("damage", ["truncate machine code", "garble index"])
def test_a_corrupt_numba_cache_file_is_flushed_and_recompiled_not_loaded(tmp_path, damage):
    assert_correct(run_program(tmp_path))
    targets = cache_files(tmp_path, ".nbc" if damage == "truncate machine code" else ".nbi")
    assert targets
    for path in targets:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3] if damage == "truncate machine code" else b"garbage\n")
    second = run_program(tmp_path)
    assert_correct(second)
    assert second["stats"]["corrupt_entries_removed"] >= 1
    third = run_program(tmp_path)
    assert_correct(third)
    assert third["stats"]["corrupt_entries_removed"] == 0


def test_two_processes_compiling_the_same_function_at_once_both_succeed(tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    go = tmp_path / "go"
    cache_dir = tmp_path / "cache"
    with ThreadPoolExecutor(2) as pool:
        racers = [pool.submit(run_program, cache_dir, go) for _ in range(2)]
        go.touch()
        results = [r.result() for r in racers]
    for result in results:
        assert_correct(result)
    written = sum(r["stats"]["modules_written"] for r in results)
    assert written == len(cache_files(cache_dir, ".py"))   # each module published once
    assert not [p for p in cache_dir.iterdir() if p.name.startswith(".")], "scratch files left behind"
    after = run_program(cache_dir)
    assert_correct(after)
    assert after["stats"]["modules_written"] == 0 and after["stats"]["corrupt_entries_removed"] == 0


def test_clear_cache_is_one_call_and_compiling_afterwards_works(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHNET_CACHE_DIR", str(tmp_path))
    x = gn.placeholder("x", (None, 3))
    fn = gn.function([x], gn.exp(x) * 3.0 + 1.0, backend="cpu")
    assert cache_files(tmp_path, ".py")
    cache.clear_cache()
    assert not cache_files(tmp_path, ".py") and not cache_files(tmp_path, ".nbc")
    fn2 = gn.function([x], gn.exp(x) * 3.0 + 1.0, backend="cpu")
    np.testing.assert_allclose(fn2(np.zeros((2, 3), "float32")), 4.0)
    np.testing.assert_allclose(fn(np.zeros((2, 3), "float32")), 4.0)   # loaded modules stay usable


# ------------------------------------------------------------------ checkpoints
def test_a_checkpoint_member_claiming_a_huge_shape_is_refused_clearly(tmp_path):
    import io
    import zipfile

    from graphnet import checkpoint
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    checkpoint.save(good, {"W": np.ones((3, 3), "float32")})
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "W.npy":
                header = io.BytesIO()
                np.lib.format.write_array_header_1_0(
                    header, {"descr": "<f4", "fortran_order": False, "shape": (10**13,)})
                data = header.getvalue() + bytes(64)
            zout.writestr(item, data)
    with pytest.raises(gn.CheckpointError, match="W"):
        checkpoint.load(bad)
