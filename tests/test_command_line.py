"""``python -m graphnet COMMAND``: a GraphnetError is one line on stderr and exit status 2.

The commands run in a subprocess, as a user types them: the exit status and
the two streams are what the user sees.
"""
import os
import subprocess
import sys

from graphnet.__main__ import USER_ERROR_STATUS, one_line


def run_command(*args, cwd=None, **env):
    environment = {**os.environ, **env}
    environment.pop("NUMBA_ENABLE_CUDASIM", None)
    return subprocess.run([sys.executable, "-m", "graphnet", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=environment)


# NUMBA_DISABLE_CUDA=1 makes "no usable GPU" true on every machine, GPU or not.
NO_GPU = run_command("demo", "--backend", "cuda", "--quick", "--quiet", "--report-dir", os.devnull,
                     NUMBA_DISABLE_CUDA="1")


def test_a_graphnet_error_exits_with_status_2():
    assert NO_GPU.returncode == USER_ERROR_STATUS == 2


def test_a_graphnet_error_is_one_line_on_stderr_with_no_traceback():
    lines = NO_GPU.stderr.strip().splitlines()
    assert len(lines) == 1, NO_GPU.stderr
    assert "Traceback" not in NO_GPU.stderr
    assert lines[0].startswith("python -m graphnet demo: GraphnetError: backend='cuda': no usable NVIDIA GPU")
    assert "use backend='cpu'" in lines[0]


def test_traceback_flag_shows_the_whole_trace():
    result = run_command("--traceback", "demo", "--backend", "cuda", "--quick", "--quiet",
                         "--report-dir", os.devnull, NUMBA_DISABLE_CUDA="1")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("graphnet.errors.GraphnetError: backend='cuda'")


def test_one_line_joins_the_lines_of_a_message():
    assert one_line("no usable GPU (driver not found.\n   Ensure a driver is installed.); use cpu\n") == \
        "no usable GPU (driver not found. Ensure a driver is installed.); use cpu"
