"""Background compile workers: a job compiled in a worker process is loaded here without compiling."""
import os
import signal
import time

import numba
import numpy as np
import pytest
from numba import types

from graphnet.compiler.runtime import cache, compile_pool
from graphnet.compiler.runtime.compile_worker import CompileJob

KERNEL_SOURCE = '''\
import numba
import numpy as np


@numba.njit(cache=True)
def axpy(a, x, out):
    for i in range(x.shape[0]):
        out[i] = a * x[i] + out[i]
'''
SIGNATURE = (types.float64, types.Array(types.float64, 1, "C"), types.Array(types.float64, 1, "C"))


@pytest.fixture
def kernel_module(tmp_path, monkeypatch):
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")   # Numba's files next to the module, in tmp_path
    cache.set_cache_dir(tmp_path)
    try:
        yield cache.load_module(KERNEL_SOURCE, name_hint="pooltest")
    finally:
        cache.set_cache_dir(None)


def job_for(module, function="axpy", path=None):
    return CompileJob(path or module.__file__, module.__name__, function, SIGNATURE)


def blocking_path(module, directory):
    """A FIFO named as ``module``'s file: a worker importing it blocks on opening it, provably mid-job."""
    directory.mkdir()
    fifo = directory / os.path.basename(module.__file__)
    os.mkfifo(fifo)
    return str(fifo)


def test_a_kernel_compiled_by_a_worker_loads_here_without_compiling(kernel_module):
    pool = compile_pool.CompilePool()
    ticket = pool.submit(job_for(kernel_module))
    assert ticket.wait(120) and ticket.reason is None
    assert ticket.seconds > 0
    dispatcher = kernel_module.axpy
    assert cache.numba_cached_signature(dispatcher, SIGNATURE)
    dispatcher.compile(SIGNATURE)
    assert cache.count_numba_compiles(dispatcher) == 0 and cache.count_numba_cache_hits(dispatcher) == 1
    out = np.ones(3)
    dispatcher(2.0, np.arange(3.0), out)
    np.testing.assert_array_equal(out, [1.0, 3.0, 5.0])
    assert pool.wait_idle(60) and pool.workers == []   # nothing left to do: the worker exited


def test_the_same_job_twice_shares_one_ticket(kernel_module):
    pool = compile_pool.CompilePool()
    with pool.paused():
        first = pool.submit(job_for(kernel_module))
        assert pool.submit(job_for(kernel_module)) is first
        assert not first.ready and pool.workers == []   # paused: nothing started
    assert first.wait(120) and first.reason is None
    pool.wait_idle(60)


def test_a_compile_that_raises_fails_its_ticket_with_the_reason(kernel_module):
    pool = compile_pool.CompilePool()
    ticket = pool.submit(job_for(kernel_module, function="no_such_kernel"))
    assert ticket.wait(120)
    assert ticket.failed and not ticket.lost
    assert "AttributeError" in ticket.reason and "no_such_kernel" in ticket.reason
    pool.wait_idle(60)


def test_a_killed_worker_fails_its_job_as_lost_and_says_how_it_died(kernel_module, tmp_path):
    pool = compile_pool.CompilePool()
    ticket = pool.submit(job_for(kernel_module, path=blocking_path(kernel_module, tmp_path / "fifo")))
    [worker] = pool.workers
    os.kill(worker.pid, signal.SIGKILL)
    assert ticket.wait(120)
    assert ticket.failed and ticket.lost
    assert f"pid {worker.pid}" in ticket.reason and "killed by signal 9" in ticket.reason
    assert pool.wait_idle(60) and pool.workers == []


def test_a_dropped_ticket_is_not_compiled(kernel_module):
    pool = compile_pool.CompilePool()
    with pool.paused():
        pool.submit(job_for(kernel_module))   # nobody keeps the ticket: the job is skipped
    assert pool.wait_idle(60) and pool.workers == []
    assert not cache.numba_cached_signature(kernel_module.axpy, SIGNATURE)


def test_shutdown_stops_the_workers_and_fails_what_was_queued(kernel_module, tmp_path):
    pool = compile_pool.CompilePool()
    blocked = pool.submit(job_for(kernel_module, path=blocking_path(kernel_module, tmp_path / "fifo")))
    [worker] = pool.workers
    pool.shutdown()
    assert worker.poll() is not None
    assert blocked.wait(60) and blocked.lost
    late = pool.submit(job_for(kernel_module))
    assert late.ready and late.lost and "shut down" in late.reason


def test_the_worker_count_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(compile_pool.WORKERS_ENV, "3")
    assert compile_pool.worker_limit() == 3
    monkeypatch.setenv(compile_pool.WORKERS_ENV, "none")
    with pytest.raises(compile_pool.GraphnetError, match="GRAPHNET_COMPILE_WORKERS"):
        compile_pool.worker_limit()


def test_a_prestarted_worker_compiles_the_first_job_without_starting_another(kernel_module):
    pool = compile_pool.CompilePool()
    pool.prestart()
    [started] = pool.workers
    ticket = pool.submit(job_for(kernel_module))
    assert ticket.wait(120) and ticket.reason is None
    assert [w.pid for w in pool.workers] in ([started.pid], [])   # the same worker, or it exited since
    assert pool.wait_idle(60) and pool.workers == []   # waiting for idle ends the worker's grace


def test_a_prestarted_worker_that_gets_no_job_exits_after_its_grace(monkeypatch):
    monkeypatch.setattr(compile_pool, "PRESTART_GRACE_S", 0.2)
    pool = compile_pool.CompilePool()
    pool.prestart()
    [worker] = pool.workers
    worker.wait(60)   # exits by itself: nobody called wait_idle
    deadline = time.monotonic() + 60
    while pool.workers and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.workers == []


def test_prestarting_twice_starts_one_worker(monkeypatch):
    pool = compile_pool.CompilePool()
    pool.prestart()
    pool.prestart()
    assert len(pool.workers) == 1
    assert pool.wait_idle(60) and pool.workers == []


def test_once_its_first_job_is_done_a_prestarted_worker_exits_without_waiting_for_its_grace(kernel_module, monkeypatch):
    # An idle worker counts as compiling (the user's products leave it a core): it must not linger.
    monkeypatch.setattr(compile_pool, "PRESTART_GRACE_S", 600.0)
    pool = compile_pool.CompilePool()
    pool.prestart()
    [worker] = pool.workers
    ticket = pool.submit(job_for(kernel_module))
    assert ticket.wait(120) and ticket.reason is None
    worker.wait(60)   # exits by itself: nobody called wait_idle, the grace is far from over
