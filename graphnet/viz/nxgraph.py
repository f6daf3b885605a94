"""``to_networkx``: a graph as a ``networkx.DiGraph``, for users who analyse graphs themselves."""
from __future__ import annotations

from graphnet.viz.walk import as_roots, leaf_kind, node_stages


def to_networkx(outputs, updates=None):
    """The graph of ``outputs`` as a bipartite ``networkx.DiGraph``, as graphnet holds it.

    Nodes are the graph's own objects: every :class:`~graphnet.graph.Variable`
    (``kind`` "placeholder", "shared", "constant", "input" or "variable") and
    every :class:`~graphnet.graph.Apply` node (``kind`` "apply"). Edges run
    variable -> node that reads it (``positions``: the input slots, ``mul(x, x)``
    reads ``x`` twice) and node -> the variables it produces (``index``). Every
    node carries ``label``, and variables ``dtype``, ``shape`` and ``role``;
    Apply nodes carry ``op``, ``stage`` ("forward"/"backward"/"update") and
    ``source`` (the user's line). Updates are not edges, which would close
    cycles: ``G.graph["updates"]`` lists the (shared, new value) pairs and
    ``G.graph["outputs"]`` the fetched variables.

        G = gn.to_networkx(loss)
        ops = [n for n, d in G.nodes(data=True) if d["kind"] == "apply"]
        nx.ancestors(G, loss)            # everything the loss depends on
    """
    import networkx as nx

    roots = as_roots(outputs, updates)
    graph = nx.DiGraph(outputs=list(roots.outputs), updates=list(roots.updates))

    def add_variable(var):
        if var in graph:
            return
        kind = leaf_kind(var) if var.owner is None else "variable"
        graph.add_node(var, kind=kind, label=var.describe(), dtype=var.dtype.name, shape=var.shape,
                       role=var.role, source=var.source)

    for var in roots.leaves():
        add_variable(var)
    for node, stage in node_stages(roots).items():
        graph.add_node(node, kind="apply", label=str(node.op), op=node.op, stage=stage, source=node.source)
        for pos, var in enumerate(node.inputs):
            add_variable(var)
            if graph.has_edge(var, node):
                graph.edges[var, node]["positions"].append(pos)
            else:
                graph.add_edge(var, node, positions=[pos])
        for out in node.outputs:
            add_variable(out)
            graph.add_edge(node, out, index=out.index)
    return graph
