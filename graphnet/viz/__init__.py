"""Views of a flow graph: text (``debugprint``), Graphviz (``to_dot``, ``function_to_dot``,
``render``), networkx (``to_networkx``) and the fusion report (``kernel_report``).

Each accepts a variable, a list of variables or a compiled function. Nothing
here changes a graph; docs/inspecting.md shows the pictures.
"""
from graphnet.viz.dot import function_to_dot, to_dot  # noqa: F401
from graphnet.viz.nxgraph import to_networkx  # noqa: F401
from graphnet.viz.render import render  # noqa: F401
from graphnet.viz.report import kernel_report  # noqa: F401
from graphnet.viz.text import debugprint  # noqa: F401

__all__ = ["debugprint", "function_to_dot", "kernel_report", "render", "to_dot", "to_networkx"]
