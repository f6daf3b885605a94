"""The generated kernels compile for a real GPU, not only run in the simulator."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None, reason="numba-cuda is not installed")
def test_every_kernel_compiles_to_ptx_for_compute_capability_7_5():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parents[1])] + [p for p in [env.get("PYTHONPATH")] if p])
    child = subprocess.run([sys.executable, str(HERE / "compile_kernels_to_ptx.py")], cwd=HERE.parents[1],
                           env=env, capture_output=True, text=True, timeout=600)
    if child.returncode == 3:
        pytest.skip(child.stdout.strip())
    assert child.returncode == 0, child.stdout[-8000:] + child.stderr[-3000:]
    assert child.stdout.count("ok   ") >= 30, child.stdout
