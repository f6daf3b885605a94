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
from graphnet.compiler import cache
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


def test_check_numerics_reports_a_reduction_that_overflows():
    x = gn.placeholder("x", (None, 4))
    fn = gn.function([x], gn.sum(x, axis=0), backend="cpu", check_numerics=True)
    with pytest.raises(gn.NumericsError, match="sum"):
        fn(np.full((4, 4), 3e38, "float32"))


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
    from graphnet.compiler.passes import apply_local_rules

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
