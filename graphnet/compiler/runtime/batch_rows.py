"""Whether a loop body treats each row of its batch on its own: then the loop can run as two.

An LSTM's step multiplies ``h`` (batch x hidden) by a weight, adds, takes gates
and products: row ``r`` of every value depends on row ``r`` of the step's
inputs and on the weights, never on another row. Such a loop computes the same
numbers when it runs twice, each time over half of the rows, so the two halves
can run at once on two cores (``scan_steps.SplitLoop``): W7's loops are 32 rows
of small products, too small for BLAS threads to pay.

The rule is a propagation over the body's graph, from its inputs: the
sequences' and states' per-step values have the batch on axis 0 (*rows*), the
non-sequences and constants do not depend on it (*invariant*). A node whose
inputs are all invariant is invariant. Otherwise it keeps the batch on axis 0
only for what is listed below; anything else (a transpose or reshape of rows, a
sum over the batch, an op reading a row's shape, a random stream's element
counter) makes the loop unsplittable, and :func:`split_refusal` says which node.
"""
from __future__ import annotations

from graphnet.ops.elementwise import Elemwise
from graphnet.ops.indexing.basic import Subtensor
from graphnet.ops.join import Concatenate
from graphnet.ops.linalg import Dot
from graphnet.ops.reduce import Reduce

ROWS, INVARIANT = "rows", "invariant"


def split_refusal(body_fgraph, row_inputs, invariant_inputs):
    """None when every output of ``body_fgraph`` keeps the batch on axis 0 and each of its rows
    depends only on the same row of ``row_inputs`` (and on ``invariant_inputs``), else why not."""
    kind = {v: ROWS for v in row_inputs}
    kind.update((v, INVARIANT) for v in invariant_inputs)
    for var in row_inputs:
        if var.ndim < 1:
            return f"{var.describe()} is 0-d: it has no batch axis"
    for node in body_fgraph.nodes():
        kinds = [kind.get(v, INVARIANT if v.owner is None else None) for v in node.inputs]
        if None in kinds:   # an input made by a node that was refused already
            return f"{node.op} reads a value computed across rows"
        if ROWS not in kinds and not node.op.uses_element_index:
            result = INVARIANT
        else:
            why = _row_refusal(node, kinds)
            if why is not None:
                return f"{node.op} -> {node.outputs[0].describe()}: {why}"
            result = ROWS
        for out in node.outputs:
            kind[out] = result
    for var in body_fgraph.outputs:
        if kind.get(var, INVARIANT if var.owner is None else None) != ROWS:
            return f"the body output {var.describe()} does not keep the batch on axis 0"
    return None


def _row_refusal(node, kinds):
    """None when ``node`` (reading rows) computes each row of its output from the same row of
    its row inputs, else why not."""
    op, out = node.op, node.outputs[0]
    if op.uses_element_index:
        return "it reads each element's flat index (a random stream), which halving the rows changes"
    if op.reads_only_shapes:
        return "it reads the batch's length"
    if isinstance(op, Elemwise):
        for var, k in zip(node.inputs, kinds):
            if k == ROWS and var.ndim != out.ndim:
                return f"{var.describe()} broadcasts against a value of another rank"
            if k == INVARIANT and var.ndim == out.ndim and var.shape[0] != 1:
                return f"{var.describe()} does not depend on the batch yet has a full first axis"
        return None
    if isinstance(op, Dot):
        a, b = kinds
        if a == ROWS and b == INVARIANT and node.inputs[0].ndim == 2:
            return None
        return "only (rows) @ (invariant matrix) keeps the rows apart"
    if isinstance(op, Subtensor):
        if any(k == ROWS for k in kinds[1:]):
            return "its bounds depend on the batch"
        first = op.entries[0] if op.entries else ("slice", None, None, None)
        if first[0] == "slice" and first[1:] in ((None, None, None), (None, None, 1)):
            return None
        return "it slices the batch axis"
    if isinstance(op, Concatenate):
        if op.axis % out.ndim != 0 and all(k == ROWS for k in kinds):
            return None
        return "it joins along the batch axis, or joins rows with values that have none"
    if isinstance(op, Reduce):
        if 0 not in [a % node.inputs[0].ndim for a in op.axis]:
            return None
        return "it reduces over the batch"
    return "no rule says it keeps rows apart"
