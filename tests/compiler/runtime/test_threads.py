"""The thread owner's measured choice between a serial and a parallel variant."""
import os
import subprocess
import sys
import time

import pytest

from graphnet.compiler.runtime import threads
from graphnet.compiler.runtime.threads import MeasuredChoice, Neighbours


class FakeNeighbours:
    """Other processes' work as the test says it is."""

    def __init__(self):
        self.busy = False

    def crowded(self, now):
        return self.busy


@pytest.fixture(autouse=True)
def quiet_machine(monkeypatch):
    """Every test here decides what other processes do (the test machine itself may be busy)."""
    fake = FakeNeighbours()
    monkeypatch.setattr(threads, "_neighbours", fake)
    return fake


@pytest.fixture(autouse=True)
def no_background_compiles(monkeypatch):
    """Calls are measured only while no compile worker holds a core: earlier tests' workers
    may still be exiting."""
    monkeypatch.setattr(threads, "_cores_compiling", 0)


def _variants(slow):
    """Two variants; ``slow[i]`` says whether variant i sleeps (a loaded or oversubscribed run)."""
    ran = []

    def make(i):
        def run(x):
            ran.append(i)
            if slow[i]:
                time.sleep(0.02)
        return run
    return [make(0), make(1)], ran


def test_the_faster_variant_is_kept_and_measured_again_when_its_time_jumps():
    slow = [True, False]
    variants, ran = _variants(slow)
    told = []
    choice = MeasuredChoice(variants, told.append)
    for _ in range(2 * (MeasuredChoice.SAMPLES + 1)):
        choice(None)
    assert sorted(set(ran)) == [0, 1] and choice.chosen == 1
    del ran[:]
    for _ in range(5):
        choice(None)
    assert ran == [1] * 5
    # A co-tenant makes the chosen variant slow: after JUMPS slow calls it is measured again.
    slow[:] = [False, True]
    for _ in range(MeasuredChoice.JUMPS + 2 * (MeasuredChoice.SAMPLES + 1)):
        choice(None)
    assert choice.chosen == 0 and told[-1] == 0


def test_every_variant_gets_its_own_warm_up_call_before_it_is_timed():
    variants, ran = _variants([False, False])
    choice = MeasuredChoice(variants)
    for _ in range(2 * (MeasuredChoice.SAMPLES + 1)):
        choice(None)
    assert ran.count(0) == ran.count(1) == MeasuredChoice.SAMPLES + 1


def test_a_serial_choice_that_slows_down_is_not_measured_again_until_the_periodic_check():
    slow = [False, True]
    variants, ran = _variants(slow)
    choice = MeasuredChoice(variants)
    for _ in range(2 * (MeasuredChoice.SAMPLES + 1)):
        choice(None)
    assert choice.chosen == 0
    slow[:] = [True, True]     # other work slows everything: threads would not help
    del ran[:]
    for _ in range(MeasuredChoice.JUMPS + 3):
        choice(None)
    assert ran == [0] * (MeasuredChoice.JUMPS + 3)


def test_a_parallel_variant_barely_faster_is_not_chosen():
    # 5% faster (sleeps long enough that timer jitter is far below the 15% margin): the serial
    # one is kept (threads that do not pay are left idle). Two no-op variants, timed, were
    # once measured 15% apart on a loaded machine.
    variants = [lambda x: time.sleep(0.010), lambda x: time.sleep(0.0095)]
    choice = MeasuredChoice(variants)
    for _ in range(2 * (MeasuredChoice.SAMPLES + 1)):
        choice(None)
    assert choice.chosen == 0


def test_while_other_processes_hold_cores_the_serial_variant_runs_unmeasured(quiet_machine):
    slow = [True, False]
    variants, ran = _variants(slow)
    told = []
    choice = MeasuredChoice(variants, told.append)
    for _ in range(2 * (MeasuredChoice.SAMPLES + 1)):
        choice(None)
    assert choice.chosen == 1
    quiet_machine.busy = True
    del ran[:]
    for _ in range(4):
        choice(None)
    assert ran == [0] * 4 and told[-1] == 0
    # They stopped: both variants are measured afresh, and the faster one kept.
    quiet_machine.busy = False
    for _ in range(2 * (MeasuredChoice.SAMPLES + 1)):
        choice(None)
    assert choice.chosen == 1 and told[-1] == 1


def test_a_choice_that_is_not_about_threads_ignores_other_processes(quiet_machine):
    quiet_machine.busy = True
    variants, ran = _variants([True, False])
    choice = MeasuredChoice(variants, threads=False)
    for _ in range(2 * (MeasuredChoice.SAMPLES + 1)):
        choice(None)
    assert choice.chosen == 1


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads /proc/stat (Linux)")
def test_a_process_spinning_beside_us_counts_as_a_crowd():
    neighbours = Neighbours()
    spinner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.3)
        start = time.perf_counter()
        while time.perf_counter() - start < 1.2:
            busy = neighbours.crowded(time.perf_counter())
            time.sleep(0.05)
        assert busy
    finally:
        spinner.kill()
        spinner.wait()


def test_calls_while_background_compiles_hold_cores_are_not_measured():
    slow = [False, True]    # the parallel variant slow: its cores are compiling
    variants, ran = _variants(slow)
    choice = MeasuredChoice(variants)
    threads.compiling_elsewhere(1)
    try:
        for _ in range(3 * (MeasuredChoice.SAMPLES + 1)):
            choice(None)
        assert choice.chosen is None and choice.times == [[], []]
    finally:
        threads.compiling_elsewhere(0)
    slow[:] = [True, False]  # the compiles ended: the parallel variant is the faster
    for _ in range(2 * (MeasuredChoice.SAMPLES + 1)):
        choice(None)
    assert choice.chosen == 1


def test_while_a_variant_compiles_in_the_background_a_compiled_one_runs_unmeasured():
    compiled = [1]            # the first calls compiled the parallel variant only
    variants, ran = _variants([False, True])
    choice = MeasuredChoice(variants, ready=lambda *args: list(compiled))
    for _ in range(5):
        choice(None)
    assert ran == [1] * 5 and choice.chosen is None and choice.times == [[], []]
    compiled[:] = [0, 1]      # both loaded: measured, and the faster kept
    for _ in range(2 * (MeasuredChoice.SAMPLES + 1)):
        choice(None)
    assert choice.chosen == 0


BLOCK = MeasuredChoice.SAMPLES + 1


@pytest.mark.parametrize("settle_after, settles", [((0,), False), (None, True)])
def test_only_a_switch_away_from_a_variant_that_leaves_threads_spinning_waits_to_settle(settle_after, settles):
    # The measurement starts on variant 1, then switches to 0: with settle_after=(0,), leaving 1
    # needs no settling, so both blocks count at once; else the calls of 0 inside the
    # settling time are not counted and no choice is made yet.
    variants, ran = _variants([False, False])
    choice = MeasuredChoice(variants, block=BLOCK, settle_s=5.0, settle_after=settle_after)
    for _ in range(2 * BLOCK):
        choice(None)
    assert ran == [1] * BLOCK + [0] * BLOCK
    assert (choice.chosen is None) == settles


def test_slow_calls_while_settling_after_the_switch_to_the_choice_do_not_measure_again():
    slow = [True, False]
    variants, ran = _variants(slow)
    choice = MeasuredChoice(variants, block=BLOCK, settle_s=0.3, settle_after=(0,))
    for _ in range(2 * BLOCK):
        choice(None)
    assert choice.chosen == 1          # and leaving variant 0 started the settling time
    slow[:] = [True, True]             # what variant 0 left behind slows the first calls
    for _ in range(MeasuredChoice.JUMPS + 1):
        choice(None)
    assert choice.chosen == 1
    time.sleep(0.3)                    # settled: a jump now is a real one
    for _ in range(MeasuredChoice.JUMPS):
        choice(None)
    assert choice.chosen is None


def test_with_no_margin_a_variant_barely_faster_is_chosen():
    variants = [lambda x: time.sleep(0.010), lambda x: time.sleep(0.0090)]
    choice = MeasuredChoice(variants, margin=1.0)
    for _ in range(2 * BLOCK):
        choice(None)
    assert choice.chosen == 1


def openmp_at_import(env_extra):
    """(what Numba's OpenMP runtime started with, the environment after ``import graphnet``) in a
    fresh process: GNU OpenMP prints its settings at start with ``OMP_DISPLAY_ENV``."""
    env = {k: v for k, v in os.environ.items() if k not in threads.OPENMP_SETTINGS}
    env.update(env_extra, OMP_DISPLAY_ENV="TRUE")
    done = subprocess.run([sys.executable, "-c", "import os, graphnet; print('after', os.environ.get('OMP_WAIT_POLICY'))"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    started = [line.split("=", 1)[1].strip().strip("'") for line in done.stderr.splitlines()
               if line.strip().startswith("OMP_WAIT_POLICY")]
    after = done.stdout.split("after", 1)[1].strip()
    return started, after


def test_numbas_threads_wait_passively_but_the_setting_does_not_stay_in_the_environment():
    started, after = openmp_at_import({})
    if not started:
        pytest.skip("Numba's threading layer here is not GNU OpenMP")
    # Left in the environment, PyTorch's own OpenMP (and the benchmark's peer processes) read it too.
    assert started == ["PASSIVE"] and after == "None"


def test_an_openmp_wait_policy_the_user_set_is_kept():
    started, after = openmp_at_import({"OMP_WAIT_POLICY": "ACTIVE"})
    if not started:
        pytest.skip("Numba's threading layer here is not GNU OpenMP")
    assert started == ["ACTIVE"] and after == "ACTIVE"
