"""Tests that run CUDA kernels: under NVIDIA's simulator, or on a GPU.

The simulator is chosen by ``NUMBA_ENABLE_CUDASIM=1`` before ``numba.cuda`` is
first imported, and it then serves the whole process (the CUDA test of
``tests/test_rng.py`` would run in it too, and fail). So an ordinary test run
does not collect these files: ``tests/cuda/test_cuda_in_simulator.py`` runs
each of them in a child pytest started with the simulator on. They are
collected here directly when this process already has the simulator or a GPU:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda/device     # simulator
    python -m pytest tests/cuda/device                             # on a GPU

The simulator runs each CUDA thread as a Python thread (a few thousand per
second), so the shapes here are tiny and the backend picks small blocks.
"""
import importlib.util
import os
import sys

import numpy as np
import pytest

import graphnet as gn


def device_available():
    if importlib.util.find_spec("numba_cuda") is None:
        return False
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return True
    from numba import cuda
    return cuda.is_available()


if not device_available():
    collect_ignore_glob = ["test_*.py"]
elif os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    # The simulator's block manager busy-polls its threads at every
    # syncthreads(); with a short switch interval they run sooner (5x here).
    sys.setswitchinterval(2e-4)


def compile_both(outputs, inputs, oracle="reference", **options):
    """The same graph compiled for CUDA and for ``oracle``."""
    return (gn.function(inputs, outputs, backend="cuda", **options),
            gn.function(inputs, outputs, backend=oracle, **options))


def assert_close(got, expected, rtol=1e-5, atol=1e-6):
    got, expected = (got, expected) if isinstance(got, list) else ([got], [expected])
    assert len(got) == len(expected)
    for k, (a, b) in enumerate(zip(got, expected)):
        assert a.shape == b.shape and a.dtype == b.dtype, f"output {k}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        if a.dtype.kind in "biu":
            np.testing.assert_array_equal(a, b, err_msg=f"output {k}")
        else:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, equal_nan=True, err_msg=f"output {k}")


@pytest.fixture
def matches_reference():
    """``matches_reference(outputs, feeds, rtol=..., atol=..., **options)``: CUDA equals NumPy; returns the CUDA function."""
    def check(outputs, feeds, rtol=1e-5, atol=1e-6, **options):
        inputs = list(feeds)
        cuda_fn, oracle = compile_both(outputs, inputs, **options)
        args = [feeds[p] for p in inputs]
        assert_close(cuda_fn(*args), oracle(*args), rtol, atol)
        return cuda_fn
    return check


@pytest.fixture(name="assert_close")
def assert_close_fixture():
    """``assert_close(got, expected, rtol, atol)`` for arrays or lists of arrays: dtypes, shapes, values."""
    return assert_close
