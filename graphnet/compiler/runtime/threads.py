"""One owner of the thread budget: Numba's kernel threads and BLAS threads (NumPy's
OpenBLAS, and SciPy's, which Numba's ``np.dot`` calls inside compiled code).

Measured on 2 cores: a training step with OpenMP threads spinning against
OpenBLAS's ran 62 ms instead of 9 ms. graphnet therefore (1) makes OpenMP
threads wait passively (set while Numba starts its threading layer, and only then), (2) runs
kernels and BLAS calls one after the other, never at once, and (3) runs a
kernel in parallel only when it is large enough to amortize waking threads, and
(4) gives a matrix product every BLAS thread only when it is large enough to
feed them: a small GEMM (a mini-batch of 16 through a 784x1024 layer) runs on
one thread, which is as fast on a quiet machine and does not collapse beside a
busy one (2 spinning BLAS threads against a co-tenant slowed a step 6-7x).
``set_num_threads(n)`` sets both pools; ``GRAPHNET_PARALLEL_MIN_ELEMENTS`` and
``GRAPHNET_BLAS_PARALLEL_MIN_MACS`` move the two thresholds.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from time import perf_counter

import numba  # noqa: E402

#: OpenMP's settings for Numba's threads: they wait passively (a spinning thread took the core
#: a BLAS thread or the other kernel thread needed, DESIGN.md). OpenMP reads them when it
#: starts, so they are in the environment only while Numba's pool starts (at import, below),
#: unless the user set them: another library's OpenMP (PyTorch's own libgomp) and child
#: processes keep the user's environment. Left in it, they slowed PyTorch's W7 step beside
#: graphnet 4x (31.5 against 8.2 ms), in the process and in the benchmark's peer processes.
OPENMP_SETTINGS = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


def _start_numba_threads():
    """Start Numba's thread pool with ``OPENMP_SETTINGS``, then take them out of the environment."""
    added = {name: value for name, value in OPENMP_SETTINGS.items() if name not in os.environ}
    os.environ.update(added)
    try:
        from numba.np.ufunc import parallel
        parallel._launch_threads()
    except Exception:  # noqa: BLE001 - a Numba without this entry: the settings stay set, as before
        return
    for name in added:
        os.environ.pop(name, None)


_start_numba_threads()

#: kernels with fewer elements run serially: waking threads costs more, and a
#: parallel variant costs a second compile (~1 s cold) the first time it runs
PARALLEL_MIN_ELEMENTS = int(os.environ.get("GRAPHNET_PARALLEL_MIN_ELEMENTS", 1 << 18))

#: matrix products with fewer multiply-adds run on one BLAS thread; larger ones are measured.
#: Not 2^22: the Theano MLP tutorial's two 20x784x500 products (7.8M) each measured 33% faster
#: on two threads, but with both on two threads the minibatch ran 1.9x slower (OpenBLAS's
#: threads spin on after a product and slow the kernels after it), which a per-call
#: measurement does not see; over 3 runs each, 1.17 ms a minibatch against 1.00 ms at 2^24.
#: Not 2^24 since OpenBLAS runs its AVX-512 kernels (AMD Zen 5): W1 at batch 16's 16x784 @
#: 784x1024 and 784x16 @ 16x1024 (12.8M) take 326 / 239 us on one thread, 217 / 159 on two,
#: and the step 2.08-2.58 ms at 2^24 against 1.78-1.98 at 2^23 (three runs each)
BLAS_PARALLEL_MIN_MACS = int(os.environ.get("GRAPHNET_BLAS_PARALLEL_MIN_MACS", 1 << 23))

_threads = None


def num_threads():
    global _threads
    if _threads is None:
        _threads = numba.config.NUMBA_NUM_THREADS
    return _threads


def set_num_threads(n):
    """Use ``n`` threads for graphnet kernels and (when threadpoolctl is installed) BLAS."""
    global _threads
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    _threads = n
    numba.set_num_threads(n)
    if _blas is not None:
        _blas.current = None   # threadpoolctl below sets it behind our back
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(n, user_api="blas")
    if _scipy is not None:   # it set SciPy's too, which stays on one thread (compiled_code_blas)
        _scipy.current = None
        _scipy.use(1)


def use_parallel(elements, rows):
    return num_threads() > 1 and elements >= PARALLEL_MIN_ELEMENTS and rows >= num_threads()


def chunks(rows):
    """Row blocks for a parallel kernel: one per thread."""
    return max(1, min(rows, num_threads()))


# ------------------------------------------------------------------ BLAS threads
class _OpenBlas:
    """An OpenBLAS's thread count, set through its C API (threadpoolctl takes ~50 us a call;
    this takes well under one). ``_OpenBlas(SETTERS)`` is NumPy's (the first OpenBLAS loaded
    with an ILP64 setter), ``_OpenBlas(SCIPY_SETTERS)`` SciPy's, which Numba's ``np.dot`` calls
    inside compiled code. Inert when no such OpenBLAS is loaded here."""

    SETTERS = ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "openblas_set_num_threads")
    SCIPY_SETTERS = ("scipy_openblas_set_num_threads",)

    def __init__(self, setters=SETTERS):
        import ctypes

        import numpy  # noqa: F401  (its BLAS must be loaded to be found)

        from graphnet.compiler.runtime.openblas import loaded_openblas
        # Not Linux, or no OpenBLAS with such a setter: BLAS keeps its own policy
        self._set, self.current = None, None
        for _, library in loaded_openblas():
            setter = next((getattr(library, n) for n in setters if hasattr(library, n)), None)
            if setter is not None:
                setter.argtypes, setter.restype = [ctypes.c_int], None
                self._set = setter
                break

    def use(self, n):
        if n != self.current:
            if self._set is not None:
                self._set(n)
            self.current = n


_blas = None
_scipy = None

#: cores that graphnet's background compile workers take now (``compile_pool`` keeps the count):
#: BLAS threads spinning beside a compiling worker slowed its compiles 2-3x and the steps too
_cores_compiling = 0


def compiling_elsewhere(cores):
    """Leave ``cores`` of the budget to background compile workers (0 when they are done)."""
    global _cores_compiling
    _cores_compiling = max(0, int(cores))


def use_one_blas_thread():
    """Set NumPy's BLAS to one thread (a product run in small panels, compiled code's products)."""
    _numpy_blas().use(1)


def compiled_code_blas():
    """NumPy's BLAS, for the entry of compiled code that multiplies (a driver, a compiled loop):
    its products run below ``BLAS_PARALLEL_MIN_MACS`` (``measured_blas``), so both OpenBLAS
    builds must be on one thread when it runs. NumPy's the entry sets (``if blas.current != 1:
    blas.use(1)``, ~30 ns: a large product may have raised it since); SciPy's, which Numba's
    ``np.dot`` calls and only compiled code does, is set to one thread here, once, and stays
    there. Left at its default (every core) it threaded W7's 32x128 @ 128x512 products inside
    the loop, its threads spinning beside Numba's."""
    global _scipy
    if _scipy is None:
        try:
            import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS Numba's np.dot calls)
        except ImportError:
            pass
        _scipy = _OpenBlas(_OpenBlas.SCIPY_SETTERS)
        _scipy.use(1)
    use_one_blas_thread()
    return _numpy_blas()


def blas_budget():
    """BLAS threads a large product may use now: every core but those compiling in the background."""
    return max(1, num_threads() - _cores_compiling)


def blas_threads(m, n, k):
    """Set NumPy's BLAS to the thread count graphnet's policy gives an (m x k) @ (k x n) product."""
    _numpy_blas().use(blas_budget() if m * n * k >= BLAS_PARALLEL_MIN_MACS and not crowded() else 1)


# ------------------------------------------------------------ other processes
class Neighbours:
    """Whether other processes kept more than ``BUSY_CORES`` of the machine busy lately.

    Threads that wait on each other (a parallel kernel's row blocks, OpenBLAS's
    spinning workers) collapse when another process takes their cores: a 2-thread
    GEMM beside one measured a median 46 ms against 1.5 ms alone, while a single
    thread only shares its core. The machine's busy time (``/proc/stat``) minus
    this process's CPU time (every thread of ours, PyTorch's pools included) over
    the last ``INTERVAL`` seconds is the other processes' share; it is read at most
    once per interval, from the call path (one small ``/proc`` read, ~20 us).
    Where ``/proc/stat`` is absent the machine counts as quiet (the thresholds and
    measured choices alone decide). ``GRAPHNET_NEIGHBOUR_CORES`` moves the threshold
    (a large value turns the check off).
    """

    INTERVAL = 0.5
    BUSY_CORES = float(os.environ.get("GRAPHNET_NEIGHBOUR_CORES", 0.5))

    def __init__(self):
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.busy, self.at, self.last = False, perf_counter(), self._read()

    def _read(self):
        """(seconds the whole machine was busy, seconds this process ran) since boot, or None."""
        try:
            with open("/proc/stat", "rb") as stat:
                fields = stat.readline().split()[1:]
        except OSError:
            return None
        # user nice system idle iowait irq softirq steal: all but idle and iowait are work
        jiffies = [int(f) for f in fields[:8]]
        times = os.times()
        return (sum(jiffies) - jiffies[3] - jiffies[4]) / self.tick, times.user + times.system

    def crowded(self, now):
        """Whether other processes used more than ``BUSY_CORES`` cores in the last interval."""
        if now - self.at < self.INTERVAL or self.last is None:
            return self.busy
        sample = self._read()
        others = (sample[0] - self.last[0]) - (sample[1] - self.last[1])
        self.busy = others / (now - self.at) > self.BUSY_CORES
        self.at, self.last = now, sample
        return self.busy


_neighbours = None


def neighbours():
    global _neighbours
    if _neighbours is None:
        _neighbours = Neighbours()
    return _neighbours


def crowded():
    """Whether other processes keep the machine busy now (:class:`Neighbours`): run on one thread."""
    return neighbours().crowded(perf_counter())


# ------------------------------------------------------- choosing by measurement
class MeasuredChoice:
    """Runs one of ``variants`` (callables taking the same arguments, giving the same result):
    the one measured fastest.

    The thresholds above say which kernels and products *may* use every core; whether it
    pays depends on the machine's other work. So for those, the first calls alternate the
    serial and the parallel variant (``SAMPLES`` each) and keep the parallel one only where it
    is faster by more than ``1 - MARGIN`` (15%); the chosen one is
    timed on every call (two ``perf_counter`` reads, nothing beside a kernel this large) and,
    when parallel, measured again when ``JUMP`` times slower than when chosen on ``JUMPS``
    calls in a row (a co-tenant started); either is measured again every ``RECHECK`` calls
    (the co-tenant stopped). ``on_choice(index)`` is told
    each choice (``fn.kernels`` shows which variant ran).

    A choice of threads (``threads=True``: the first variant serial, the others on
    more threads) runs the serial variant, unmeasured, while other processes keep
    the machine busy (:class:`Neighbours`), and is measured afresh once they stop.
    """

    SAMPLES, JUMP, JUMPS, RECHECK, MARGIN = 5, 1.8, 3, 1000, 0.85
    #: calls after the first choice until it is measured again: the first calls of a frame meet
    #: transients (a fresh output's page faults, kernels loading), and a choice made then was
    #: kept for ``RECHECK`` calls (W3's 4096x4096 normalize: serial 4.5 ms chosen over
    #: parallel 3.3 ms in one of two runs)
    FIRST_RECHECK = 50

    def __init__(self, variants, on_choice=None, settle=None, threads=True, ready=None, block=1, settle_s=0.0,
                 settle_after=None, margin=None):
        #: ``settle(variant)``, when given, is told the first choice instead of timing every
        #: call after it (for a choice that load does not change: the caller keeps the variant)
        self.variants, self.on_choice, self.settle = variants, on_choice, settle
        self.neighbours = neighbours() if threads else None
        #: ``ready(*args)``, when given: the indices of the variants that can run these arguments
        #: now (the others compiling in the background); until all can, the first of those runs,
        #: unmeasured (timing a variant that compiles in line would stop the call for a second)
        self.ready = ready
        #: calls of one variant in a row while measuring, and seconds of calls not counted after
        #: a switch (for variants that leave something behind that slows the other for a while:
        #: OpenBLAS's threads spin ~0.1 s after a threaded product); ``settle_after``: the
        #: indices of the variants that do (None: every variant)
        self.block, self.settle_s, self.switched_at = block, settle_s, None
        self.settle_after = None if settle_after is None else frozenset(settle_after)
        #: how much faster than the first variant another must be to be chosen (``MARGIN``)
        self.margin = self.MARGIN if margin is None else margin
        self.crowded = False
        self.rounds = 0   # choices made so far
        self._measure()

    def _measure(self):
        self.chosen, self.times, self.calls = None, [[] for _ in self.variants], 0
        self._choose(len(self.variants) - 1)   # what the thresholds chose, until measured

    def _choose(self, index):
        left = getattr(self, "current", index)
        if self.settle_s and index != left and (self.settle_after is None or left in self.settle_after):
            # Every switch away from a variant that leaves threads spinning, also those of a new
            # measurement (after a crowded spell, a recheck): one not followed by the settling
            # time measured the loops' halves of W7 right after calls with BLAS threads, still
            # spinning (6.1-9.8 against 3.7 ms settled)
            self.switched_at = perf_counter()
        self.current = index
        if self.on_choice is not None:
            self.on_choice(index)

    def _settling(self, now):
        """Whether a call starting ``now`` is within the settling time of the last switch."""
        if self.switched_at is not None and now - self.switched_at < self.settle_s:
            return True
        self.switched_at = None
        return False

    def __call__(self, *args):
        start = perf_counter()
        if self.ready is not None:
            runnable = self.ready(*args)
            if len(runnable) < len(self.variants):
                return self.variants[runnable[0] if runnable else 0](*args)
            self.ready = None
            if self.block > 1:   # until now the first variant ran: measured first, no switch
                self._choose(0)
        if self.neighbours is not None and self.neighbours.crowded(start):
            # Other processes hold cores: threads would wait on them, and timings taken now
            # would not hold once they stop.
            if not self.crowded:
                self.crowded = True
                self._choose(0)
            return self.variants[0](*args)
        if self.crowded:
            self.crowded = False
            self._measure()
        result = self.variants[self.current](*args)
        elapsed = perf_counter() - start
        if self.chosen is None:
            if _cores_compiling:
                # Background compiles hold cores: the "every core" variant gets fewer and would
                # lose a choice then kept after they end (W1 B=128's GEMMs stayed on one thread,
                # 1.8x slower). Measure once the cores are back.
                return result
            samples = self.times[self.current]
            if self._settling(start):
                return result   # this call may still pay for the variant before it
            samples.append(elapsed)
            if all(len(t) > self.SAMPLES for t in self.times):   # the first of each: a warm-up
                # Medians, not minima: beside other work, two threads now and then get a lucky
                # call while most of theirs wait (seen: 2-thread GEMM min 1.5 ms, median 46 ms).
                best = [sorted(t[1:])[len(t[1:]) // 2] for t in self.times]
                # The first variant (serial) unless another is clearly faster: threads that
                # barely pay on a quiet machine are the first to collapse beside a busy one.
                fastest = best.index(min(best))
                self.chosen = fastest if best[fastest] < self.margin * best[0] else 0
                self.rounds += 1
                self.baseline, self.slow = best[self.chosen], 0
                self._choose(self.chosen)
                if self.settle is not None:
                    self.settle(self.variants[self.chosen])
            elif len(samples) % self.block == 0:
                self._choose(min(range(len(self.times)), key=lambda i: len(self.times[i])))
            return result
        self.calls += 1
        # Only a parallel choice is measured again when it slows down: a serial variant slowed
        # by other work would not run faster on threads the other work is using (and timing
        # the parallel variant there costs the most); the periodic check finds a quiet machine.
        # Nor while settling after the switch to the choice: the calls right after the measured
        # BLAS way are slow for a while (W7: 3 in a row, a new measurement every time).
        if self.current and not self._settling(start):
            self.slow = self.slow + 1 if elapsed > self.JUMP * self.baseline else 0
        if self.slow >= self.JUMPS or self.calls >= (self.FIRST_RECHECK if self.rounds == 1 else self.RECHECK):
            self._measure()
        return result


def measured_kernel(serial, parallel, rows, cols, on_choice):
    """``(launch, leading arguments)`` of a generated kernel over ``rows`` x ``cols``: the serial
    variant, or, when the thresholds allow parallel, whichever measures faster
    (``MeasuredChoice``)."""
    if not use_parallel(rows * cols, rows):
        on_choice(0)
        return serial, [rows, cols, 1]
    n = chunks(rows)
    from graphnet.compiler.runtime.tiered import CompiledVariants   # tiered imports this module
    return MeasuredChoice([lambda *args: serial(rows, cols, 1, *args),
                           lambda *args: parallel(rows, cols, n, *args)], on_choice,
                          ready=CompiledVariants([(serial, (rows, cols, 1)), (parallel, (rows, cols, n))])), []


def measured_blas(m, n, k, dot, background=None):
    """``dot(*args)`` on one BLAS thread, or on every core when the product is large enough
    and that measures faster (never while graphnet's own threads hold the cores: ``own_cores``,
    where it runs as two halves: ``in_halves``, whose compiles go to the list ``background``)."""
    def single(*args):
        _numpy_blas().use(1)
        dot(*args)

    if num_threads() == 1 or m * n * k < BLAS_PARALLEL_MIN_MACS:
        single.single_thread = True   # a driver may call np.dot inside njit instead (driver.py)
        return single

    def every_core(*args):
        _numpy_blas().use(blas_budget())
        dot(*args)
    measured = MeasuredChoice([single, every_core])

    started = background.append if background is not None else None

    def halves(a, b, out, *rest):
        _numpy_blas().use(1)
        in_halves(dot, a, b, out, *rest, started=started)
    # Not measured per call: the frame's choice (cores_choice) measures this way as a whole,
    # and a choice still exploring inside it would blur that. One thread, halves of the rows,
    # 1600x128 @ 128x512 1787 -> 1006 us, 128x1024 @ 1024x1024 2276 -> 1242 us (OpenBLAS's
    # two threads: 932, 1161 us, but they spin on after the product).
    own = halves if m >= 2 * OWN_HALF_MIN_ROWS else single

    def product(*args):
        (own if _own_cores else measured)(*args)
    return product


def in_halves(dot, a, b, out, *rest, started=None):
    """``dot(a, b, out, *rest)`` as two products, over the two halves of ``out``'s rows (each on
    one BLAS thread): how a large product takes the second core while graphnet owns it
    (``own_cores``), with no BLAS thread left spinning after it. A product of 2-d arrays runs
    both in one ``prange`` (``gemm_halves``; its compile for these operand types goes to
    ``started``), until that is compiled, and any other, the second half on a helper thread."""
    if getattr(a, "ndim", 0) != 2 or getattr(out, "ndim", 0) != 2 or out.shape[0] < 2:
        dot(a, b, out, *rest)
        return
    from graphnet.compiler.runtime import gemm_halves   # it imports tiered, which imports this module
    if not rest and gemm_halves.run(a, b, out, started):
        return
    cut = out.shape[0] // 2
    other = helpers().submit(dot, a[cut:], b, out[cut:], *rest)
    try:
        dot(a[:cut], b, out[:cut], *rest)
    finally:
        other.result()   # raises what the other half raised, after both ended


_helpers = None
_helpers_lock = threading.Lock()


def helpers():
    """graphnet's helper threads, every core but the caller's (made on first use): a
    convolution's image lanes (``conv_steps.over_images``), the second half of a split loop
    or product. The steps of a call run one after the other, so they never wait on each other."""
    global _helpers
    with _helpers_lock:
        if _helpers is None:
            _helpers = ThreadPoolExecutor(max_workers=max(1, numba.config.NUMBA_NUM_THREADS - 1),
                                          thread_name_prefix="graphnet-helper")
        return _helpers


# ------------------------------------------- who takes the second core: BLAS or graphnet
_own_cores = False

#: rows each half of a product split while graphnet owns the cores takes at least
OWN_HALF_MIN_ROWS = 32


def own_cores():
    """Whether this call's second core is graphnet's (a loop run as two halves of its batch,
    ``split_loop.py``) rather than BLAS's: then every product runs on one BLAS thread."""
    return _own_cores


def cores_choice(entry, ready):
    """``entry(feeds)`` run one of two ways, the one measured faster over whole calls: BLAS
    threads for the large products (as each product's own choice says), or graphnet's own
    threads (``own_cores``) with every product on one BLAS thread. ``ready()``: whether
    graphnet's threads can run now (the halves' compile done); until then, the first way.

    A per-product measurement cannot make this choice: OpenBLAS's threads spin for a while
    after each threaded product and slow whatever runs next on their core (W7, 2 threads:
    10.7 ms a step with BLAS threads beside the loop's two halves, 7.9 ms with OpenBLAS told to
    stop spinning at once, ``OPENBLAS_THREAD_TIMEOUT=4``, which only works when set before
    NumPy loads). Beside a busy machine, the first way (whose products then run on one thread)."""
    def with_own_cores(feeds):
        global _own_cores
        _own_cores = True
        try:
            return entry(feeds)
        finally:
            _own_cores = False

    warm = [0]

    def runnable(feeds):
        # The first calls only the first way, while each large product measures its own threads
        # (their alternating variants would blur the comparison of the two ways).
        warm[0] += 1
        return [0, 1] if warm[0] > CORES_WARM_CALLS and ready() else [0]

    # Each way in one block of calls, the first 0.2 s after leaving the BLAS way not counted:
    # calls right after ones with BLAS threads meet them still spinning (W7: 12.7 against
    # 7.1-8.1 ms). Not after leaving graphnet's own threads, which wait passively: settling
    # there ran the BLAS way, the slower one, for 0.2 s (~40 of W7's calls) every measurement.
    # The faster way wins by any margin: both use every core, so the serial variant's margin
    # (threads that barely pay collapse beside other work) does not apply; W7's own threads,
    # 3.84 against 4.48 ms, lost to it in one run of three.
    return MeasuredChoice([entry, with_own_cores], ready=runnable, block=MeasuredChoice.SAMPLES + 1,
                          settle_s=CORES_SETTLE_S, settle_after=(0,), margin=1.0)


#: calls of a frame before ``cores_choice`` starts comparing: every product's choice made by then
CORES_WARM_CALLS = 4 * (MeasuredChoice.SAMPLES + 1)
#: seconds of calls ``cores_choice`` does not count after switching ways (OpenBLAS spins ~0.1 s)
CORES_SETTLE_S = 0.2


def _numpy_blas():
    global _blas
    if _blas is None:
        _blas = _OpenBlas()
    return _blas
