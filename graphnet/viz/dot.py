"""Graphviz DOT text for a graph (``to_dot``) and for a compiled function's kernel plan
(``function_to_dot``). Plain text: no Graphviz needed until ``render``.

How things are drawn:

* placeholder: green, pointing down (data fed in); shared variable: orange
  cylinder (stored state); constant: small grey text, drawn at each use;
* op: a rounded box, blue in the forward pass, red in the backward pass
  (built by ``grad``), purple for work that only feeds the updates (the
  optimizer step); the op in bold, its parameters and output type below;
* update: a dashed purple edge from the new value to the shared variable;
* fetched output: a bold box at the bottom.

In the kernel plan each kernel is a cluster labelled with its position in
the run, its name, the ops it fuses and its estimated memory traffic; BLAS
calls are orange clusters, NumPy host and view steps dashed ones; an op whose
result goes to a buffer has a double border, a fused intermediate (never
written to memory) a dashed one; an edge between kernels carries the reason
they were not fused as its tooltip (hover over it in the SVG).
"""
from __future__ import annotations

import os

from graphnet.viz.walk import as_roots, home_kernels, leaf_kind, leaf_label, node_stages, type_str

FONT = "Helvetica"

_STAGE_COLOURS = {  # stage: (fill, border)
    "forward": ("#dde8f8", "#3d6db5"),
    "backward": ("#f8dede", "#b03a3a"),
    "update": ("#ebe0f7", "#7041a8"),
}
_STAGE_TITLES = {
    "backward": "backward pass (built by grad)",
    "update": "updates",
}
_LEAF_STYLES = {
    "placeholder": 'shape=invhouse, style=filled, fillcolor="#d8f0d2", color="#4a8f3c"',
    "input": 'shape=invhouse, style=filled, fillcolor="#d8f0d2", color="#4a8f3c"',
    "shared": 'shape=cylinder, style=filled, fillcolor="#fdebc8", color="#b07a1a"',
    "constant": 'shape=plaintext, fontcolor="#555555", fontsize=9, margin=0, height=0.2, width=0.2',
}


def to_dot(outputs, updates=None, title=None, group_stages=True, rankdir="TB"):
    """Graphviz DOT text for the graph of ``outputs`` (and ``updates``, (shared, expr) pairs).

    ``outputs``: a variable, a list of them, or a compiled function (its
    optimized graph, updates included). ``group_stages`` draws the backward
    pass and the updates as clusters of their own beside the forward pass.
    The text parses with pydot and renders with ``gn.render`` or ``dot -Tsvg``.
    """
    roots = as_roots(outputs, updates)
    stages = node_stages(roots)
    writer = _DotWriter(title, rankdir)
    writer.leaves(roots)
    by_stage = {}
    for node, stage in stages.items():
        by_stage.setdefault(stage, []).append(node)
    for stage in ("forward", "backward", "update"):
        nodes = by_stage.get(stage, [])
        title_of_stage = _STAGE_TITLES.get(stage) if group_stages and len(by_stage) > 1 else None
        if nodes and title_of_stage:
            border = _STAGE_COLOURS[stage][1]
            writer.open_cluster(f"cluster_{stage}", _html_escape(title_of_stage),
                                f'style="rounded,dashed", color="{border}", fontcolor="{border}"')
        for node in nodes:
            writer.op(node, stage)
        if nodes and title_of_stage:
            writer.close_cluster()
    writer.edges(stages)
    writer.sinks(roots)
    return writer.text()


def function_to_dot(fn, title=None, rankdir="TB"):
    """DOT text for a compiled function's plan: each kernel a labelled cluster, in run order.

    Reads ``fn.fgraph``, ``fn.kernels`` (``.name``, ``.ops``, ``.nodes``,
    ``.outputs``, ``.is_blas``, ``.bytes_read``, ``.bytes_written``) and
    ``fn.program.refusals`` ((producer variable, consumer node, reason) for
    adjacent nodes not fused). Nodes in no kernel are drawn grey as host steps.
    """
    roots = as_roots(fn)
    stages = node_stages(roots)
    kernels = list(getattr(fn, "kernels", None) or [])
    kernel_of = home_kernels(kernels)   # a node a later kernel recomputes is drawn in its first one
    written = {id(v) for k in kernels for v in k.outputs}
    refusals = {(id(var), id(node)): reason for var, node, reason in _refusals(fn)}
    name = getattr(fn, "name", "function")
    writer = _DotWriter(title or f"{name}: {len(kernels)} kernel(s)", rankdir)
    writer.leaves(roots)
    for i, kernel in enumerate(kernels):
        writer.open_cluster(f"cluster_k{i}", _kernel_label(i, kernel), _kernel_style(kernel))
        for node in kernel.nodes:
            if node in stages and kernel_of[node] == i:
                writer.op(node, stages[node], buffer=_node_writes(node, written), blas=kernel.is_blas)
        writer.close_cluster()
    for node, stage in stages.items():
        if node not in kernel_of:
            writer.op(node, stage, host=True)
    writer.edges(stages, kernel_of=kernel_of, refusals=refusals)
    writer.sinks(roots)
    return writer.text()


def _refusals(fn):
    program = getattr(fn, "program", None)
    return list(getattr(program, "refusals", None) or [])


def _node_writes(node, written):
    return any(id(o) in written for o in node.outputs)


def _kernel_label(index, kernel):
    """``#3 k3_fused``, the ops it fuses (when more than one), and its memory traffic."""
    kind = getattr(kernel, "kind", None)
    marker = "  (BLAS)" if kernel.is_blas else f"  ({kind} step)" if kind in ("host", "view") else ""
    lines = [f"<b>{_html_escape(f'#{index}  {kernel.name}{marker}')}</b>"]
    if len(kernel.ops) > 1:
        lines.append(_html_escape(" · ".join(kernel.ops)))
    traffic = _traffic(kernel)
    if traffic:
        lines.append(f'<font point-size="9">{_html_escape(traffic)}</font>')
    return "<br/>".join(lines)


def _traffic(kernel):
    from graphnet.viz.report import format_bytes
    read, wrote = getattr(kernel, "bytes_read", None), getattr(kernel, "bytes_written", None)
    if read is None and wrote is None:
        return ""
    return f"reads {format_bytes(read)}, writes {format_bytes(wrote)}"


def _kernel_style(kernel):
    if kernel.is_blas:
        return 'style="rounded,filled", fillcolor="#fff1dc", color="#c77d12", penwidth=1.5'
    if getattr(kernel, "kind", None) in ("host", "view"):
        return 'style="rounded,dashed", color="#888888"'
    return 'style="rounded,filled", fillcolor="#f3f3f3", color="#666666"'


# ------------------------------------------------------------------ the writer
class _DotWriter:
    """Collects DOT statements; knows how each kind of graph element is drawn."""

    def __init__(self, title, rankdir):
        self.lines = ["digraph graphnet {",
                      f'  graph [rankdir={rankdir}, fontname="{FONT}", nodesep=0.25, ranksep=0.35, ordering=in'
                      + (f', label=<<b>{_html_escape(title)}</b>>, labelloc=t, fontsize=16' if title else "")
                      + "];",
                      f'  node [fontname="{FONT}", fontsize=11, margin="0.08,0.03", height=0.3];',
                      f'  edge [fontname="{FONT}", fontsize=9, color="#777777", arrowsize=0.6];']
        self.indent = "  "
        self.ids = {}  # variable or Apply node -> DOT node id
        self.constant_uses = 0

    def text(self):
        return "\n".join(self.lines + ["}"]) + "\n"

    def emit(self, statement):
        self.lines.append(self.indent + statement)

    def open_cluster(self, name, html_label, style):
        self.emit(f"subgraph {name} {{")
        self.indent += "  "
        self.emit(f"graph [label=<{html_label}>, fontsize=11, labeljust=l, {style}];")

    def close_cluster(self):
        self.indent = self.indent[:-2]
        self.emit("}")

    # --- nodes
    def leaves(self, roots):
        """Placeholders and shared variables, each drawn once; constants are drawn at each use."""
        for var in roots.leaves():
            kind = leaf_kind(var)
            if kind == "constant" and _is_scalar(var):
                continue
            self.ids[var] = f"v{var.id}"
            label = f"<b>{_html_escape(leaf_label(var))}</b><br/>{_small(type_str(var))}"
            if kind == "constant":
                label = f"{_html_escape(leaf_label(var))}<br/>{_small(type_str(var))}"
            self.emit(f'v{var.id} [label=<{label}>, {_LEAF_STYLES[kind]}, '
                      f'tooltip="{_quote(kind + " " + leaf_label(var) + " " + type_str(var))}"];')

    def op(self, node, stage, buffer=None, blas=False, host=False):
        """One Apply node. ``buffer``: True (writes a buffer), False (fused away), None (no plan)."""
        node_id = f"n{node.outputs[0].id}"
        self.ids[node] = node_id
        fill, border = ("#eeeeee", "#888888") if host else _STAGE_COLOURS[stage]
        params = str(node.op)[len(node.op.name):].strip("{}")
        rows = [f"<b>{_html_escape(node.op.name)}</b>" + (" <i>BLAS</i>" if blas else "")]
        if params:
            rows.append(_small(params))
        names = [o.name for o in node.outputs if o.name]
        if names:
            rows.append(f"<i>{_html_escape(', '.join(names))}</i>")
        rows.append(_small(", ".join(type_str(o) for o in node.outputs), colour="#444444"))
        if host:
            rows.append(_small("host step"))
        style = "rounded,filled"
        extra = ""
        if buffer is True:
            extra = ", peripheries=2"
        elif buffer is False:
            style += ",dashed"
        tooltip = f"{node.op} ({stage}), built at {_short_source(node.source)}"
        self.emit(f'{node_id} [label=<{"<br/>".join(rows)}>, shape=box, style="{style}", '
                  f'fillcolor="{fill}", color="{border}"{extra}, tooltip="{_quote(tooltip)}"];')

    def _source_id(self, var):
        """The DOT node an edge carrying ``var`` starts from (a new one per use of a scalar constant)."""
        if var.owner is not None:
            return self.ids[var.owner]
        if var in self.ids:
            return self.ids[var]
        self.constant_uses += 1
        const_id = f"c{var.id}_{self.constant_uses}"
        self.emit(f'{const_id} [label=<{_html_escape(leaf_label(var))}>, {_LEAF_STYLES["constant"]}, '
                  f'tooltip="{_quote("constant " + type_str(var))}"];')
        return const_id

    # --- edges
    def edges(self, stages, kernel_of=None, refusals=None):
        """One edge per input of every op; ``kernel_of`` marks edges that cross kernels."""
        for node, stage in stages.items():
            _, border = _STAGE_COLOURS[stage]
            for pos, var in enumerate(node.inputs):
                attrs = []
                if var.owner is not None and len(var.owner.outputs) > 1:
                    attrs.append(f'label="[{var.index}]"')
                if kernel_of is not None and var.owner is not None:
                    producer, consumer = kernel_of.get(var.owner), kernel_of.get(node)
                    if producer != consumer or producer is None:
                        reason = refusals.get((id(var), id(node)), "no reason recorded")
                        attrs.append(f'penwidth=1.4, tooltip="{_quote("not fused: " + reason)}"')
                self.emit(f"{self._source_id(var)} -> {self.ids[node]}"
                          + (f" [{', '.join(attrs)}]" if attrs else "") + ";")

    def sinks(self, roots):
        """A box per fetched output and a dashed edge per update."""
        for i, var in enumerate(roots.outputs):
            label = f"output {i}" + (f"<br/><b>{_html_escape(var.name)}</b>" if var.name else "")
            self.emit(f'out{i} [label=<{label}>, shape=box, style="bold,rounded", color="#333333"];')
            self.emit(f"{self._source_id(var)} -> out{i} [penwidth=1.4, color=\"#333333\"];")
        # The new value goes to a copy of the shared variable drawn below the step,
        # not back to the top of the picture, where an edge per parameter would cross everything.
        for i, (shared, expr) in enumerate(roots.updates):
            label = f"<b>{_html_escape(leaf_label(shared))}</b> (updated)<br/>{_small(type_str(shared))}"
            self.emit(f'u{i} [label=<{label}>, shape=cylinder, style="filled,dashed", fillcolor="#fdebc8", '
                      f'color="#7041a8", tooltip="{_quote("new value of shared " + leaf_label(shared))}"];')
            self.emit(f'{self._source_id(expr)} -> u{i} [style=dashed, color="#7041a8", fontcolor="#7041a8", '
                      f'label="update"];')


def _short_source(source):
    """``file.py:LINE`` relative to the working directory when the file is under it."""
    path, _, line = source.rpartition(":")
    if path and os.path.isabs(path) and path.startswith(os.getcwd() + os.sep):
        return f"{os.path.relpath(path)}:{line}"
    return source


def _is_scalar(var):
    return var.ndim == 0 or var.type.shape == (1,)


def _small(text, colour="#666666"):
    return f'<font point-size="9" color="{colour}">{_html_escape(text)}</font>'


def _html_escape(text):
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _quote(text):
    """``text`` for a double-quoted DOT string."""
    return str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
