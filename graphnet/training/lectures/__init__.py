"""The lectures, reproduced: one experiment per claim, each a short module of this package.

    python -m graphnet lectures                    # the list
    python -m graphnet lectures initialization     # run one: figures, numbers, the verdict
    python -m graphnet lectures all --out docs/img/lectures

Each experiment module has ``NAME``, ``TITLE``, ``CLAIM`` and
``run(out_dir, size, backend, seed, say) -> Outcome``. ``size`` is "default"
(under a minute on 2 cores), "tiny" (seconds: the tests) or "full" (longer,
where an experiment has more to measure). The experiments live in the
installed package, not in ``examples/``, so the command finds them wherever
graphnet is installed; ``examples/lectures/NAME.py`` are thin scripts that run
the same code.
"""
from __future__ import annotations

import importlib
import os
import time

__all__ = ["EXPERIMENTS", "experiment", "run_experiment"]

#: The experiments, in the order of the issue that asked for them (and of docs/lectures.md).
EXPERIMENTS = ("initialization", "batch_norm", "babysitting", "sanity_checks", "dead_relus", "search",
               "dropout", "gradient_check", "pretraining")

SIZES = ("tiny", "default", "full")


def experiment(name):
    """The module of experiment ``name``; a clear error listing the names otherwise."""
    from graphnet.errors import GraphnetError
    if name not in EXPERIMENTS:
        raise GraphnetError(f"no lecture experiment named {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    return importlib.import_module(f"graphnet.training.lectures.{name}")


def run_experiment(name, out_dir="lectures", size="default", backend="cpu", seed=0, say=print):
    """Run experiment ``name``, writing its figures into ``out_dir``; print and return its Outcome."""
    from graphnet.errors import GraphnetError
    from graphnet.training.fit import resolve_backend
    if size not in SIZES:
        raise GraphnetError(f"lectures: size must be one of {', '.join(SIZES)}, got {size!r}")
    module = experiment(name)
    backend = resolve_backend(backend)
    os.makedirs(out_dir, exist_ok=True)
    say(f"== {name}: {module.TITLE}")
    say(f"claim: {module.CLAIM}")
    say(f"figures go to {os.path.abspath(out_dir)}/ ({size} size, {backend} backend, seed {seed})")
    started = time.perf_counter()
    outcome = module.run(out_dir, size=size, backend=backend, seed=seed, say=say)
    outcome.seconds = time.perf_counter() - started
    say(f"wrote {', '.join(os.path.basename(path) for path in outcome.figures)} in {outcome.seconds:.1f} s")
    say(outcome.line())
    return outcome
