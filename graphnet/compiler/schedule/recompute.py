"""Fusion rule 8: a cheap elementwise chain is recomputed in its reader's kernel.

In a sentence: when a kernel reads, over its own domain, a value that another
kernel computes element by element, it computes that value itself from the
chain's own inputs, if the chain is cheap and the reader then moves fewer bytes
(the value is neither stored nor read back).

Batch norm's backward is the case that asks for it: the kernel of the four
column sums computes ``x - mean`` and the masked ``dy * gamma * inv_std`` for
its sums, and the ``dx`` kernel after it (rule 2: it broadcasts those sums back)
read both from memory, two full matrices stored and read back. Recomputed from
``x`` and ``dy``, which ``dx`` reads anyway (one of them already), they are
never stored.

Legality (:func:`chain_refusal`) and profitability (:func:`traffic_change`) are
kept apart, as in :mod:`.fuse`: the chain must be per-element work of its
kernel (no reduced value, no element index), at most ``MAX_CHAIN_NODES``
nodes, and fit the reader's loop; it must then save bytes per element: the
reads it removes and the stores nobody needs any more, less the reads of
full-size inputs the reader did not read yet (and their stores, if nothing
stored them: a matrix product whose only reader may be its GEMM epilogue). Each candidate pair is recorded with a reason when
refused.

The recomputed nodes join the reader's ``Group.recomputed`` (and its
``nodes``, where the code generators find them); their home stays the kernel
that computed them first (``group_of``), which still stores the value when
another kernel or an output reads it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from graphnet.graph.ir import Constant

#: ``GRAPHNET_RECOMPUTE=0`` turns the rule off (to measure what it buys)
ENABLED = os.environ.get("GRAPHNET_RECOMPUTE", "1") != "0"

#: chains longer than this are not recomputed: a reader doing another kernel's work should stay cheap
MAX_CHAIN_NODES = 8
#: producers whose output's first reader may become their epilogue (plan.py), the output then never stored
PRODUCT_KINDS = ("blas", "conv")


@dataclass
class Recompute:
    """One candidate: ``var`` (of another kernel) read by ``reader`` (a node of the reading
    kernel); ``chain``: the nodes recomputed; ``reason``: None when done, else why not;
    ``saved``: bytes per element the reader's kernel saves (when done)."""

    var: object
    reader: object
    chain: list
    reason: str = None
    saved: int = 0


def full_reads(group, nodes=None):
    """The full-size values ``nodes`` (default: the group's per-element nodes) read from memory."""
    nodes = [n for n in group.nodes if n not in group.epilogue and n not in group.reductions] \
        if nodes is None else nodes
    computed = {v for n in nodes for v in n.outputs}
    return {v for n in nodes for v in n.inputs
            if v not in computed and not isinstance(v, Constant) and tuple(v.shape) == tuple(group.domain)}


def chain_of(var, producer):
    """The per-element nodes of ``producer`` that compute ``var``, in graph order."""
    chain, stack = [], [var.owner]
    while stack:
        node = stack.pop()
        if node in chain:
            continue
        chain.append(node)
        for v in node.inputs:
            owner = v.owner
            if owner is not None and owner in producer.nodes and owner not in producer.reductions \
                    and owner not in producer.epilogue:
                stack.append(owner)
    return sorted(chain, key=lambda n: n.outputs[0].id)


def chain_refusal(chain, producer, reader):
    """None if ``chain`` may be recomputed in ``reader``, else why not."""
    from graphnet.compiler.schedule.fuse import input_pattern, per_image_refusal
    if len(chain) > MAX_CHAIN_NODES:
        return f"its chain is {len(chain)} elementwise nodes, more than {MAX_CHAIN_NODES}"
    if any(n.op.uses_element_index for n in chain):
        return "its chain uses each element's flat index (a dropout counter)"
    computed = {v for n in chain for v in n.outputs}
    for node in chain:
        for v in node.inputs:
            if v in computed or isinstance(v, Constant):
                continue
            if v.owner is not None and v.owner in producer.nodes:
                return "its chain reads a reduced value of its kernel"
            if input_pattern(v.shape, reader.domain) is None:
                return f"its chain's input {v.describe()} cannot be indexed in the reader's loop"
    return next((why for why in (per_image_refusal(reader, n) for n in chain) if why), None)


def traffic_change(chain, reader, groups, roots, kind_of_var):
    """(bytes per element ``reader`` stops moving, bytes per element it starts moving) when it
    recomputes ``chain``: the values it no longer reads (and stores nobody else needs), against
    the chain's full-size inputs it does not read yet (and their stores, if nothing stored them)."""
    before = full_reads(reader)
    after = full_reads(reader, [n for n in reader.nodes if n not in reader.epilogue
                                and n not in reader.reductions] + chain)
    saved = added = 0
    for v in before - after:
        saved += v.dtype.itemsize * (1 if stored_for_others(v, reader, groups, roots) else 2)
    for v in after - before:
        stored = v.owner is None or stored_for_others(v, reader, groups, roots)
        if stored and kind_of_var(v) in PRODUCT_KINDS:
            # A product read by one elementwise kernel alone may be its epilogue's scratch, never
            # stored (plan.py decides): count its store too unless something stores it anyway.
            others = [g for g in groups if g is not reader and any(v in n.inputs for n in g.nodes)]
            stored = v in roots or len(others) > 1 or any(g.reductions for g in others)
        added += v.dtype.itemsize * (1 if stored else 2)
    return saved, added


def stored_for_others(var, reader, groups, roots):
    """Whether ``var`` must be stored although ``reader`` does not read it: an output, an
    update, or read by another kernel that does not compute it."""
    if var in roots:
        return True
    return any(g is not reader and var.owner not in g.nodes and any(var in n.inputs for n in g.nodes)
               for g in groups)


def recompute_cheap_chains(groups, group_of, roots, kind_of_var):
    """Apply rule 8 to the fusion groups in place; returns every :class:`Recompute` considered.

    ``kind_of_var(v)``: the kind of the group producing ``v`` (None for inputs)."""
    considered = {}
    if not ENABLED:
        return []
    changed = True
    while changed:
        changed = False
        for reader in [g for g in groups if g.kind == "fused" and g.domain]:
            for var in sorted(full_reads(reader), key=lambda v: v.id):
                producer = group_of.get(var.owner) if var.owner is not None else None
                if producer is None or producer is reader or var.owner in reader.nodes or producer.kind != "fused" \
                        or producer.domain != reader.domain or var.owner in producer.reductions \
                        or var.owner in producer.epilogue:
                    continue
                key = (id(var), id(reader))
                if key in considered and considered[key].reason is None:
                    continue
                chain = chain_of(var, producer)
                node = next(n for n in reader.nodes if var in n.inputs)
                reason = chain_refusal(chain, producer, reader)
                saved = 0
                if reason is None:
                    saved, added = traffic_change(chain, reader, groups, roots, kind_of_var)
                    if saved <= added:
                        reason = (f"recomputing its {len(chain)}-node chain saves {saved} bytes per element but "
                                  f"reads {added} of inputs the reader does not read yet")
                    saved -= added
                considered[key] = Recompute(var, node, chain, reason, saved)
                if reason is None:
                    new = [n for n in chain if n not in reader.nodes]
                    reader.nodes.extend(new)
                    reader.recomputed.extend(new)
                    changed = changed or bool(new)
    return list(considered.values())
