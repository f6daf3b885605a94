"""The on-disk kernel cache: content-addressed files, safe across processes, warm in a new one."""

import hashlib
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from numba.core import config as numba_config

from graphnet.compiler.runtime import cache
from graphnet.errors import CacheError, CompileError, GraphnetError

KERNEL_SOURCE = '''\
import numba
import numpy as np


@numba.njit(cache=True)
def axpy(a, x, y):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = a * x[i] + y[i]
    return out
'''
EXPECTED = [1.0, 3.0, 5.0, 7.0, 9.0]  # axpy(2.0, arange(5.0), ones(5))

# Runs in a fresh interpreter: loads KERNEL_SOURCE through the cache, calls it,
# and prints what happened as JSON.  READY/GO files line up concurrent workers.
WORKER = '''
import json, os, sys, time
import numpy as np
from graphnet.compiler.runtime import cache

ready, go = os.environ.get("READY_FILE"), os.environ.get("GO_FILE")
if ready:
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.001)
with open(sys.argv[1]) as file:
    source = file.read()
module = cache.load_module(source, name_hint="kernels")
result = module.axpy(2.0, np.arange(5.0), np.ones(5))
print(json.dumps({
    "result": result.tolist(),
    "compiles": cache.count_numba_compiles(module.axpy),
    "cache_hits": cache.count_numba_cache_hits(module.axpy),
    "stats": cache.compile_stats(),
}))
'''

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(cache.__file__)))))


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    directory = tmp_path / "cache"
    monkeypatch.setenv(cache.ENV_VAR, str(directory))
    cache.set_cache_dir(None)
    yield directory
    cache.set_cache_dir(None)


def _worker_env(cache_dir, **extra):
    env = dict(os.environ, **extra)
    env[cache.ENV_VAR] = str(cache_dir)
    env.pop("NUMBA_CACHE_DIR", None)  # keep Numba's cache next to the module, inside cache_dir
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    return env


def _source_file(tmp_path):
    path = tmp_path / "kernel_source.py.txt"
    path.write_text(KERNEL_SOURCE)
    return str(path)


def _run_worker(cache_dir, tmp_path):
    completed = subprocess.run(
        [sys.executable, "-c", WORKER, _source_file(tmp_path)],
        env=_worker_env(cache_dir), capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _module_files(directory):
    return sorted(name for name in os.listdir(directory) if name.endswith(".py"))


def _header_matches(path):
    with open(path, "rb") as file:
        data = file.read()
    header, _, rest = data.partition(b"\n")
    return header.decode() == cache.HEADER_PREFIX + hashlib.sha256(rest).hexdigest()


# -- in one process ----------------------------------------------------------


def test_same_source_gives_the_same_module(cache_dir):
    first = cache.load_module(KERNEL_SOURCE)
    second = cache.load_module(KERNEL_SOURCE)
    assert first is second
    assert first.axpy(2.0, np.arange(5.0), np.ones(5)).tolist() == EXPECTED


def test_module_file_starts_with_a_header_hashing_the_rest(cache_dir):
    module = cache.load_module(KERNEL_SOURCE, name_hint="mlp_step")
    path = cache.entry_path(KERNEL_SOURCE, "mlp_step")
    assert module.__file__ == path
    assert os.path.basename(path) == f"mlp_step_{cache.cache_key(KERNEL_SOURCE)[:24]}.py"
    with open(path) as file:
        first_line, rest = file.read().split("\n", 1)
    assert first_line.startswith(cache.HEADER_PREFIX)
    assert rest == KERNEL_SOURCE
    assert _header_matches(path)


def test_module_is_registered_in_sys_modules_for_numba(cache_dir):
    module = cache.load_module(KERNEL_SOURCE)
    assert sys.modules[module.__name__] is module


def test_different_sources_get_different_files(cache_dir):
    cache.load_module(KERNEL_SOURCE)
    cache.load_module(KERNEL_SOURCE + "\nANSWER = 42\n")
    assert len(_module_files(cache_dir)) == 2


def test_key_covers_graphnet_numba_and_python_versions(monkeypatch):
    before = cache.cache_key(KERNEL_SOURCE)
    monkeypatch.setattr(cache.numba, "__version__", "0.0.0-other")
    assert cache.cache_key(KERNEL_SOURCE) != before


def test_corrupt_entry_is_rewritten_and_never_imported(cache_dir):
    os.makedirs(cache_dir)
    path = cache.entry_path(KERNEL_SOURCE)
    with open(path, "w") as file:  # no header: must not run
        file.write("raise RuntimeError('a corrupt cache entry was imported')\n")
    removed_before = cache.compile_stats()["corrupt_entries_removed"]
    module = cache.load_module(KERNEL_SOURCE)
    assert module.axpy(2.0, np.arange(5.0), np.ones(5)).tolist() == EXPECTED
    assert _header_matches(path)
    assert cache.compile_stats()["corrupt_entries_removed"] == removed_before + 1


def test_entry_with_a_valid_header_over_other_content_is_replaced(cache_dir):
    os.makedirs(cache_dir)
    path = cache.entry_path(KERNEL_SOURCE)
    body = b"raise RuntimeError('an edited cache entry was imported')\n"
    with open(path, "wb") as file:
        file.write(f"{cache.HEADER_PREFIX}{hashlib.sha256(body).hexdigest()}\n".encode() + body)
    module = cache.load_module(KERNEL_SOURCE)
    assert module.axpy(2.0, np.arange(5.0), np.ones(5)).tolist() == EXPECTED
    with open(path) as file:
        assert file.read().split("\n", 1)[1] == KERNEL_SOURCE


def test_no_scratch_files_are_left_behind(cache_dir):
    cache.load_module(KERNEL_SOURCE)
    assert [name for name in os.listdir(cache_dir) if name.startswith(".")] == []


def test_name_hint_must_be_an_identifier(cache_dir):
    with pytest.raises(GraphnetError, match="name_hint"):
        cache.load_module(KERNEL_SOURCE, name_hint="../evil")


def test_module_that_fails_to_run_raises_compile_error_naming_its_file(cache_dir):
    source = "raise ValueError('bad generated code')\n"
    with pytest.raises(CompileError, match="bad generated code") as info:
        cache.load_module(source)
    path = cache.entry_path(source)
    assert path in str(info.value)
    assert "_graphnet_" + os.path.basename(path)[:-3] not in sys.modules


# -- where the cache lives -----------------------------------------------------


def test_cache_dir_comes_from_graphnet_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "mine"))
    assert cache.get_cache_dir() == str(tmp_path / "mine")


def test_cache_dir_defaults_under_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv(cache.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.get_cache_dir() == str(tmp_path / "xdg" / "graphnet")


def test_cache_dir_defaults_to_dot_cache_in_home(tmp_path, monkeypatch):
    monkeypatch.delenv(cache.ENV_VAR, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache.get_cache_dir() == str(tmp_path / ".cache" / "graphnet")


def test_set_cache_dir_overrides_the_environment(tmp_path, cache_dir):
    cache.set_cache_dir(tmp_path / "override")
    assert cache.get_cache_dir() == str(tmp_path / "override")
    cache.set_cache_dir(None)
    assert cache.get_cache_dir() == str(cache_dir)


def test_clear_cache_empties_the_directory(cache_dir):
    module = cache.load_module(KERNEL_SOURCE)
    module.axpy(2.0, np.arange(5.0), np.ones(5))  # Numba writes its cache under __pycache__
    cache.load_module("VALUE = 1\n", name_hint="constants")
    if not numba_config.CACHE_DIR:  # else Numba keeps its files under NUMBA_CACHE_DIR
        assert os.path.isdir(cache_dir / "__pycache__")
    cache.clear_cache()
    assert os.listdir(cache_dir) == []


def test_load_after_clear_cache_writes_the_module_again(cache_dir):
    cache.load_module(KERNEL_SOURCE)
    cache.clear_cache()
    module = cache.load_module(KERNEL_SOURCE)
    assert os.path.exists(module.__file__)
    assert module.axpy(2.0, np.arange(5.0), np.ones(5)).tolist() == EXPECTED


def test_clear_cache_of_a_missing_directory_does_nothing(cache_dir):
    cache.clear_cache()
    assert not os.path.exists(cache_dir)


def test_clear_cache_keeps_files_that_are_not_its_own(cache_dir):
    cache.load_module(KERNEL_SOURCE)
    (cache_dir / "notes.txt").write_text("mine")
    cache.clear_cache()
    assert os.listdir(cache_dir) == ["notes.txt"]


def test_directory_that_cannot_be_created_raises_cache_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cache.set_cache_dir(blocker / "cache")
    try:
        with pytest.raises(CacheError) as info:
            cache.load_module(KERNEL_SOURCE)
    finally:
        cache.set_cache_dir(None)
    message = str(info.value)
    assert str(blocker / "cache") in message
    assert cache.ENV_VAR in message and "set_cache_dir" in message


def test_read_only_directory_raises_cache_error(cache_dir):
    os.makedirs(cache_dir)
    os.chmod(cache_dir, 0o500)
    try:
        if os.access(cache_dir, os.W_OK):
            pytest.skip("this user can write to a read-only directory (root)")
        with pytest.raises(CacheError, match=cache.ENV_VAR) as info:
            cache.load_module(KERNEL_SOURCE)
        assert str(cache_dir) in str(info.value)
    finally:
        os.chmod(cache_dir, 0o700)


# -- across processes ----------------------------------------------------------


def test_second_process_loads_kernels_from_numba_cache(cache_dir, tmp_path):
    first = _run_worker(cache_dir, tmp_path)
    assert first["result"] == EXPECTED
    assert (first["compiles"], first["cache_hits"]) == (1, 0)
    assert first["stats"]["modules_written"] == 1
    (path,) = [os.path.join(cache_dir, name) for name in _module_files(cache_dir)]
    stamp = os.stat(path)

    second = _run_worker(cache_dir, tmp_path)
    assert second["result"] == EXPECTED
    assert (second["compiles"], second["cache_hits"]) == (0, 1)
    assert second["stats"]["modules_written"] == 0
    assert second["stats"]["modules_loaded"] == 1
    after = os.stat(path)  # never rewritten: Numba keys its cache on mtime and size
    assert (after.st_ino, after.st_mtime_ns) == (stamp.st_ino, stamp.st_mtime_ns)


def test_truncated_entry_is_detected_and_rewritten_by_the_next_process(cache_dir, tmp_path):
    assert _run_worker(cache_dir, tmp_path)["result"] == EXPECTED
    (path,) = [os.path.join(cache_dir, name) for name in _module_files(cache_dir)]
    size = os.path.getsize(path)
    with open(path, "r+b") as file:
        file.truncate(size // 2)

    second = _run_worker(cache_dir, tmp_path)
    assert second["result"] == EXPECTED
    assert second["stats"]["corrupt_entries_removed"] == 1
    assert second["stats"]["modules_written"] == 1
    assert os.path.getsize(path) == size and _header_matches(path)

    third = _run_worker(cache_dir, tmp_path)  # the rewritten entry is warm again
    assert (third["compiles"], third["cache_hits"]) == (0, 1)


def test_processes_racing_on_a_new_source_share_one_file(cache_dir, tmp_path):
    source_file = _source_file(tmp_path)
    go = tmp_path / "go"
    workers, ready_files = [], []
    for number in range(2):
        ready = tmp_path / f"ready{number}"
        ready_files.append(ready)
        env = _worker_env(cache_dir, READY_FILE=str(ready), GO_FILE=str(go))
        workers.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, source_file],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    try:
        deadline = time.monotonic() + 120
        while not all(ready.exists() for ready in ready_files):
            assert time.monotonic() < deadline, "workers did not start"
            assert all(worker.poll() is None for worker in workers), "a worker died before the race"
            time.sleep(0.01)
        go.touch()
        outputs = [worker.communicate(timeout=300) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    reports = []
    for worker, (stdout, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr
        reports.append(json.loads(stdout.strip().splitlines()[-1]))
    assert [report["result"] for report in reports] == [EXPECTED, EXPECTED]
    assert sum(report["stats"]["modules_written"] for report in reports) == 1
    assert len(_module_files(cache_dir)) == 1
    assert [name for name in os.listdir(cache_dir) if name.startswith(".")] == []
