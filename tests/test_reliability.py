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
