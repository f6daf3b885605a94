"""The graph and what is done to it before compiling: the IR (``ir``: Variable,
Apply, Op), a function's graph (``fgraph``), symbolic differentiation
(``autodiff``) and finite-difference gradient checks (``gradcheck``)."""
from graphnet.graph.ir import (  # noqa: F401
    Apply, Constant, Op, Placeholder, SharedVariable, TensorType, Variable, ancestors_toposort, as_variable,
    broadcast_shapes, clone_replace, graph_inputs, shape_str,
)
