"""``render``: DOT text (or a graph) to an SVG, PNG or PDF file through Graphviz.

The ``dot`` program does the drawing; the ``graphviz`` Python package, when
installed, is the way we call it, otherwise we run ``dot`` directly. Without
the program the error says how to install it, and ``.dot`` files can still be
written.
"""
from __future__ import annotations

import os
import shutil
import subprocess

from graphnet.errors import GraphnetError

#: formats ``dot`` draws (``-T``); ``dot``/``gv`` write the DOT text itself
IMAGE_FORMATS = ("svg", "png", "pdf", "jpg", "jpeg", "gif", "ps", "eps")
TEXT_FORMATS = ("dot", "gv")

INSTALL_HELP = ("the Graphviz program `dot` is not installed (or not on PATH), so no picture can be drawn.\n"
                "  Install it: `apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` (macOS) "
                "or `conda install graphviz`;\n"
                "  and, optionally, the Python binding: `pip install graphviz`.\n"
                "  Without it you can still write the DOT text: gn.to_dot(...), or a path ending in .dot")


def render(dot_or_outputs, path, format=None, **dot_options):
    """Write a picture of a graph to ``path`` and return the path.

    ``dot_or_outputs``: DOT text, a variable, a list of variables, or a compiled
    function (drawn as its kernel plan when it has kernels). ``format``
    defaults to the extension of ``path`` (svg, png, pdf, ...; ``.dot`` writes
    the text). ``dot_options`` go to ``to_dot`` (``title=``, ``updates=``, ...).
    Raises :class:`GraphnetError` saying how to install Graphviz when the
    ``dot`` program is missing.
    """
    dot = _as_dot_text(dot_or_outputs, dot_options)
    fmt = (format or os.path.splitext(path)[1].lstrip(".") or "").lower()
    if fmt in TEXT_FORMATS:
        _write(path, dot.encode())
        return path
    if fmt not in IMAGE_FORMATS:
        raise GraphnetError(f"render: cannot tell the format of {path!r}; use a path ending in "
                            f"{', '.join('.' + f for f in IMAGE_FORMATS + TEXT_FORMATS)} or pass format=")
    if shutil.which("dot") is None:
        raise GraphnetError(f"render {path}: {INSTALL_HELP}")
    _write(path, _run_dot(dot, fmt))
    return path


def _as_dot_text(what, dot_options):
    if isinstance(what, str):
        if not what.lstrip().startswith(("digraph", "graph", "strict")):
            raise GraphnetError("render: a string must be DOT text (starting with 'digraph'); "
                                "to draw a graph, pass its variables")
        return what
    from graphnet.viz.dot import function_to_dot, to_dot
    if getattr(what, "kernels", None):
        return function_to_dot(what, **dot_options)
    return to_dot(what, **dot_options)


def _run_dot(dot, fmt):
    try:
        import graphviz
    except ImportError:
        graphviz = None
    if graphviz is not None:
        try:
            return graphviz.Source(dot).pipe(format=fmt)
        except graphviz.ExecutableNotFound as exc:
            raise GraphnetError(f"render: {INSTALL_HELP}") from exc
        except graphviz.CalledProcessError as exc:
            raise GraphnetError(f"render: Graphviz refused the graph: {_stderr(exc)}") from exc
    try:
        done = subprocess.run(["dot", f"-T{fmt}"], input=dot.encode(), capture_output=True, check=True)
    except FileNotFoundError as exc:
        raise GraphnetError(f"render: {INSTALL_HELP}") from exc
    except subprocess.CalledProcessError as exc:
        raise GraphnetError(f"render: Graphviz refused the graph: {_stderr(exc)}") from exc
    return done.stdout


def _stderr(exc):
    err = exc.stderr or b""
    return (err.decode(errors="replace") if isinstance(err, bytes) else str(err)).strip() or str(exc)


def _write(path, data):
    """Write through a temporary file and rename, so a failed render leaves no half picture."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
