"""A small step's second tier: the whole step as one compiled driver (driver.py)."""
import types

import numpy as np
import pytest
from numba.core.errors import TypingError

import graphnet as gn
from graphnet.compiler.runtime import blas_symbols, driver
from graphnet.compiler.runtime.threads import MeasuredChoice
from graphnet.errors import GraphnetError


def _sgd_step(tag, backend="cpu"):
    x = gn.placeholder(f"x_{tag}", (None, 5))
    y = gn.placeholder(f"y_{tag}", (None,), "int64")
    W = gn.shared(np.full((5, 3), 0.1, "float32"), name=f"W_{tag}")
    b = gn.shared(np.zeros(3, "float32"), name=f"b_{tag}")
    loss = gn.mean(gn.nn.cross_entropy(gn.dot(x, W) + b, y))
    gW, gb = gn.grad(loss, [W, b])
    fn = gn.function([x, y], loss, updates=[(W, W - 0.5 * gW), (b, b - 0.5 * gb)], backend=backend)
    return fn, W, b


@pytest.fixture(scope="module")
def upgraded():
    """A step whose frame took its driver after 3 calls, and its losses and the reference's, call by call."""
    patch = pytest.MonkeyPatch()
    patch.setattr(driver, "DRIVER_AFTER", 3)
    fn, W, b = _sgd_step("driver")
    reference, W_ref, b_ref = _sgd_step("driver_ref", backend="reference")
    rng = np.random.default_rng(0)
    calls = 3 + 1 + 2 * (MeasuredChoice.SAMPLES + 1) + 2   # until the driver, then both measured, then settled
    batches = [(rng.standard_normal((4, 5)).astype("float32"), rng.integers(0, 3, 4)) for _ in range(calls)]
    losses = [(fn(xb, yb), reference(xb, yb)) for xb, yb in batches]
    patch.undo()
    return fn, (W, b), (W_ref, b_ref), losses


def _frame(fn):
    return next(iter(fn.program._frames.values()))[0]


def test_a_small_frame_runs_as_one_compiled_driver_with_the_same_results(upgraded):
    fn, (W, b), (W_ref, b_ref), losses = upgraded
    frame = _frame(fn)
    assert frame.driver_entry is not None and frame.driver_entry.driver.signatures   # it ran
    assert not hasattr(frame.entry, "variants")   # measured against the Python entry, and settled
    for got, want in losses:
        np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(W.get_value(), W_ref.get_value(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(b.get_value(), b_ref.get_value(), rtol=1e-5, atol=1e-7)


def test_the_drivers_product_calls_gemm_into_on_the_library_measured_for_its_shape(upgraded):
    fn, _, _, _ = upgraded
    step = _frame(fn).driver_entry.driver
    assert blas_symbols.gemm_into in step.py_func.__globals__.values()
    module_text = open(step.py_func.__code__.co_filename).read()
    assert "# matrix products: " + blas_symbols.DESCRIPTION in module_text   # its cache entry names the BLAS


def test_a_bad_label_on_the_driver_path_raises_before_any_update(upgraded):
    fn, (W, b), _, _ = upgraded
    W_before, b_before = W.get_value(), b.get_value()
    with pytest.raises(GraphnetError, match="y_driver"):
        fn(np.ones((4, 5), "float32"), np.array([0, 1, 5, 0]))
    np.testing.assert_array_equal(W.get_value(), W_before)
    np.testing.assert_array_equal(b.get_value(), b_before)


def test_a_driver_numba_cannot_compile_falls_back_to_the_python_entry(monkeypatch):
    monkeypatch.setattr(driver, "DRIVER_AFTER", 2)
    fn, W, b = _sgd_step("driver_fails")
    reference, W_ref, b_ref = _sgd_step("driver_fails_ref", backend="reference")

    def cannot_compile(*args):
        raise TypingError("a test's stand-in for a driver Numba cannot type")
    monkeypatch.setattr(fn.program, "load_driver", lambda source: types.SimpleNamespace(step=cannot_compile))
    xb, yb = np.ones((4, 5), "float32"), np.array([0, 1, 2, 0])
    for _ in range(6):
        np.testing.assert_allclose(fn(xb, yb), reference(xb, yb), rtol=1e-5)
    assert getattr(_frame(fn).entry, "driver", None) is None and "driver" not in _frame(fn).entry.source
    np.testing.assert_allclose(W.get_value(), W_ref.get_value(), rtol=1e-5, atol=1e-7)


def test_drivers_can_be_turned_off(monkeypatch):
    monkeypatch.setattr(driver, "DRIVER_AFTER", 2)
    monkeypatch.setattr(driver, "ENABLED", False)
    fn, _, _ = _sgd_step("driver_off")
    for _ in range(5):
        fn(np.ones((2, 5), "float32"), np.array([0, 1]))
    assert _frame(fn).until_driver == 0 and getattr(_frame(fn).entry, "driver", None) is None
