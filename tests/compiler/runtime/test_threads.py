"""The thread owner's measured choice between a serial and a parallel variant."""
import time

import pytest

from graphnet.compiler.runtime import threads
from graphnet.compiler.runtime.threads import MeasuredChoice


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
    times = iter([0.0] * 100)
    variants = [lambda x: None, lambda x: None]
    choice = MeasuredChoice(variants)
    # Both as fast: the serial one is kept (threads that do not pay are left idle).
    for _ in range(2 * (MeasuredChoice.SAMPLES + 1)):
        choice(next(times))
    assert choice.chosen == 0


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
