"""Shared test machinery: the ``backend`` fixture, a compile-once ``run`` helper and the NumPy
LSTM oracle of the scan tests (``numpy_lstm``).

Every backend that exists runs the same tests. ``"reference"`` (NumPy) is the
oracle; ``"cpu"`` (the Numba compiler) joins as soon as
``graphnet.compiler.pipeline`` exists. Compiling for the CPU costs about half a
second per kernel, so ``compiled`` keeps one Function per (outputs, inputs,
updates, mode, options, backend): tests that build their graph once, at module
level, share it.

Tiered execution is off unless a test turns it on (see below).

The helpers are fixtures (``run``, ``compiled``) rather than imports, because
every ``conftest.py`` outside a package is imported under the same module name.
"""
import importlib.util
import os

import numpy as np
import pytest

# The suite checks compiled kernels against NumPy: a step must run compiled from
# its first call, not on the NumPy tier while its kernel compiles in the
# background (tests/compiler/runtime/test_tiered.py turns tiering on itself).
# Set before graphnet is imported; subprocesses of tests inherit it.
os.environ.setdefault("GRAPHNET_TIERED", "0")

import graphnet as gn

CPU_MISSING = importlib.util.find_spec("graphnet.compiler.pipeline") is None

BACKENDS = [
    pytest.param("reference", id="reference"),
    pytest.param("cpu", id="cpu", marks=pytest.mark.skipif(
        CPU_MISSING, reason="cpu backend not built yet: graphnet.compiler.pipeline does not exist")),
]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The name of a backend that exists: each test using it runs once per backend."""
    return request.param


# Variable ids are never reused, and each cached Function holds its graph alive,
# so a key of ids cannot be confused with a later graph's.
_FUNCTIONS = {}


def compile_once(outputs, inputs, backend, updates=None, training=False, **options):
    """``gn.function(inputs, outputs, ...)``, compiled on first use of this signature, then reused."""
    single = not isinstance(outputs, (list, tuple))
    out_list = [outputs] if single else list(outputs)
    update_list = list(updates.items()) if isinstance(updates, dict) else list(updates or [])
    key = (backend, bool(training), single, tuple(id(o) for o in out_list), tuple(id(p) for p in inputs),
           tuple((id(s), id(e)) for s, e in update_list), tuple(sorted(options.items())))
    fn = _FUNCTIONS.get(key)
    if fn is None:
        fn = gn.function(list(inputs), outputs, updates=update_list or None, backend=backend,
                         training=training, **options)
        _FUNCTIONS[key] = fn
    return fn


def run_once_compiled(outputs, feeds, backend, updates=None, training=False):
    """Values of ``outputs`` (a variable or a list) for ``feeds`` ({placeholder: array})."""
    inputs = sorted(feeds, key=lambda p: p.id)
    fn = compile_once(outputs, inputs, backend, updates=updates, training=training)
    return fn(*[feeds[p] for p in inputs])


@pytest.fixture
def compiled():
    """``compiled(outputs, inputs, backend, updates=None, training=False, **options)`` -> Function."""
    return compile_once


@pytest.fixture
def run():
    """``run(outputs, feeds, backend, updates=None, training=False)`` -> array or list of arrays."""
    return run_once_compiled


def numpy_lstm_loop(x, h, c, w, u, b=0.0):
    """NumPy's LSTM over ``x`` (time first): gates i, f, o, g in that order of ``z``'s column
    blocks, ``z = x_t @ w + h @ u + b``; the stacked hidden states and cells."""
    n = h.shape[1]
    hs, cs = [], []
    for x_t in x:
        z = x_t @ w + h @ u + b
        i, f, o = (1 / (1 + np.exp(-z[:, k * n:(k + 1) * n])) for k in range(3))
        c = f * c + i * np.tanh(z[:, 3 * n:])
        h = o * np.tanh(c)
        hs.append(h)
        cs.append(c)
    return np.array(hs), np.array(cs)


@pytest.fixture
def numpy_lstm():
    """``numpy_lstm(x, h, c, w, u, b=0)`` -> (hidden states, cells): the LSTM oracle of the scan tests."""
    return numpy_lstm_loop
