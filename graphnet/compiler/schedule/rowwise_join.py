"""Row-wise joins: two row-wise nodes over the same rows computed by one kernel.

The rule, in a sentence: a cross-entropy loss and its gradient ``softmax -
onehot`` over the same logits and labels are one kernel, since both need each
row's maximum and exponentials (computing them twice reads the logits twice
and doubles the ``exp`` work). A pair is joined unless one of the two depends
on the other through another kernel (the gradient's incoming ``g`` computed
from the loss would make the kernel wait on itself); the reason is recorded
when it is refused, and backends register one template per joined pair of op
classes (``ROWWISE_TEMPLATES[(SoftmaxCrossEntropy, SoftmaxCrossEntropyGrad)]``).
"""
from __future__ import annotations

from dataclasses import dataclass

from graphnet.ops.nn import SoftmaxCrossEntropy, SoftmaxCrossEntropyGrad

#: (first op class, second op class): why one kernel computing both pays
JOINABLE_ROWWISE = {
    (SoftmaxCrossEntropy, SoftmaxCrossEntropyGrad):
        "the loss and its gradient share each row's maximum and exponentials: one pass over the logits",
}


@dataclass
class RowwiseJoin:
    """A candidate pair and what became of it: ``joined`` with ``why``, or refused for ``why``."""

    first: object      # node
    second: object     # node
    joined: bool
    why: str


def same_rows(a, b):
    """Whether nodes ``a`` and ``b`` iterate over the same row input and read the same checked
    inputs (the labels that index the rows)."""
    if a.inputs[a.op.row_input] is not b.inputs[b.op.row_input]:
        return False
    return [a.inputs[i] for i in a.op.checked_inputs] == [b.inputs[i] for i in b.op.checked_inputs]


def join_rowwise_groups(groups, group_of, reaches, fuse=True):
    """Merge the groups of joinable row-wise pairs in ``groups`` (in place); the joins and refusals.

    ``reaches(group, node)``: whether ``node`` depends on ``group`` through
    another group. A group joins at most once (one loss, one gradient).
    """
    records = []
    single = [g for g in groups if g.kind == "rowwise" and len(g.nodes) == 1]
    taken = set()
    for first_group in single:
        for second_group in single:
            a, b = first_group.nodes[0], second_group.nodes[0]
            why = JOINABLE_ROWWISE.get((type(a.op), type(b.op)))
            if why is None or id(first_group) in taken or id(second_group) in taken or not same_rows(a, b):
                continue
            refusal = join_refusal(a, b, first_group, second_group, reaches, fuse)
            records.append(RowwiseJoin(a, b, refusal is None, refusal or why))
            if refusal is None:
                taken.update((id(first_group), id(second_group)))
                first_group.nodes.append(b)
                group_of[b] = first_group
                groups.remove(second_group)
    return records


def in_pair_order(nodes):
    """The nodes of a joined row-wise kernel in the order of their pair in ``JOINABLE_ROWWISE``
    (the order of the backends' template arguments), whatever order the graph made them in."""
    if len(nodes) == 2 and (type(nodes[1].op), type(nodes[0].op)) in JOINABLE_ROWWISE:
        return [nodes[1], nodes[0]]
    return list(nodes)


def join_refusal(a, b, group_a, group_b, reaches, fuse):
    """None if row-wise nodes ``a`` and ``b`` may be one kernel, else why not."""
    if not fuse:
        return "fusion is off (fuse=False)"
    if not (a.op.rowwise_applies(a) and b.op.rowwise_applies(b)):
        return "a row-wise template does not apply to one of them (NumPy runs it)"
    for node, other in ((b, group_a), (a, group_b)):
        if any(v.owner is not None and reaches(other, v.owner) for v in node.inputs):
            return (f"{node.op.name} reads a value computed from the other's output: "
                    "one kernel would wait on itself")
    return None
