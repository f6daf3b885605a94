"""Backpropagation through time: the gradient of a Scan is a second Scan, run backwards.

For the forward loop ``y_t = f(x_t, taps of the states, w)`` the backward loop
visits ``t = n - 1 .. 0`` (``reverse=True``) and at each step pulls the
cotangents of ``y_t`` back through ``f`` (``autodiff.vjp`` on a copy of the
body, which recomputes the step's intermediate values from the saved states):

- a state with taps down to ``-L`` carries a **window** of ``L`` pending
  cotangents, the contributions of later steps to the values ``t - L + 1 .. t``;
  at step ``t`` the cotangent of ``y_t`` is the window's newest entry plus the
  gradient the caller gave for ``y_t``, and the window slides by one, adding
  what step ``t`` gives each of its taps;
- a non-sequence's gradient is summed over the steps in a state (an accumulator);
- a sequence's gradient is a stacked output of the backward loop, one slice per step.

``truncate_gradient = k`` runs the backward loop over the last ``k`` steps only:
earlier steps' sequence gradients are zero, and the initial states get no
gradient unless the loop is no longer than ``k``.
"""
from __future__ import annotations

import numpy as np

from graphnet.graph.autodiff import vjp
from graphnet.graph.fgraph import FunctionGraph
from graphnet.graph.ir import Constant, Placeholder, ancestors_toposort, clone_replace
from graphnet.ops import elementwise as ew
from graphnet.ops.indexing import IncSubtensor, alloc, static_int
from graphnet.ops.join import concatenate
from graphnet.ops.linalg import Dot
from graphnet.ops.reduce import Sum, size_of
from graphnet.ops.shape import Transpose, expand_dims, reshape, transpose


def _floating(var):
    return var.dtype.kind == "f"


def _live(g):
    return g is not None and not g.structural_zero


def scan_grad(op, inputs, outputs, output_grads):
    from graphnet.ops.scan.op import Scan

    n = inputs[0]
    seqs, inits, nonseqs = op.split(inputs[1:])
    k = op.n_states
    buffers, g_buffers, g_stacks = outputs[:k], output_grads[:k], output_grads[k:]
    inner_seqs, inner_taps, inner_nonseqs = op.inner_inputs()
    states = [j for j in range(k) if _floating(op.body.outputs[j])]
    live_stacks = [i for i, g in enumerate(g_stacks) if _live(g) and _floating(op.body.outputs[k + i])]
    live_buffers = [j for j in states if _live(g_buffers[j])]
    if not live_stacks and not live_buffers:
        return [None] * len(inputs)
    begin, n_back, whole = _steps_back(n, op.truncate_gradient)

    def window(var, offset):
        """``var[offset + begin : offset + n]``: what the backward loop reads at its steps."""
        start = offset + begin if isinstance(begin, int) else ew.add(begin, offset)
        stop = ew.add(n, offset) if offset else n
        return var[start:stop]

    # The backward body reads the forward body's inputs (one more program over the same
    # placeholders), plus cotangents and carried state.
    forward = list(op.body.outputs)
    bw_seqs, outer_seqs = [v for v in inner_seqs], [window(s, 0) for s in seqs]
    for j, (taps, tap_values) in enumerate(zip(inner_taps, op.state_taps)):
        for var, tap in zip(taps, tap_values):
            bw_seqs.append(var)
            outer_seqs.append(window(buffers[j], op.lags[j] + tap))
    stack_cots = {}
    for i in live_stacks:
        stack_cots[i] = Placeholder(f"d{forward[k + i].describe()}[t]", forward[k + i].type.shape,
                                    forward[k + i].dtype)
        bw_seqs.append(stack_cots[i])
        outer_seqs.append(window(g_stacks[i], 0))
    buffer_cots = {}
    for j in live_buffers:
        buffer_cots[j] = Placeholder(f"d{op.output_names[j]}[t]", forward[j].type.shape, forward[j].dtype)
        bw_seqs.append(buffer_cots[j])
        steps_part = _steps_part(g_buffers[j], op.lags[j])
        outer_seqs.append(window(steps_part, 0) if steps_part is not None else window(g_buffers[j], op.lags[j]))

    windows = {j: [Placeholder(f"pending d{op.output_names[j]}[t-{op.lags[j] - 1 - m}]", forward[j].type.shape,
                               forward[j].dtype) for m in range(op.lags[j])] for j in states}
    grad_nonseqs = [i for i, v in enumerate(inner_nonseqs) if _floating(v)]
    sums = {i: Placeholder(f"sum d{inner_nonseqs[i].name}", inner_nonseqs[i].type.shape, inner_nonseqs[i].dtype)
            for i in grad_nonseqs}

    # One step of the backward loop.
    cot_outputs, cots = [], []
    for j in states:
        cot = windows[j][-1]
        if j in buffer_cots:
            cot = ew.add(cot, buffer_cots[j])
        cot_outputs.append(forward[j])
        cots.append(cot)
    for i in live_stacks:
        cot_outputs.append(forward[k + i])
        cots.append(stack_cots[i])
    wrt = [v for v in op.body.inputs if _floating(v)]
    pulled = dict(zip(wrt, vjp(cot_outputs, cots, wrt)))

    new_state_values, state_inits = [], []
    for j in states:
        taps_of = dict(zip(op.state_taps[j], inner_taps[j]))
        lag = op.lags[j]
        pending = windows[j]
        for m in range(lag):
            tap_var = taps_of.get(m - lag)
            g = pulled.get(tap_var) if tap_var is not None else None
            previous = pending[m - 1] if m > 0 else None
            value = ew.add(previous, g) if previous is not None and g is not None else \
                g if g is not None else previous if previous is not None else ew.zeros_like(pending[0])
            new_state_values.append(value)
            state_inits.append(_zeros_buffer(inits[j], 1))
    step_grads = [pulled.get(inner_nonseqs[i]) for i in grad_nonseqs]
    grad_seqs = [i for i, v in enumerate(inner_seqs) if _floating(v)]
    seq_grads = []
    for i in grad_seqs:
        g = pulled.get(inner_seqs[i])
        seq_grads.append(g if g is not None else ew.zeros_like(inner_seqs[i]))

    n_windows = len(new_state_values)
    roots, saved, saved_outer = _read_saved_values(op, inputs, outputs,
                                                   new_state_values + seq_grads + step_grads, window)
    new_state_values = roots[:n_windows]
    seq_grads = roots[n_windows:n_windows + len(seq_grads)]
    step_grads = roots[n_windows + len(seq_grads):]
    bw_seqs, outer_seqs = bw_seqs + saved, outer_seqs + saved_outer

    # A weight's gradient summed over the steps: a product or a sum of per-step values is
    # taken once over all steps after the loop (one GEMM of n * B rows); anything else is a
    # sum the loop carries.
    outer_of = dict(zip(bw_seqs, outer_seqs))
    stacked_values, after_loop, summed = [], {}, []
    for i, g in zip(grad_nonseqs, step_grads):
        plan = _sum_over_steps(g, outer_of, stacked_values) if g is not None else None
        if plan is not None:
            after_loop[i] = plan
        else:
            summed.append(i)
            new_state_values.append(ew.add(sums[i], g) if g is not None else sums[i])
            state_inits.append(_zeros_buffer(nonseqs[i], 0))

    carried = [p for j in states for p in windows[j]] + [sums[i] for i in summed]
    body = FunctionGraph(tuple(bw_seqs + carried + [v for v in inner_nonseqs]),
                         tuple(new_state_values + seq_grads + stacked_values))
    names = [f"pending {c.name}" for c in carried] + [f"d{inner_seqs[i].name}" for i in grad_seqs] + \
        [f"step value {v.describe()}" for v in stacked_values]
    backward = Scan(body, len(bw_seqs), [(-1,)] * len(carried), len(seq_grads) + len(stacked_values), len(nonseqs),
                    name=f"grad of {op.scan_name}", reverse=True, output_names=names,
                    last_only=[True] * len(carried))   # only the sums after the last step are read
    results = backward.make_node(n_back, *outer_seqs, *state_inits, *nonseqs).outputs
    finals = [r[-1] for r in results[:len(carried)]]
    seq_stacks = results[len(carried):len(carried) + len(seq_grads)]
    value_stacks = results[len(carried) + len(seq_grads):]

    grads = [None] * len(inputs)
    position = 0
    for j in states:
        lag = op.lags[j]
        entries = finals[position:position + lag]
        position += lag
        g_init = expand_dims(entries[0], 0) if lag == 1 else concatenate([expand_dims(e, 0) for e in entries])
        if whole is not True:   # the initial state is further back than the truncated loop reaches
            g_init = ew.zeros_like(g_init) if whole is False else ew.where(whole, g_init, ew.zeros_like(g_init))
        if j in buffer_cots and _steps_part(g_buffers[j], lag) is None:   # else the steps' part is all there is
            g_init = ew.add(g_init, g_buffers[j][:lag])
        grads[1 + op.n_seqs + j] = _pad(g_init, inits[j], 0, lag)
    for i in summed:
        grads[1 + op.n_seqs + k + i] = finals[position]
        position += 1
    for i, finish in after_loop.items():
        grads[1 + op.n_seqs + k + i] = ew.cast(finish(value_stacks), nonseqs[i].dtype)
    for i, stack in zip(grad_seqs, seq_stacks):
        grads[1 + i] = _pad(stack, seqs[i], begin, n)
    return grads


def _sum_over_steps(g, outer_of, stacked_values):
    """How to take ``sum over steps of g`` after the loop, or None: ``g = dot(a.T, b)`` (a weight's
    gradient) becomes ``dot(A.T, B)`` over the steps' rows, ``g = sum(b, axes)`` (a bias's) a sum of
    the stack. Operands the loop does not read as sequences are appended to ``stacked_values``
    (the loop stacks them); returns a function of those stacks."""
    def stack_of(var):
        if var in outer_of:
            return lambda stacks: outer_of[var]
        if var not in stacked_values:
            stacked_values.append(var)
        position = stacked_values.index(var)
        return lambda stacks: stacks[position]

    node = g.owner
    if node is None:
        return None
    if isinstance(node.op, Dot) and node.inputs[0].owner is not None and \
            isinstance(node.inputs[0].owner.op, Transpose) and node.inputs[0].ndim == 2 and node.inputs[1].ndim == 2:
        a, b = node.inputs[0].owner.inputs[0], node.inputs[1]
        if a.type.shape[1] is None or b.type.shape[1] is None:
            return None
        left, right = stack_of(a), stack_of(b)
        return lambda stacks: Dot()(transpose(reshape(left(stacks), (-1, a.type.shape[1]))),
                                    reshape(right(stacks), (-1, b.type.shape[1])))
    if isinstance(node.op, Sum) and not node.op.keepdims:
        x = node.inputs[0]
        values = stack_of(x)
        axes = (0,) + tuple(a + 1 for a in node.op.axis)
        return lambda stacks: Sum(axes)(values(stacks))
    return None


def _read_saved_values(op, inputs, outputs, roots, window):
    """The backward body with the forward values it reads (a gate's sigmoid, a state) read from
    stacks the forward loop wrote, instead of recomputed: (roots, their placeholders, outer stacks).

    A state or stacked output is already stacked by the forward loop; any other value is
    added to it as a stacked output: the gradient extends the forward loop (``Scan.with_saved``),
    and the ``share_loops`` pass makes the loop the user built that extended one, so it runs once.
    """
    forward_nodes = {id(n) for n in op.body.nodes()}
    produced = {v for n in op.body.nodes() for v in n.outputs}
    needed = {v: None for v in roots if v in produced}
    for node in ancestors_toposort(roots):
        if id(node) not in forward_nodes:
            needed.update((v, None) for v in node.inputs if v in produced)
    if not needed:
        return roots, [], []
    k, body_outputs = op.n_states, list(op.body.outputs)
    replace, placeholders, outer, extra = {}, [], [], []
    for var in needed:
        replace[var] = Placeholder(f"saved {var.describe()}", var.type.shape, var.dtype)
        placeholders.append(replace[var])
        position = next((i for i, out in enumerate(body_outputs) if out is var), None)
        if position is not None and position < k:
            outer.append(window(outputs[position], op.lags[position]))
        elif position is not None:
            outer.append(window(outputs[position], 0))
        else:
            outer.append(len(extra))
            extra.append(var)
    if extra:
        extended = op.with_saved(extra).make_node(*inputs).outputs[k + op.n_stacked:]
        outer = [window(extended[o], 0) if isinstance(o, int) else o for o in outer]
    return clone_replace(roots, replace), placeholders, outer


def _steps_part(g_buffer, lag):
    """``g`` when a state buffer's gradient is ``zeros`` with ``g`` added at ``[lag:]`` (the gradient
    of the steps' values ``buffer[lag:]``, what scan returns): the loop reads ``g`` itself, not a
    slice of a zero-padded copy. Else None."""
    node = g_buffer.owner
    if node is None or type(node.op) is not IncSubtensor or node.op.entries != (("slice", lag, None, None),):
        return None
    base = node.inputs[0]
    zeros = base.owner is not None and isinstance(base.owner.op, ew.Second) and \
        isinstance(base.owner.inputs[1], Constant) and not base.owner.inputs[1].data.any()
    g, rows = node.inputs[1], g_buffer.type.shape[0]
    # g must be the slice's full value, not a value broadcast into it.
    full = g.ndim == g_buffer.ndim and (g.type.shape[0] == rows - lag if rows is not None else g.type.shape[0] != 1)
    return g if zeros and full else None


def _zeros_buffer(like, skip):
    """Zeros of shape ``(1,) + like.shape[skip:]``: a carried state's first value. Made by NumPy
    (``alloc``), not by a generated kernel: it runs once per call and need not be compiled."""
    dims = [like.type.shape[a] if like.type.shape[a] is not None else size_of(like, a) for a in range(skip, like.ndim)]
    return alloc(np.zeros((), like.dtype), 1, *dims)


def _steps_back(n, truncate):
    """(first step the backward loop reaches, its number of steps, whether it reaches step 0).

    Each is a Python value when known statically, else a graph variable.
    """
    if truncate == -1:
        return 0, n, True
    known = static_int(n)
    if known is not None:
        steps = min(known, truncate)
        return known - steps, Constant(np.int64(steps)), known <= truncate
    steps = ew.minimum(n, Constant(np.int64(truncate)))
    return ew.sub(n, steps), steps, ew.less_equal(n, Constant(np.int64(truncate)))


def _pad(g, like, begin, stop):
    """``g`` as the gradient of ``like``: zeros outside ``like[begin:stop]`` (a no-op when they coincide)."""
    if begin == 0 and static_int(stop) is not None and like.type.shape[0] == static_int(stop):
        return g
    sub = like[begin:stop]
    return IncSubtensor(sub.owner.op.entries)(ew.zeros_like(like), g, *sub.owner.inputs[1:])
