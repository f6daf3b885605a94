"""``python -m graphnet theano SCRIPT.py [ARGS]``: run a Theano script with graphnet standing in.

For this run only, ``sys.modules`` maps ``theano`` and its submodules onto
``graphnet.compat.theano``; a ``theano.*`` submodule that graphnet does not
provide fails at the import with one line naming it. Nothing named ``theano``
is installed, so a real Theano elsewhere is never shadowed. The script runs as
``__main__`` with its own folder first on ``sys.path`` (its sibling modules
import as they would under ``python SCRIPT.py``).

An unsupported Theano feature ends the run with exit status 2 and one line:
``SCRIPT.py:LINE: theano.clone is not supported by graphnet's Theano stand-in (...)``.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.abc
import os
import runpy
import sys
import traceback

from graphnet.compat.theano._unsupported import UnsupportedTheanoFeature

#: The stand-in modules, under the names a Theano script imports.
MODULES = ("theano", "theano.tensor", "theano.tensor.nnet", "theano.tensor.shared_randomstreams",
           "theano.tensor.signal", "theano.tensor.signal.pool",
           "theano.sandbox", "theano.sandbox.rng_mrg", "theano.gradient", "theano.printing", "theano.ifelse")


class _MissingTheanoModule(importlib.abc.MetaPathFinder):
    """Answers an import of any other ``theano.*`` module with UnsupportedTheanoFeature."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith("theano."):
            raise UnsupportedTheanoFeature(fullname)
        return None


def install():
    """Map the Theano module names onto graphnet's stand-in; returns a function that undoes it."""
    saved = {name: sys.modules.get(name) for name in MODULES}
    for name in MODULES:
        sys.modules[name] = importlib.import_module("graphnet.compat." + name)
    finder = _MissingTheanoModule()
    sys.meta_path.insert(0, finder)

    def uninstall():
        sys.meta_path.remove(finder)
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return uninstall


def run_script(script, args=(), backend=None):
    """Run ``script`` as ``__main__`` with ``args`` as its ``sys.argv[1:]``; returns the exit status."""
    if not os.path.isfile(script):
        print(f"python -m graphnet theano: no such script {script!r}", file=sys.stderr)
        return 2
    if backend:
        os.environ["GRAPHNET_THEANO_BACKEND"] = backend
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    uninstall = install()
    if backend:
        sys.modules["theano"].BACKEND = backend
    try:
        runpy.run_path(script, run_name="__main__")
        return 0
    except UnsupportedTheanoFeature as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except AttributeError as exc:
        missing = _missing_variable_method(exc)
        if missing is None:
            raise
        print(f"error: {missing}", file=sys.stderr)
        return 2
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        uninstall()
        sys.argv, sys.path[:] = saved_argv, saved_path


def _missing_variable_method(exc):
    """``x.nonzero()`` on a graphnet variable: the same one line as for a missing module name."""
    from graphnet.graph.ir import Variable
    if not isinstance(getattr(exc, "obj", None), Variable):
        return None
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "<unknown>"
    return UnsupportedTheanoFeature(f"the variable method .{exc.name}()", where=where)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "theano", help="run a Theano script with graphnet standing in for theano",
        description="Run SCRIPT.py as written for Theano, with graphnet standing in for the theano package.")
    parser.add_argument("script", help="the Theano script to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script")
    parser.add_argument("--backend", choices=("cpu", "reference", "cuda"), default=None,
                        help="where theano.function compiles (default cpu)")
    parser.set_defaults(func=lambda args: run_script(args.script, args.args, args.backend))
