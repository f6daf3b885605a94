"""The thread owner's measured choice between a serial and a parallel variant."""
import time

from graphnet.compiler.runtime.threads import MeasuredChoice


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
