"""``gn.scan``: Theano's ``scan`` front end, which builds one :class:`Scan` node.

It calls the user's ``fn`` once, on placeholders standing for one step's
values, and turns what ``fn`` built into the loop's body:

- **taps of sequences** become shifted sequences (tap ``k`` of ``x`` with taps
  from ``lo`` to ``hi`` reads ``x[k - lo:]``), so the op sees plain sequences;
  ``go_backwards`` reverses each sequence first;
- **loop-invariant values** (every value ``fn`` reads or builds that depends on
  no step value: weights, ``W.T``, ``b * 2``) are hoisted out of the loop and
  passed in as non-sequences, computed once;
- **random streams**: a shared variable whose update ``fn`` returns, or that
  updates itself in every function (a ``RandomStreams`` step counter), becomes
  a state of the loop advanced by its update at every step, so each step
  draws fresh numbers; its final value is in the ``updates`` scan returns.
"""
from __future__ import annotations

import numpy as np

from graphnet.errors import DTypeError, GraphnetError, ShapeError
from graphnet.graph import ir
from graphnet.graph.fgraph import FunctionGraph
from graphnet.graph.ir import Constant, Placeholder, SharedVariable, Variable, as_variable, shape_str
from graphnet.ops import elementwise as ew
from graphnet.ops.indexing import static_int
from graphnet.ops.reduce import size_of
from graphnet.ops.scan.op import Scan
from graphnet.ops.linalg import Dot
from graphnet.ops.shape import expand_dims, reshape


def scan(fn, sequences=None, outputs_info=None, non_sequences=None, n_steps=None, truncate_gradient=-1,
         go_backwards=False, mode=None, name=None, profile=False, allow_gc=None, strict=False,
         return_list=False):
    """Loop ``fn`` over the leading axis of ``sequences``: Theano's ``scan``; returns ``(outputs, updates)``.

    ``fn`` receives, in order, the slices of each sequence (one per tap), the
    past values of each fed-back output (one per tap) and the non-sequences;
    it returns the outputs of one step (and optionally an updates dict).
    ``sequences``: variables, or ``dict(input=x, taps=[-1, 0])``.
    ``outputs_info``: per output, its initial value (fed back at tap -1),
    ``dict(initial=x0, taps=[-2, -1])`` (``x0`` holds the 2 values before
    step 0), or None (not fed back). ``n_steps``: an int or an integer scalar
    variable (default: the length of the sequences). ``truncate_gradient``:
    backpropagate through that many steps only (-1: all). ``outputs`` holds
    the values of every step (a variable when there is one output, unless
    ``return_list``); ``updates`` maps shared variables to their value after
    the loop: pass it to ``gn.function(updates=...)``. ``mode``, ``profile``,
    ``allow_gc`` and ``strict`` are accepted for Theano scripts and change nothing.
    """
    label = name or "scan"
    hint = f" (scan {label!r}, built at {ir.user_source_line()})"
    seqs = [_sequence(s, go_backwards, hint) for s in _as_list(sequences)]
    states_info = [_output_info(o, hint, i) for i, o in enumerate(_as_list(outputs_info))]
    non_sequences = [as_variable(v) for v in _as_list(non_sequences)]
    n_steps = _n_steps(n_steps, seqs, hint)
    if not isinstance(truncate_gradient, (int, np.integer)) or truncate_gradient == 0 or truncate_gradient < -1:
        raise GraphnetError(f"scan: truncate_gradient must be -1 (all steps) or a positive int, got "
                            f"{truncate_gradient!r}{hint}")

    start = ir._ids.value   # every variable fn builds gets a larger id: that is how the body is told apart
    seq_args = [Placeholder(f"{seq_name}[t{tap:+d}]" if tap else f"{seq_name}[t]", var.type.shape[1:], var.dtype)
                for var, taps, _, seq_name in seqs for tap in taps]
    state_args = [[Placeholder(f"{label}.out{i}[t{tap}]", init.type.shape[1:], init.dtype) for tap in taps]
                  for i, (init, taps) in enumerate(info for info in states_info if info is not None)]
    result = fn(*seq_args, *[a for args in state_args for a in args], *non_sequences)
    outputs, fn_updates = _split_result(result, hint)
    if outputs_info is None:
        states_info = [None] * len(outputs)
    if len(outputs) != len(states_info):
        raise GraphnetError(f"scan: fn returned {len(outputs)} output(s) but outputs_info describes "
                            f"{len(states_info)}{hint}")

    state_outs, names = [], []
    fed = iter(state_args)
    inits, taps_of, dummies = [], [], []
    for i, (out, info) in enumerate(zip(outputs, states_info)):
        if info is None:
            continue
        init, taps = info
        out = _check_state_output(as_variable(out, like=init), init, init.type.shape[1:],
                                  f"output {i} ({as_variable(out, like=init).describe()})", hint)
        state_outs.append(out)
        inits.append(init)
        taps_of.append(taps)
        dummies.append(next(fed))
        names.append(f"output {i} ({out.describe()})")
    stacked = [(i, as_variable(o)) for i, (o, info) in enumerate(zip(outputs, states_info)) if info is None]

    # Shared variables updated at every step: fn's updates and self-updating random streams.
    roots = state_outs + [o for _, o in stacked] + list(fn_updates.values())
    updated = dict(fn_updates)
    for var in _leaves(roots, start):
        if isinstance(var, SharedVariable) and var.update_in_every_function and var not in updated:
            updated[var] = var.default_update
    shared_dummies = {}
    for shared, expr in updated.items():
        dummy = Placeholder(f"{shared.describe()}[t-1]", shared.type.shape, shared.dtype)
        shared_dummies[shared] = dummy
        # A default update was built before fn ran: rebuilt on the step's value, it is part of the body.
        expr = ir.clone_replace([as_variable(expr, like=shared)], {shared: dummy})[0]
        state_outs.append(_check_state_output(as_variable(expr, like=shared), shared, shared.type.shape,
                                              f"the update of {shared.describe()}", hint))
        inits.append(expand_dims(shared, 0))
        taps_of.append((-1,))
        dummies.append([dummy])
        names.append(f"the update of {shared.describe()}")
    names += [f"output {i} ({o.describe()})" for i, o in stacked]

    body_roots = state_outs + [o for _, o in stacked]
    step_values = set(seq_args) | {d for args in dummies for d in args} | set(shared_dummies)
    hoisted = _loop_invariants(body_roots, start, step_values | set(updated))
    replace = dict(shared_dummies)
    hoisted_args = []
    for var in hoisted:
        arg = Placeholder(var.describe(), var.type.shape, var.dtype)
        replace[var] = arg
        hoisted_args.append(arg)
    body_roots = ir.clone_replace(body_roots, replace) if replace else body_roots
    outer_seqs = [var[tap - taps[0]:] if tap != taps[0] else var for var, taps, _, _ in seqs for tap in taps]
    body_roots, seq_args, outer_seqs = _hoist_sequence_products(body_roots, seq_args, outer_seqs,
                                                                dict(zip(hoisted_args, hoisted)))
    # What the body no longer reads (a slice only its hoisted product read) is not passed in.
    read = set(ir.graph_inputs(body_roots))
    outer_seqs = [o for a, o in zip(seq_args, outer_seqs) if a in read]
    seq_args = [a for a in seq_args if a in read]
    hoisted = [o for a, o in zip(hoisted_args, hoisted) if a in read]
    hoisted_args = [a for a in hoisted_args if a in read]
    body = FunctionGraph(tuple(seq_args + [d for args in dummies for d in args] + hoisted_args), tuple(body_roots))
    op = Scan(body, len(seq_args), taps_of, len(stacked), len(hoisted), name=name,
              truncate_gradient=truncate_gradient, output_names=names)
    results = op.make_node(n_steps, *outer_seqs, *inits, *hoisted).outputs
    buffers, stacks = results[:len(state_outs)], results[len(state_outs):]

    values = [None] * len(outputs)
    for j, i in enumerate(i for i, info in enumerate(states_info) if info is not None):
        values[i] = buffers[j][op.lags[j]:]
    for (i, _), stack in zip(stacked, stacks):
        values[i] = stack
    n_user = sum(info is not None for info in states_info)
    updates = {shared: buffers[n_user + k][-1] for k, shared in enumerate(updated)}
    if len(values) == 1 and not return_list:
        return values[0], updates
    return values, updates


def scan_map(fn, sequences, non_sequences=None, truncate_gradient=-1, go_backwards=False, mode=None, name=None):
    """Theano's ``map``: ``fn`` applied to every step of ``sequences``, nothing fed back."""
    return scan(fn, sequences=sequences, non_sequences=non_sequences, truncate_gradient=truncate_gradient,
                go_backwards=go_backwards, name=name)


def scan_reduce(fn, sequences, outputs_info, non_sequences=None, go_backwards=False, mode=None, name=None):
    """Theano's ``reduce``: a scan whose outputs are only their values after the last step."""
    outputs, updates = scan(fn, sequences=sequences, outputs_info=outputs_info, non_sequences=non_sequences,
                            go_backwards=go_backwards, name=name, return_list=True)
    last = [out[-1] for out in outputs]
    return (last[0] if len(last) == 1 else last), updates


def foldl(fn, sequences, outputs_info, non_sequences=None, mode=None, name=None):
    """Theano's ``foldl``: ``reduce`` from the first step."""
    return scan_reduce(fn, sequences, outputs_info, non_sequences, go_backwards=False, name=name)


def foldr(fn, sequences, outputs_info, non_sequences=None, mode=None, name=None):
    """Theano's ``foldr``: ``reduce`` from the last step."""
    return scan_reduce(fn, sequences, outputs_info, non_sequences, go_backwards=True, name=name)


def _as_list(value):
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _sequence(entry, go_backwards, hint):
    """(variable, taps, steps it offers, its name) of one ``sequences`` entry."""
    if isinstance(entry, dict):
        unknown = set(entry) - {"input", "taps"}
        if unknown or "input" not in entry:
            raise GraphnetError(f"scan: a sequence given as a dict needs 'input' (and optionally 'taps'), got "
                                f"keys {sorted(entry)}{hint}")
        var, taps = as_variable(entry["input"]), entry.get("taps", [0])
    else:
        var, taps = as_variable(entry), [0]
    taps = _taps(taps, "sequence", hint)
    if var.ndim == 0:
        raise ShapeError(f"scan: sequence {var.describe()} is a scalar; a sequence is iterated along its first "
                         f"axis{hint}")
    seq_name = var.describe()
    if go_backwards:
        var = var[::-1]
    width = taps[-1] - taps[0]
    static = var.type.shape[0]
    if static is not None and static <= width:
        raise ShapeError(f"scan: sequence {var.describe()} of shape {shape_str(var.type.shape)} is too short "
                         f"for its taps {list(taps)}{hint}")
    steps = static - width if static is not None else ew.sub(size_of(var, 0), width) if width else size_of(var, 0)
    return var, taps, steps, seq_name


def _taps(taps, what, hint):
    taps = [taps] if isinstance(taps, (int, np.integer)) else list(taps)
    if not taps or not all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in taps):
        raise GraphnetError(f"scan: the taps of a {what} must be a non-empty list of ints, got {taps!r}{hint}")
    if len(set(taps)) != len(taps):
        raise GraphnetError(f"scan: the taps {taps} of a {what} repeat a tap{hint}")
    return tuple(sorted(int(t) for t in taps))


def _output_info(entry, hint, index):
    """(initial buffer, taps) of one ``outputs_info`` entry, or None for an output not fed back."""
    if entry is None:
        return None
    if isinstance(entry, dict):
        unknown = set(entry) - {"initial", "taps"}
        if unknown:
            raise GraphnetError(f"scan: outputs_info[{index}] has unknown keys {sorted(unknown)}{hint}")
        if entry.get("initial") is None:
            return None
        init, taps = as_variable(entry["initial"]), _taps(entry.get("taps", [-1]), "fed-back output", hint)
    else:
        init, taps = as_variable(entry), (-1,)
    if taps[-1] >= 0:
        raise GraphnetError(f"scan: outputs_info[{index}] has taps {list(taps)}; a fed-back output reads its "
                            f"past values only, so its taps must be negative{hint}")
    if taps == (-1,):
        return expand_dims(init, 0), taps
    lag = -taps[0]
    if init.ndim == 0 or (init.type.shape[0] is not None and init.type.shape[0] < lag):
        raise ShapeError(f"scan: outputs_info[{index}] with taps {list(taps)} needs an initial value holding "
                         f"the {lag} values before step 0 along its first axis, got shape "
                         f"{shape_str(init.type.shape)}{hint}")
    return init[:lag], taps


def _n_steps(n_steps, seqs, hint):
    if n_steps is not None:
        value = as_variable(n_steps)
        if value.ndim != 0 or value.dtype.kind not in "iu":
            raise DTypeError(f"scan: n_steps must be an int or an integer scalar variable, got {value.type}{hint}")
        known = static_int(value)
        if known is not None and known < 0:
            raise ShapeError(f"scan: n_steps must not be negative, got {known}{hint}")
        return value
    if not seqs:
        raise GraphnetError(f"scan: without sequences, give n_steps{hint}")
    steps = [s for _, _, s, _ in seqs]
    if all(isinstance(s, int) for s in steps):
        return Constant(np.int64(min(steps)))
    total = None
    for s in steps:
        s = as_variable(s) if not isinstance(s, int) else Constant(np.int64(s))
        total = s if total is None else ew.minimum(total, s)
    return total


def _split_result(result, hint):
    """fn's return value as (outputs list, updates dict)."""
    updates = {}
    if isinstance(result, dict):
        return [], _checked_updates(result, hint)
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict):
        result, updates = result[0], _checked_updates(result[1], hint)
    elif isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], dict):
        updates, result = _checked_updates(result[0], hint), result[1]
    if result is None:
        return [], updates
    outputs = list(result) if isinstance(result, (list, tuple)) else [result]
    for out in outputs:
        if not isinstance(out, (Variable, int, float, np.ndarray, np.number)):
            raise GraphnetError(f"scan: fn must return graph variables, got {type(out).__name__}{hint}")
    return outputs, updates


def _checked_updates(updates, hint):
    for shared in updates:
        if not isinstance(shared, SharedVariable):
            raise GraphnetError(f"scan: fn's updates must map shared variables to new values, got key "
                                f"{shared!r}{hint}")
    return dict(updates)


def _check_state_output(out, init, expected_shape, what, hint):
    """A fed-back output must keep its initial value's dtype and shape."""
    if out.dtype != init.dtype:
        raise DTypeError(f"scan: {what} has dtype {out.dtype} but its initial value has dtype {init.dtype}; "
                         f"cast one of them (a state keeps its dtype from step to step){hint}")
    if out.ndim != len(expected_shape) or any(a is not None and b is not None and a != b
                                              for a, b in zip(out.type.shape, expected_shape)):
        raise ShapeError(f"scan: {what} has shape {shape_str(out.type.shape)} but its initial value has shape "
                         f"{shape_str(expected_shape)} (a state keeps its shape from step to step){hint}")
    return out


def _body_nodes(roots, start):
    """The nodes ``fn`` built (ids from ``start``) that ``roots`` need, inputs before consumers."""
    order, seen = [], set()
    stack = [(v.owner, False) for v in roots if v.owner is not None and v.id >= start]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        stack.extend((v.owner, False) for v in node.inputs
                     if v.owner is not None and v.id >= start and id(v.owner) not in seen)
    return order


def _leaves(roots, start):
    """Variables the body reads that it did not build (outer values)."""
    found = {}
    for v in roots:
        if v.id < start or v.owner is None:
            found[v] = None
    for node in _body_nodes(roots, start):
        for v in node.inputs:
            if v.id < start or v.owner is None:
                found[v] = None
    return list(found)


def _loop_invariants(roots, start, step_values):
    """The largest values the body reads that depend on no step value: the loop's non-sequences.

    Constants stay in the body (they cost nothing there and fold); everything
    else that is the same at every step is computed once, outside the loop.
    """
    varying = set(step_values)
    for node in _body_nodes(roots, start):
        if any(v in varying for v in node.inputs):
            varying.update(node.outputs)
    invariant = {}
    readers = [n.inputs for n in _body_nodes(roots, start) if any(o in varying for o in n.outputs)]
    for var in [v for inputs in readers for v in inputs] + list(roots):
        if var not in varying and not isinstance(var, Constant):
            invariant[var] = None
    return list(invariant)


def _hoist_sequence_products(roots, seq_args, outer_seqs, invariant_outer):
    """``x_t @ W`` (a step's slice times a loop-invariant matrix) becomes one product over all the
    steps before the loop, read by the body as a sequence: one GEMM of ``n * B`` rows instead of
    ``n`` GEMMs of ``B`` rows, and in the backward pass ``dW`` is one GEMM too.

    Returns the body's roots, its sequence placeholders and their outer sequences.
    """
    outer_of = dict(zip(seq_args, outer_seqs))
    replace, new_args, new_outer = {}, [], []
    for node in ir.ancestors_toposort(roots):
        if not isinstance(node.op, Dot) or node.outputs[0] in replace:
            continue
        a, w = node.inputs
        if a not in outer_of or w not in invariant_outer or w.ndim != 2 or a.ndim not in (1, 2) \
                or any(d is None for d in a.type.shape) or w.type.shape[1] is None:
            continue
        seq = outer_of[a]
        with ir.provenance(node.source):
            flat = reshape(seq, (-1, a.type.shape[-1])) if a.ndim == 2 else seq
            product = Dot()(flat, invariant_outer[w])
            if a.ndim == 2:
                product = reshape(product, (-1, a.type.shape[0], w.type.shape[1]))
        out = node.outputs[0]
        arg = Placeholder(f"{a.name}@{w.name}", out.type.shape, out.dtype)
        replace[out] = arg
        new_args.append(arg)
        new_outer.append(product)
    if not replace:
        return roots, seq_args, outer_seqs
    return ir.clone_replace(roots, replace), list(seq_args) + new_args, list(outer_seqs) + new_outer
