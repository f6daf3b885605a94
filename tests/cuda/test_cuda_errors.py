"""Asking for the CUDA backend where it cannot run says why, and what to do."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphnet as gn

ROOT = Path(__file__).resolve().parents[2]


def test_without_the_numba_cuda_package_the_error_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba_cuda", None)   # as if not installed
    x = gn.placeholder("x", (2,))
    with pytest.raises(gn.GraphnetError, match=r"numba-cuda.*pip install"):
        gn.function([x], x + 1, backend="cuda")


NO_GPU_SCRIPT = """
import graphnet as gn
from numba import cuda
if cuda.is_available():
    print("HAS-GPU")
else:
    x = gn.placeholder("x", (2,))
    try:
        gn.function([x], x + 1, backend="cuda")
    except gn.GraphnetError as exc:
        print("GraphnetError:", exc)
"""


@pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None, reason="numba-cuda is not installed")
def test_without_a_gpu_or_the_simulator_the_error_says_how_to_get_one():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    child = subprocess.run([sys.executable, "-c", NO_GPU_SCRIPT], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=300)
    if "HAS-GPU" in child.stdout:
        pytest.skip("this machine has a GPU")
    assert "GraphnetError: backend='cuda': no usable NVIDIA GPU" in child.stdout, child.stdout + child.stderr
    assert "NUMBA_ENABLE_CUDASIM=1" in child.stdout and "backend='cpu'" in child.stdout


def test_the_cpu_backend_needs_no_cuda():
    x = gn.placeholder("x", (2,))
    np.testing.assert_array_equal(gn.function([x], x + 1, backend="cpu")(np.zeros(2, "float32")), [1, 1])
