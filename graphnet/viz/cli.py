"""``python -m graphnet dot SCRIPT.py --output graph.svg``: draw the graph a script builds.

The script runs as ``python SCRIPT.py`` would run it (arguments after ``--``
are its own). What is drawn:

* the variables (or compiled functions) listed in a module-level
  ``__graphnet_outputs__``, if the script defines one;
* otherwise every function compiled while the script ran (``gn.function``,
  ``Session.run``), each as its graph with the mode resolved and its updates,
  one file per function when there are several (``graph-0-train.svg``, ...).

``--fused`` draws compiled functions as their kernel plans instead.
``--function`` picks one function by name or position. The output's extension
picks the form: ``.svg``/``.png``/``.pdf`` (needs Graphviz), ``.dot`` (DOT
text), ``.txt`` (``debugprint``'s tree).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import runpy
import sys

from graphnet.errors import GraphnetError
from graphnet.function import Function
from graphnet.graph.ir import Variable
from graphnet.viz import debugprint, function_to_dot, render, to_dot


@contextlib.contextmanager
def recording_functions():
    """Collect every :class:`Function` compiled inside the ``with`` block, in order.

        with recording_functions() as functions:
            runpy.run_path("train.py")
        print(len(functions))

    ``Function.__init__`` is wrapped for the duration of the block only.
    """
    created = []
    original_init = Function.__init__

    def recording_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        created.append(self)

    Function.__init__ = recording_init
    try:
        yield created
    finally:
        Function.__init__ = original_init


DESCRIPTION = ("Run SCRIPT and draw the graph it builds: the variables in its __graphnet_outputs__ list, "
               "else every function it compiles. Arguments after -- go to the script.")


def add_parser(subparsers):
    """Register the ``dot`` subcommand on ``python -m graphnet``'s argparse ``subparsers``."""
    parser = subparsers.add_parser("dot", help="draw the graph a script builds (SVG, PNG, DOT or text)",
                                   description=DESCRIPTION)
    _configure(parser)
    parser.set_defaults(func=run)
    return parser


def main(argv=None):
    """``dot`` on its own: ``argv`` is what follows ``dot``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m graphnet dot", description=DESCRIPTION)
    _configure(parser)
    return run(parser.parse_args(sys.argv[1:] if argv is None else list(argv)))


def run(args):
    """Draw what ``args.script`` builds; returns the exit status."""
    args = _options_after_script(args)
    try:
        targets = _collect_targets(args.script, args.script_args, args)
        for path, draw in _outputs(targets, args.output):
            _write(draw, path, args)
            print(f"wrote {path}")
    except GraphnetError as exc:
        print(f"graphnet dot: {exc}", file=sys.stderr)
        return 1
    return 0


def _add_options(parser):
    parser.add_argument("-o", "--output", default="graph.svg",
                        help="file to write: .svg, .png, .pdf (need Graphviz), .dot (DOT text) or .txt "
                             "(text tree); default graph.svg")
    parser.add_argument("--fused", action="store_true",
                        help="draw each compiled function's kernel plan (fused kernels as clusters)")
    parser.add_argument("--function", metavar="NAME|INDEX",
                        help="draw only this compiled function (its name= or its position, from 0)")
    parser.add_argument("--title", help="title drawn above the graph")


def _configure(parser):
    _add_options(parser)
    parser.add_argument("script", help="the Python script that builds the graph")
    # Everything after the script: our options, then (after --) the script's own arguments.
    # argparse cannot tell these apart by itself; _options_after_script splits them.
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def _options_after_script(args):
    """``args`` with the options written after the script parsed in, and ``script_args`` set."""
    rest = list(args.rest)
    own, script_args = (rest[:rest.index("--")], rest[rest.index("--") + 1:]) if "--" in rest else (rest, [])
    options = argparse.ArgumentParser(prog="python -m graphnet dot SCRIPT",
                                      epilog="give the script's own arguments after --")
    _add_options(options)
    parsed = options.parse_args(own, namespace=argparse.Namespace(**vars(args)))
    parsed.script_args = script_args
    return parsed


def _collect_targets(script, script_args, args):
    """[(label, variables or Function)] to draw, from running ``script``."""
    if not os.path.isfile(script):
        raise GraphnetError(f"no such script: {script}")
    namespace = None
    with recording_functions() as functions:
        saved_argv, saved_path = sys.argv, list(sys.path)
        sys.argv = [script] + script_args
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        try:
            namespace = runpy.run_path(script, run_name="__main__")
        except SystemExit as exc:
            if exc.code not in (None, 0):
                raise GraphnetError(f"{script} exited with status {exc.code}") from None
        finally:
            sys.argv, sys.path[:] = saved_argv, saved_path
    listed = (namespace or {}).get("__graphnet_outputs__")
    if listed is not None:
        targets = _listed_targets(listed, script)
    else:
        targets = [(fn.name if fn.name != "function" else f"function {i}", fn) for i, fn in enumerate(functions)]
        if not targets:
            raise GraphnetError(f"{script} compiled no function and defines no __graphnet_outputs__; list the "
                                "variables to draw in a module-level __graphnet_outputs__ = [loss, ...]")
    if args.function is not None:
        targets = _pick(targets, args.function)
    if args.fused:
        targets = _with_kernels(targets)
    return targets


def _with_kernels(targets):
    """The compiled functions among ``targets`` that have a kernel plan to draw."""
    if any(not isinstance(what, Function) for _, what in targets):
        raise GraphnetError("--fused draws compiled functions; __graphnet_outputs__ lists variables "
                            "(list the gn.function(...) objects there instead)")
    planned = [(label, fn) for label, fn in targets if fn.kernels]
    if not planned:
        backends = ", ".join(f"{label} ({fn.backend})" for label, fn in targets)
        raise GraphnetError(f"--fused: no function has kernels: {backends}; compile with backend=\"cpu\" "
                            "to get a kernel plan")
    return planned


def _listed_targets(listed, script):
    items = listed if isinstance(listed, (list, tuple)) else [listed]
    variables = [v for v in items if isinstance(v, Variable)]
    functions = [f for f in items if isinstance(f, Function)]
    if len(variables) + len(functions) != len(items) or not items:
        raise GraphnetError(f"{script}: __graphnet_outputs__ must list graph variables or compiled functions")
    targets = [(f.name, f) for f in functions]
    if variables:
        targets.insert(0, ("graph", variables))
    return targets


def _pick(targets, wanted):
    for i, (label, what) in enumerate(targets):
        if wanted == label or wanted == str(i):
            return [(label, what)]
    names = ", ".join(f"{i}: {label}" for i, (label, _) in enumerate(targets))
    raise GraphnetError(f"--function {wanted}: no such function; the script compiled {names}")


def _outputs(targets, output):
    """(path, target) pairs: ``output`` itself for one target, numbered siblings for several."""
    if len(targets) == 1:
        return [(output, targets[0])]
    stem, ext = os.path.splitext(output)
    paths = []
    for i, (label, what) in enumerate(targets):
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)
        paths.append((f"{stem}-{i}-{safe}{ext}", (label, what)))
    return paths


def _write(target, path, args):
    label, what = target
    if path.endswith(".txt"):
        text = debugprint(_graph_of(what), file="str")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return
    title = args.title or (None if label == "graph" else label)
    if args.fused:
        dot = function_to_dot(what, title=title)
    else:
        dot = to_dot(_graph_of(what), title=title)
    render(dot, path)


def _graph_of(what):
    """What the user built: for a function, its graph with the mode resolved, before the compiler's rewrites."""
    return what.fgraph if isinstance(what, Function) else what


if __name__ == "__main__":
    sys.exit(main())
