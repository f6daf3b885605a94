"""Every CUDA device test passes under NVIDIA's CUDA simulator (a child pytest per file)."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEVICE_TESTS = sorted((Path(__file__).parent / "device").glob("test_*.py"))


@pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None,
                    reason="numba-cuda is not installed (pip install -e '.[cuda]')")
@pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") == "1",
                    reason="this process runs the simulator itself: tests/cuda/device is collected directly")
@pytest.mark.parametrize("test_file", DEVICE_TESTS, ids=lambda path: path.stem)
def test_device_tests_pass_under_the_cuda_simulator(test_file):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    command = [sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-p", "no:cacheprovider", str(test_file)]
    child = subprocess.run(command,
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, f"{test_file.name} under the simulator:\n{child.stdout[-8000:]}\n{child.stderr[-3000:]}"
    assert " passed" in child.stdout and " skipped" not in child.stdout, child.stdout[-2000:]
