"""Loops: the forward scan its gradient extended runs once; what nothing reads is not kept.

The gradient of a scan reads forward values (a gate's sigmoid) from stacks the forward loop
writes; it gets them from a copy of the loop extended with those stacked outputs
(``Scan.with_saved``), built on the same inputs. This pass makes the loop the user built that
extended copy: its outputs are the copy's first outputs, so the forward loop runs once and the
backward loop recomputes nothing.
"""
from __future__ import annotations

from graphnet.ops.indexing import Subtensor
from graphnet.ops.scan import Scan


def share_loops(fgraph):
    nodes = fgraph.nodes()
    by_op = {}
    for node in nodes:
        if isinstance(node.op, Scan):
            by_op.setdefault(id(node.op), []).append(node)
    mapping = {}
    for node in nodes:
        if not isinstance(node.op, Scan) or node.op.base is None:
            continue
        for original in by_op.get(id(node.op.base), ()):
            same_inputs = all(a is b for a, b in zip(original.inputs, node.inputs))
            if same_inputs and original.outputs[0] not in mapping:
                mapping.update(zip(original.outputs, node.outputs))
                break
    return fgraph.replace(mapping)


def prune_loop_inputs(fgraph):
    """A loop whose body, once rewritten, no longer reads a sequence or a non-sequence drops it.

    The gradient's body reads the forward pre-activation ``z`` only for the shape of the zeros
    its gate slices' gradients are added into; once ``join_slice_gradients`` makes those one
    concatenation, nothing reads ``z``, and without this the forward loop would still stack it
    at every step (``prune_loops``, after this pass, drops that stack). The body is rewritten
    by the same passes its lowering runs."""
    from graphnet.compiler import pipeline   # the passes, for the body: a loop's body is a graph too
    mapping = {}
    for node in fgraph.nodes():
        if not isinstance(node.op, Scan):
            continue
        op = node.op
        body = pipeline.optimize(op.body)
        read = {id(v) for v in body.variables()}
        seqs, _, nonseqs = op.inner_inputs()
        keep_seqs = [i for i, v in enumerate(seqs) if id(v) in read]
        keep_nonseqs = [i for i, v in enumerate(nonseqs) if id(v) in read]
        if len(keep_seqs) == len(seqs) and len(keep_nonseqs) == len(nonseqs):
            continue
        outer_seqs, inits, outer_nonseqs = op.split(node.inputs[1:])
        pruned = op.reading_only(keep_seqs, keep_nonseqs, body)
        new = pruned.make_node(node.inputs[0], *[outer_seqs[i] for i in keep_seqs], *inits,
                               *[outer_nonseqs[i] for i in keep_nonseqs])
        pruned.built_at = op.built_at   # errors name the user's scan, not this pass
        mapping.update(zip(node.outputs, new.outputs))
    return fgraph.replace(mapping)


def prune_loops(fgraph):
    """Drop a loop's stacked outputs that nothing reads, and keep only the last values of a state
    whose values are read only at the end (``buffer[-1]``, or ``outputs[-1]`` of what scan
    returned, ``buffer[L:]``) or not at all: its buffer becomes a window of ``L + 1`` slots
    instead of ``L + n_steps`` (``Scan.last_only``), and those reads read the window's end."""
    loops = [n for n in fgraph.nodes() if isinstance(n.op, Scan)]
    if not loops:
        return fgraph
    clients = fgraph.clients()
    roots = {id(v) for v in fgraph.roots}
    mapping = {}
    for node in loops:
        op = node.op
        k = op.n_states
        keep = [i for i in range(op.n_stacked) if id(node.outputs[k + i]) in roots or clients.get(node.outputs[k + i])]
        ends = [_end_reads(node.outputs[j], op.lags[j], clients, roots) for j in range(k)]
        last_only = tuple(last or found is not None for last, found in zip(op.last_only, ends))
        if len(keep) == op.n_stacked and last_only == op.last_only:
            continue
        new_outputs = op.pruned(keep, last_only).make_node(*node.inputs).outputs
        mapping.update(zip([node.outputs[k + i] for i in keep], new_outputs[k:]))
        for j in range(k):
            if not last_only[j]:
                mapping[node.outputs[j]] = new_outputs[j]
            elif not op.last_only[j]:
                mapping.update((read, new_outputs[j][-1]) for read in ends[j])
            else:
                mapping[node.outputs[j]] = new_outputs[j]
    return fgraph.replace(mapping)


def _is_index(node, entries):
    return isinstance(node.op, Subtensor) and node.op.entries == entries


def _end_reads(buffer, lag, clients, roots):
    """The variables reading a state's last value (``buffer[-1]``, ``buffer[lag:][-1]``) when they
    are all that reads the buffer, else None."""
    if id(buffer) in roots:
        return None
    found = []
    for user, _ in clients.get(buffer, ()):
        if _is_index(user, (("index", -1),)):
            found.append(user.outputs[0])
        elif _is_index(user, (("slice", lag, None, None),)) and id(user.outputs[0]) not in roots and all(
                _is_index(reader, (("index", -1),)) for reader, _ in clients.get(user.outputs[0], ())):
            found.extend(reader.outputs[0] for reader, _ in clients.get(user.outputs[0], ()))
        else:
            return None
    return found
