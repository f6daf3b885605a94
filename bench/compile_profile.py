"""Where a cold compile goes: every Numba compile of W7's step, in line, with its callees and its time.

Runs W7 (``bench/lstm_w7.py``'s graphnet script) in a fresh process with an
empty kernel cache and ``GRAPHNET_TIERED=0`` (every kernel and loop compiled in
line on the first call, so that one thread does all of it), listens to Numba's
``numba:compile`` events and prints each compile: when it started, how long it
took, nested under the compile that called it (a loop's kernels, a kernel's
helpers, Numba's own implementations of ``np.empty`` or ``np.dot``). Then the
totals: the top-level compiles, and the time in Numba's Python lowering, LLVM's
function and module passes and machine code (``--split``, which wraps Numba's
code library).

    python -m bench.compile_profile [--install] [--split]

``--install`` empties Numba's cache too (``NUMBA_CACHE_DIR``): graphnet's own
helpers (``render/vector_math.py``, ``row_math.py``) compile as well, as on the
first run after installing; without it they load from the package's cache,
the issue's "cold" (an empty ``GRAPHNET_CACHE_DIR``, a fresh process).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

from bench import lstm_w7

LISTENER = r'''
import collections, functools, time
from numba.core import codegen, event, lowering
_T0, _STACK, EVENTS, SPLIT = time.perf_counter(), [], [], collections.Counter()
class _Compiles(event.Listener):
    def on_start(self, ev):
        _STACK.append((ev.data["dispatcher"].py_func, time.perf_counter()))
    def on_end(self, ev):
        function, start = _STACK.pop()
        EVENTS.append((len(_STACK), f"{function.__module__.rsplit('.', 1)[-1]}.{function.__qualname__}",
                       start - _T0, time.perf_counter() - start))
event.register("numba:compile", _Compiles())
def _timed(cls, name, label):
    original = getattr(cls, name)
    @functools.wraps(original)
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            SPLIT[label] += time.perf_counter() - start
    setattr(cls, name, timed)
if %(split)r:
    _timed(lowering.Lower, "lower", "Numba lowering (Python)")
    _timed(codegen.CPUCodeLibrary, "_optimize_functions", "LLVM function passes")
    _timed(codegen.CPUCodeLibrary, "_optimize_final_module", "LLVM module passes")
    _timed(codegen.JITCodeLibrary, "_finalize_specific", "LLVM machine code")
'''

REPORT = r'''
print("start s  compile s  function (callees indented)")
for depth, name, start, seconds in sorted(EVENTS, key=lambda e: e[2]):
    print(f"{start:7.2f}  {seconds:9.2f}  {'  ' * depth}{name}")
top = [e for e in EVENTS if e[0] == 0]
print(f"{len(top)} top-level compiles, {sum(e[3] for e in top):.2f} s; {len(EVENTS)} compiles in all")
for label, seconds in SPLIT.most_common():
    print(f"{seconds:6.2f} s  {label}")
'''


def script(split):
    body = lstm_w7.SCRIPTS["graphnet"].split("cold = time.perf_counter() - start")[0]
    return (LISTENER % {"split": split} + lstm_w7.COMMON % {"shape": tuple(lstm_w7.SHAPE)} + body
            + "print(f'build + first step (every compile in line): {time.perf_counter() - start:.2f} s')\n"
            + REPORT)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install", action="store_true", help="Numba's cache empty too (graphnet's helpers compile)")
    parser.add_argument("--split", action="store_true", help="time Numba's lowering and LLVM's stages")
    args = parser.parse_args(argv)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "w7_profile.py")
        with open(path, "w") as file:
            file.write(script(args.split))
        env = dict(os.environ, GRAPHNET_QUIET="1", GRAPHNET_TIERED="0", GRAPHNET_CACHE_DIR=os.path.join(work, "k"),
                   OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        if args.install:
            env["NUMBA_CACHE_DIR"] = os.path.join(work, "numba")
        done = subprocess.run([sys.executable, path, "1", "1", "1"], env=env, cwd=root)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
