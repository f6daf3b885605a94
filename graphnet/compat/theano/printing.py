"""``theano.printing``: ``debugprint``, ``pp`` and ``pydotprint`` on graphnet's viewers."""
from __future__ import annotations

import shutil
import subprocess

import graphnet as _gn
from graphnet.compat.theano._unsupported import missing_attribute


def debugprint(obj, file=None, **ignored):
    """Print the graph of a variable (or a list, or a compiled function) as indented text."""
    text = _gn.debugprint(obj)
    if file == "str":
        return text
    print(text, file=file)
    return None


def pp(var):
    """The graph of ``var`` as text (graphnet's debugprint, not Theano's infix form)."""
    return _gn.debugprint(var)


def pydotprint(fct, outfile=None, format="png", **ignored):
    """Write the graph of a compiled function (or a variable) as Graphviz.

    The DOT text is written to ``outfile`` with a ``.dot`` suffix; if Graphviz's
    ``dot`` program is installed, the image in ``format`` is rendered beside it.
    """
    dot = fct.to_dot() if isinstance(fct, _gn.Function) else _gn.to_dot(fct)
    outfile = outfile or f"pydotprint.{format}"
    stem = outfile.rsplit(".", 1)[0] if "." in outfile else outfile
    with open(stem + ".dot", "w") as handle:
        handle.write(dot)
    if shutil.which("dot"):
        subprocess.run(["dot", f"-T{format}", stem + ".dot", "-o", outfile], check=True)
        print(f"The output file is available at {outfile}")
    else:
        print(f"The graph is available as Graphviz text at {stem}.dot (install Graphviz to render {format})")


__getattr__ = missing_attribute("theano.printing")
