"""``python -m graphnet dot SCRIPT.py --output graph.svg``: draw the graph a script builds.

The script runs as ``python SCRIPT.py`` would run it (arguments after ``--``
are its own), but only until what is asked for exists: drawing a training
script should not wait for its training. What is drawn:

* the variables (or compiled functions) listed in a module-level
  ``__graphnet_outputs__``, if the script defines one;
* otherwise every function compiled while the script ran (``gn.function``,
  ``Session.run``), each as its graph with the mode resolved and its updates,
  one file per function when there are several (``graph-0-train.svg``, ...);
  a function whose drawing is the same as an earlier one's is skipped.

When the script stops: with ``--function NAME|INDEX``, as soon as that
function is compiled; otherwise when the script first calls a compiled
function (training starts: the functions compiled up front exist), unless it
mentions ``__graphnet_outputs__`` and has not defined it yet. A wrong
``--function`` is reported at that first call, naming the functions compiled
so far. ``--run`` runs the script to its end, as before.

``--fused`` draws compiled functions as their kernel plans instead. The
output's extension picks the form: ``.svg``/``.png``/``.pdf`` (needs
Graphviz), ``.dot`` (DOT text), ``.txt`` (``debugprint``'s tree). Files go
where ``-o`` says, relative to the working directory (default ``graph.svg``
there); every file written is printed with its full path.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import types

from graphnet.errors import GraphnetError
from graphnet.function import Function
from graphnet.graph.ir import Variable
from graphnet.viz import debugprint, function_to_dot, render, to_dot


class StopScript(BaseException):
    """Raised inside the script to stop it once what is to be drawn exists.

    A BaseException, so that the script's own ``except Exception`` does not catch it.
    """


@contextlib.contextmanager
def recording_functions(after_compile=None, before_call=None):
    """Collect every :class:`Function` compiled inside the ``with`` block, in order.

        with recording_functions() as functions:
            runpy.run_path("train.py")
        print(len(functions))

    ``after_compile(functions)`` runs after each compile, ``before_call(function,
    functions)`` before each call; either may raise :class:`StopScript`.
    ``Function.__init__`` and ``__call__`` are wrapped for the duration of the block only.
    """
    created = []
    original_init, original_call = Function.__init__, Function.__call__

    def recording_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        created.append(self)
        if after_compile is not None:
            after_compile(created)

    def watched_call(self, *args, **kwargs):
        if before_call is not None:
            before_call(self, created)
        return original_call(self, *args, **kwargs)

    Function.__init__, Function.__call__ = recording_init, watched_call
    try:
        yield created
    finally:
        Function.__init__, Function.__call__ = original_init, original_call


DESCRIPTION = ("Run SCRIPT until the graphs asked for exist (--run: to its end) and draw them: the variables "
               "in its __graphnet_outputs__ list, else every function it compiles before it first calls one. "
               "Arguments after -- go to the script.")


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
    from graphnet.__main__ import USER_ERROR_STATUS, one_line

    args = _options_after_script(args)
    try:
        targets = _collect_targets(args.script, args.script_args, args)
        drawn = {}
        for path, (label, what) in _outputs(targets, args.output):
            drawing = _drawing(what, label, args)
            key = _same_drawing_key(drawing)
            if key in drawn:
                print(f"skipped {label}: the same graph as {drawn[key]}")
                continue
            drawn[key] = os.path.abspath(path)
            _write(drawing, path)
            print(f"wrote {os.path.abspath(path)}")
    except GraphnetError as exc:
        print(f"python -m graphnet dot: {one_line(exc)}", file=sys.stderr)
        return USER_ERROR_STATUS
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
    parser.add_argument("--run", action="store_true",
                        help="run the whole script (training included) before drawing; by default it is "
                             "stopped once the functions asked for are compiled")


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


def _label(fn, i):
    return fn.name if fn.name != "function" else f"function {i}"


def _stop_rules(source, namespace, wanted, run_to_end):
    """``(after_compile, before_call)`` for :func:`recording_functions`: when to stop the script."""
    if run_to_end:
        return None, None

    def after_compile(functions):
        if wanted is not None and _matches(functions, wanted):
            raise StopScript(f"{_label(functions[-1], len(functions) - 1)} was compiled")

    def before_call(fn, functions):
        if "__graphnet_outputs__" in source and "__graphnet_outputs__" not in namespace:
            return                              # the script must run on to define what it lists
        raise StopScript(f"it first called a compiled function ({_label(fn, functions.index(fn))})")

    return after_compile, before_call


def _matches(functions, wanted):
    i = len(functions) - 1
    return wanted in (_label(functions[i], i), str(i))


def _run_script(script, script_args, args):
    """Run ``script`` as ``__main__`` until the stop rules say; return (its globals, functions, why it stopped)."""
    with open(script, encoding="utf-8") as f:
        source = f.read()
    code = compile(source, script, "exec")
    module = types.ModuleType("__main__")
    module.__file__ = script
    namespace = module.__dict__
    stopped = None
    after_compile, before_call = _stop_rules(source, namespace, args.function, args.run)
    with recording_functions(after_compile, before_call) as functions:
        saved_argv, saved_path, saved_main = sys.argv, list(sys.path), sys.modules.get("__main__")
        sys.argv = [script] + script_args
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        sys.modules["__main__"] = module        # as runpy does: pickling and dataclasses find the script
        try:
            exec(code, namespace)
        except StopScript as stop:
            stopped = str(stop)
        except SystemExit as exc:
            if exc.code not in (None, 0):
                raise GraphnetError(f"{script} exited with status {exc.code}") from None
        finally:
            sys.argv, sys.path[:] = saved_argv, saved_path
            if saved_main is not None:
                sys.modules["__main__"] = saved_main
    return namespace, functions, stopped


def _collect_targets(script, script_args, args):
    """[(label, variables or Function)] to draw, from running ``script``."""
    if not os.path.isfile(script):
        raise GraphnetError(f"no such script: {script}")
    namespace, functions, stopped = _run_script(script, script_args, args)
    if stopped:
        print(f"stopped {script} when {stopped}, after {len(functions)} compiled function"
              f"{'s' if len(functions) != 1 else ''} (--run runs it to its end)")
    listed = namespace.get("__graphnet_outputs__")
    if listed is not None:
        targets = _listed_targets(listed, script)
    else:
        targets = [(_label(fn, i), fn) for i, fn in enumerate(functions)]
        if not targets:
            raise GraphnetError(f"{script} compiled no function and defines no __graphnet_outputs__; list the "
                                "variables to draw in a module-level __graphnet_outputs__ = [loss, ...]")
    if args.function is not None:
        targets = _pick(targets, args.function, stopped)
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


def _pick(targets, wanted, stopped=None):
    for i, (label, what) in enumerate(targets):
        if wanted == label or wanted == str(i):
            return [(label, what)]
    names = ", ".join(f"{i}: {label}" for i, (label, _) in enumerate(targets))
    when = (f" before it was stopped (when {stopped}); if it compiles {wanted} later, add --run"
            if stopped else "")
    raise GraphnetError(f"--function {wanted}: no such function; the script compiled {names}{when}")


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


def _drawing(what, label, args):
    """What is written for one target: ``("text", tree)`` for ``.txt``, else ``("dot", DOT source)``.

    Two functions with equal drawings (the same graph under the same name) get one file.
    """
    if args.output.endswith(".txt"):
        return "text", debugprint(_graph_of(what), file="str")
    title = args.title or (None if label == "graph" else label)
    if args.fused:
        return "dot", function_to_dot(what, title=title)
    return "dot", to_dot(_graph_of(what), title=title)


def _same_drawing_key(drawing):
    """``drawing`` with the DOT node names (``n1403``, ``v12``: variable ids) renumbered in order of appearance.

    A script that compiles the same model twice (an evaluation during training
    and one after it) gets two functions whose graphs differ only in the ids of
    their variables: one file is enough.
    """
    kind, text = drawing
    if kind != "dot":
        return drawing
    names = {}
    return kind, re.sub(r"\b[nv]\d+\b", lambda m: names.setdefault(m.group(0), f"{m.group(0)[0]}{len(names)}"), text)


def _write(drawing, path):
    kind, text = drawing
    if kind == "text":
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return
    render(text, path)


def _graph_of(what):
    """What the user built: for a function, its graph with the mode resolved, before the compiler's rewrites."""
    return what.fgraph if isinstance(what, Function) else what


if __name__ == "__main__":
    sys.exit(main())
