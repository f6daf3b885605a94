"""``debugprint``: a graph as an indented tree of text, one line per variable.

    truediv  loss  float32 ()  [id A]
    ├─ sum{axis=(0,), keepdims=False}  float32 ()  [id B]
    │  └─ softmaxcrossentropy  float32 (?,)  [id C]
    ...
    └─ cast{float32}  float32 ()  [id E]
       └─ sizeof{axis=(0,)}  int64 ()  [id F]
          └─ softmaxcrossentropy  [id C]  (shown above)

A node used more than once is expanded the first time only; later uses name
its id, as Theano's ``debugprint`` does. Graph inputs are leaves and need no id.
"""
from __future__ import annotations

import sys

from graphnet.viz.walk import as_roots, leaf_kind, leaf_label, letter_id, op_label, type_str

_UNICODE = {"tee": "├─ ", "last": "└─ ", "pipe": "│  ", "blank": "   "}
_ASCII = {"tee": "|- ", "last": "`- ", "pipe": "|  ", "blank": "   "}


def debugprint(outputs, file=None, updates=None, sources=False, ascii=False):
    """Print the graph of ``outputs`` as an indented tree and return the text.

    ``outputs``: a variable, a list of them, or a compiled function (its
    optimized graph and updates). Each line shows the op, the variable's name,
    dtype and static shape (``?`` for a size known only at run time), and an
    ``[id X]`` by which later uses of the same node refer back to it. Nodes
    that ``grad`` added end in ``(backward)``. ``sources=True`` adds the user's
    line that built each node. ``file``: a stream to print to (default
    stdout), or ``"str"`` to only return the text. ``ascii=True`` draws the tree
    with ``|-`` instead of box-drawing characters.
    """
    roots = as_roots(outputs, updates)
    printer = _TreePrinter(_ASCII if ascii else _UNICODE, sources)
    titled = len(roots.all) > 1 or bool(roots.updates)
    for i, out in enumerate(roots.outputs):
        printer.root(out, f"output {i}: " if titled else "")
    for shared, expr in roots.updates:
        printer.root(expr, f"update {leaf_label(shared)} <- " if ascii else f"update {leaf_label(shared)} ← ")
    text = "\n".join(printer.lines) + "\n"
    if file != "str":
        stream = sys.stdout if file is None else file
        stream.write(text)
    return text


class _TreePrinter:
    def __init__(self, glyphs, sources):
        self.glyphs = glyphs
        self.sources = sources
        self.ids = {}        # Apply node -> letter id, in order of first appearance
        self.expanded = set()
        self.lines = []

    def root(self, var, title):
        if self.lines:
            self.lines.append("")
        self._walk(var, title, "")

    def _walk(self, var, head, indent):
        """Print ``var`` after ``head`` and its inputs below it, indented by ``indent``.

        An explicit stack rather than recursion: a long chain of nodes must not
        hit Python's recursion limit.
        """
        stack = [(var, head, indent)]
        while stack:
            var, head, indent = stack.pop()
            node = var.owner
            if node is None:
                self.lines.append(head + self._leaf_line(var))
                continue
            if node not in self.ids:
                self.ids[node] = letter_id(len(self.ids))
            if node in self.expanded:
                name = f"  {var.name}" if var.name else ""
                self.lines.append(f"{head}{op_label(node, var)}{name}  [id {self.ids[node]}]  (shown above)")
                continue
            self.expanded.add(node)
            self.lines.append(head + self._node_line(var))
            # An input used twice by one node (``mul(x, x)``) is listed twice, as the op reads it.
            children = []
            for i, inp in enumerate(node.inputs):
                last = i == len(node.inputs) - 1
                children.append((inp, indent + self.glyphs["last" if last else "tee"],
                                 indent + self.glyphs["blank" if last else "pipe"]))
            stack.extend(reversed(children))

    def _node_line(self, var):
        node = var.owner
        parts = [op_label(node, var)]
        if var.name:
            parts.append(var.name)
        parts += [type_str(var), f"[id {self.ids[node]}]"]
        if var.role == "backward":
            parts.append("(backward)")
        if self.sources:
            parts.append(f"@ {node.source}")
        return "  ".join(parts)

    def _leaf_line(self, var):
        kind = leaf_kind(var)
        parts = [f"{kind} {leaf_label(var)}", type_str(var)]
        if self.sources and kind != "constant":
            parts.append(f"@ {var.source}")
        return "  ".join(parts)
