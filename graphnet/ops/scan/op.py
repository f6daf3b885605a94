"""The Scan op: a loop whose body is a graph, and the loop that runs it.

One ``Scan`` node computes, for ``t`` in ``0 .. n_steps - 1``::

    outputs_t = body(sequences[t], states[t + tap] for each tap, non_sequences)

Its inputs are ``[n_steps, *sequences, *initial_buffers, *non_sequences]``:

- a **sequence** is read one slice per step (the front end has already cut
  Theano's taps into one shifted sequence per tap, so the op sees taps of
  sequences as plain sequences);
- a **state** (Theano's sit-sot and mit-sot) has taps ``(-L, ..., -1)`` (a
  subset); its initial buffer holds its ``L`` values before step 0, and its
  output is the whole buffer, ``L + n_steps`` values, step ``t`` written at
  ``L + t`` and read back at ``L + t + tap`` by later steps;
- a **non-sequence** is the same value at every step (weights, and every
  loop-invariant value the body reads, which the front end hoisted out);
- the body's other outputs (Theano's nit-sot, ``outputs_info`` None) are
  stacked, ``n_steps`` values.

``reverse`` (what the backward loop uses) runs ``t`` from ``n_steps - 1`` down
to 0: sequences are read and stacked outputs written at ``t``, while states
still advance one buffer slot per iteration.

The loop is :func:`run_loop`, shared by every backend: the op's ``perform``
runs it with the body's NumPy reference; the CPU backend runs it with the body
compiled (``compiler/runtime/scan_steps.py``). It checks what the graph could
not check statically: a sequence shorter than ``n_steps``, a body output whose
shape changes between steps.
"""
from __future__ import annotations

import copy

import numpy as np

from graphnet.errors import DTypeError, GradientError, GraphnetError, ShapeError
from graphnet.graph.fgraph import FunctionGraph
from graphnet.graph.ir import Apply, Op, TensorType, as_variable, shape_str
from graphnet.ops.indexing import static_int


class Scan(Op):
    """A symbolic loop (Theano's ``scan``); build it with :func:`graphnet.scan`.

    ``body``: a FunctionGraph whose inputs are one placeholder per sequence,
    per state tap (state by state, taps in increasing order) and per
    non-sequence, and whose outputs are the states' new values, then the
    stacked outputs. ``state_taps``: the taps of each state, negative ints.
    """

    kind = "loop"
    infer_shape_needs_values = True   # the number of steps is a value

    def __init__(self, body, n_seqs, state_taps, n_stacked, n_nonseqs, name=None, truncate_gradient=-1,
                 reverse=False, output_names=(), last_only=()):
        self.body = body
        self.n_seqs, self.n_stacked, self.n_nonseqs = n_seqs, n_stacked, n_nonseqs
        self.state_taps = tuple(tuple(sorted(taps)) for taps in state_taps)
        self.lags = tuple(-taps[0] for taps in self.state_taps)
        #: per state: output only its last ``L`` values (a window of ``L + 1`` slots while running),
        #: not all ``L + n_steps``: the compiler's choice when nothing reads the earlier ones
        self.last_only = tuple(last_only) or (False,) * len(self.state_taps)
        self.scan_name = name or "scan"
        self.truncate_gradient = int(truncate_gradient)
        self.reverse = bool(reverse)
        self.output_names = tuple(output_names) or tuple(f"output {i}" for i in range(len(body.outputs)))
        self._reference = None
        self._inner_shapes = {}   # outer input shapes -> the body's output shapes (infer_shape)
        self.built_at = "?"
        #: the scan this one extends with more stacked outputs (its gradient's saved values), or None
        self.base = None
        expected = n_seqs + sum(len(t) for t in self.state_taps) + n_nonseqs
        if len(body.inputs) != expected or len(body.outputs) != len(self.state_taps) + n_stacked:
            raise GraphnetError(f"internal: scan {self.scan_name!r} body has {len(body.inputs)} inputs and "
                                f"{len(body.outputs)} outputs for its {expected} inputs and "
                                f"{len(self.state_taps) + n_stacked} outputs")

    # A loop is its body: two scans are equal only when they are the same object.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __str__(self):
        return f"scan{{{self.scan_name}{', reverse' if self.reverse else ''}}}"

    @property
    def n_states(self):
        return len(self.state_taps)

    # ------------------------------------------------------------ inputs
    def split(self, items):
        """``items`` (after n_steps) as (sequences, initial buffers, non-sequences)."""
        s, k = self.n_seqs, self.n_states
        return list(items[:s]), list(items[s:s + k]), list(items[s + k:])

    def inner_inputs(self):
        """The body's placeholders as (sequences, [taps of each state], non-sequences)."""
        inputs = list(self.body.inputs)
        seqs, rest = inputs[:self.n_seqs], inputs[self.n_seqs:]
        taps = []
        for state in self.state_taps:
            taps.append(rest[:len(state)])
            rest = rest[len(state):]
        return seqs, taps, rest

    def _outer_slots(self):
        """For each outer input after n_steps, a body placeholder of its dtype (a state's first tap)."""
        seqs, taps, nonseqs = self.inner_inputs()
        return seqs + [t[0] for t in taps] + nonseqs

    def make_node(self, n_steps, *inputs):
        n_steps = as_variable(n_steps)
        if n_steps.ndim != 0 or n_steps.dtype.kind not in "iu":
            raise DTypeError(f"scan {self.scan_name!r}: n_steps must be an integer scalar, got "
                             f"{n_steps.type}{self.error_hint()}")
        inputs = [_matching_float(as_variable(v), inner) for v, inner in zip(inputs, self._outer_slots())]
        seqs, inits, nonseqs = self.split(inputs)
        n = static_int(n_steps)
        inner_seqs, inner_taps, inner_nonseqs = self.inner_inputs()
        for outer, inner in zip(seqs, inner_seqs):
            _check_inner(self, outer.type, TensorType(outer.dtype, outer.shape[1:]), inner, "sequence")
        for outer, taps, lag in zip(inits, inner_taps, self.lags):
            for inner in taps:
                _check_inner(self, outer.type, TensorType(outer.dtype, outer.shape[1:]), inner, "initial state")
            if outer.ndim == 0 or (outer.shape[0] is not None and outer.shape[0] < lag):
                raise ShapeError(f"scan {self.scan_name!r}: an initial state of shape {shape_str(outer.shape)} "
                                 f"holds fewer than the {lag} past values its taps read{self.error_hint()}")
        for outer, inner in zip(nonseqs, inner_nonseqs):
            _check_inner(self, outer.type, outer.type, inner, "non-sequence")
        types = []
        for init, lag, last in zip(inits, self.lags, self.last_only):
            length = lag if last else None if n is None else lag + n
            types.append(TensorType(init.dtype, (length,) + init.shape[1:]))
        for out in self.body.outputs[self.n_states:]:
            types.append(TensorType(out.dtype, (n,) + out.shape))
        node = Apply(self, [n_steps] + inputs, types)
        self.built_at = node.source   # one op per node: its messages name the user's line
        return node

    # ------------------------------------------------------------ shapes
    def shape_value_inputs(self, node):
        return (0,)   # n_steps; the body's shapes follow from the inputs' shapes

    def infer_shape(self, node, shapes, values=None):
        n = step_count(self, values[0] if values is not None else None)
        seq_shapes, init_shapes, nonseq_shapes = self.split(shapes[1:])
        check_lengths(self, seq_shapes, init_shapes, n)
        # The program re-runs this rule on every call (n_steps is a value); the body's shapes
        # depend on the outer shapes only, so they are inferred once per shape signature.
        key = (tuple(map(tuple, seq_shapes)), tuple(map(tuple, init_shapes)), tuple(map(tuple, nonseq_shapes)))
        inner = self._inner_shapes.get(key)
        if inner is None:
            if len(self._inner_shapes) >= 64:   # as many as a program keeps frames
                self._inner_shapes.clear()
            inner = self._inner_shapes[key] = body_output_shapes(self, seq_shapes, init_shapes, nonseq_shapes)
        out = [(lag if last else lag + n,) + tuple(s[1:]) for s, lag, last in zip(init_shapes, self.lags, self.last_only)]
        return out + [(n,) + tuple(s) for s in inner[self.n_states:]]

    # ------------------------------------------------------------ running
    def perform(self, inputs):
        if self._reference is None:
            from graphnet.compiler.runtime.reference import ReferenceProgram
            self._reference = ReferenceProgram(self.body)
        program = self._reference
        return run_loop(self, inputs, lambda feeds: program.run(feeds)[0])

    def with_saved(self, values):
        """This loop with ``values`` of its body (intermediates its gradient reads) also stacked."""
        body = FunctionGraph(self.body.inputs, tuple(self.body.outputs) + tuple(values))
        extended = Scan(body, self.n_seqs, self.state_taps, self.n_stacked + len(values), self.n_nonseqs,
                        self.scan_name, self.truncate_gradient, self.reverse,
                        self.output_names + tuple(f"saved {v.describe()}" for v in values), self.last_only)
        extended.base = self
        return extended

    def pruned(self, stacked, last_only):
        """This loop with only the stacked outputs at positions ``stacked`` and the states'
        ``last_only`` flags given (what the ``prune_loops`` pass decides from the graph)."""
        k = self.n_states
        outputs = tuple(self.body.outputs[:k]) + tuple(self.body.outputs[k + i] for i in stacked)
        names = self.output_names[:k] + tuple(self.output_names[k + i] for i in stacked)
        body = FunctionGraph(self.body.inputs, outputs)
        return Scan(body, self.n_seqs, self.state_taps, len(stacked), self.n_nonseqs, self.scan_name,
                    self.truncate_gradient, self.reverse, names, last_only)

    def reading_only(self, seq_positions, nonseq_positions, body):
        """This loop with the rewritten ``body`` (same placeholders) and only the sequences and
        non-sequences at those positions: the others are what ``body`` no longer reads."""
        seqs, taps, nonseqs = self.inner_inputs()
        inputs = ([seqs[i] for i in seq_positions] + [v for state in taps for v in state]
                  + [nonseqs[i] for i in nonseq_positions])
        return Scan(FunctionGraph(inputs, body.outputs), len(seq_positions), self.state_taps, self.n_stacked,
                    len(nonseq_positions), self.scan_name, self.truncate_gradient, self.reverse,
                    self.output_names, self.last_only)

    def in_float64(self):
        from graphnet.graph.gradcheck import float64_function_graph
        widened = copy.copy(self)
        widened.body, widened._reference, widened._inner_shapes = float64_function_graph(self.body), None, {}
        return widened

    def grad(self, inputs, outputs, output_grads):
        if any(self.last_only):
            raise GradientError(f"internal: scan {self.scan_name!r} keeps only the last values of a state, "
                                "which the compiler chooses after differentiation")
        from graphnet.ops.scan.grad import scan_grad
        return scan_grad(self, inputs, outputs, output_grads)


def _matching_float(outer, inner):
    """``outer`` cast to ``inner``'s float dtype when both are floats of another precision: the
    float64 copy of a graph that ``check_grad`` makes widens the body, not every outer constant."""
    if inner is not None and outer.dtype != inner.dtype and outer.dtype.kind == "f" and inner.dtype.kind == "f":
        from graphnet.ops.elementwise import cast
        return cast(outer, inner.dtype)
    return outer


def _check_inner(op, outer_type, expected, inner, what):
    if inner.dtype != expected.dtype or inner.ndim != expected.ndim:
        raise DTypeError(f"internal: scan {op.scan_name!r} {what} {inner.describe()} is {inner.type}, "
                         f"the outer value gives {expected}")


def step_count(op, value):
    """The number of steps ``value`` (n_steps at run time) asks for; a negative count is the user's error."""
    if value is None:
        raise GraphnetError(f"internal: scan {op.scan_name!r} needs the value of n_steps")
    n = int(np.asarray(value))
    if n < 0:
        raise ShapeError(f"scan {op.scan_name!r}: n_steps is {n}, it must not be negative (scan built at "
                         f"{op.built_at})")
    return n


def check_lengths(op, seq_shapes, init_shapes, n):
    """A sequence shorter than ``n`` steps or an initial buffer shorter than its lag is the user's error."""
    for i, shape in enumerate(seq_shapes):
        if shape[0] < n:
            inner = op.body.inputs[i]
            raise ShapeError(f"scan {op.scan_name!r}: sequence {i} ({inner.name}) has {shape[0]} steps, "
                             f"n_steps is {n} (scan built at {op.built_at})")
    for j, (shape, lag) in enumerate(zip(init_shapes, op.lags)):
        if shape[0] < lag:
            raise ShapeError(f"scan {op.scan_name!r}: {op.output_names[j]}: the initial state holds {shape[0]} "
                             f"values, its taps read {lag} (scan built at {op.built_at})")


def body_output_shapes(op, seq_shapes, init_shapes, nonseq_shapes):
    """The body's output shapes for these outer input shapes (its nodes' shape rules, in order)."""
    inner_seqs, inner_taps, inner_nonseqs = op.inner_inputs()
    shapes = {}
    for var, shape in zip(inner_seqs, seq_shapes):
        shapes[var] = tuple(shape[1:])
    for taps, shape in zip(inner_taps, init_shapes):
        for var in taps:
            shapes[var] = tuple(shape[1:])
    for var, shape in zip(inner_nonseqs, nonseq_shapes):
        shapes[var] = tuple(shape)
    for var in op.body.variables():
        if var not in shapes:
            shapes[var] = np.shape(var.data) if hasattr(var, "data") else tuple(var.shape)
    # Values known without running a step (constants and small arithmetic on them, such as
    # a nested loop's bounds) are followed; others get zero stand-ins: a body whose shapes
    # depend on step values is checked step by step by run_loop.
    known = {v: v.data for v in op.body.variables() if hasattr(v, "data")}
    for node in op.body.nodes():
        args = [shapes[v] for v in node.inputs]
        if node.op.infer_shape_needs_values:
            stand_ins = [known[v] if v in known else np.zeros(shapes[v], v.dtype) for v in node.inputs]
            out = node.op.infer_shape(node, args, values=stand_ins)
        else:
            out = node.op.infer_shape(node, args)
        for var, shape in zip(node.outputs, out):
            shapes[var] = tuple(int(d) for d in shape)
        if all(v in known for v in node.inputs) and all(np.prod(shapes[v]) <= 16 for v in node.outputs):
            with np.errstate(all="ignore"):
                known.update(zip(node.outputs, node.op.perform([known[v] for v in node.inputs])))
    return [shapes[v] for v in op.body.outputs]


def run_loop(op, inputs, run_body):
    """The loop of ``op`` on the arrays ``inputs``; ``run_body(feeds) -> outputs`` runs the body once.

    States live in one preallocated buffer each (what the op outputs);
    stacked outputs are written into one array, allocated at the shapes of
    the first step. Returns the op's outputs.
    """
    n = step_count(op, inputs[0])
    seqs, inits, nonseqs = op.split([np.asarray(a) for a in inputs[1:]])
    check_lengths(op, [s.shape for s in seqs], [b.shape for b in inits], n)
    inner_seqs, inner_taps, inner_nonseqs = op.inner_inputs()
    buffers = state_buffers(op, inits, n)
    slots = [len(b) for b in buffers]
    stacked = [None] * op.n_stacked
    if n == 0:
        shapes = body_output_shapes(op, [s.shape for s in seqs], [b.shape for b in inits],
                                    [v.shape for v in nonseqs])
        stacked = [np.empty((0,) + shape, out.dtype) for shape, out in
                   zip(shapes[op.n_states:], op.body.outputs[op.n_states:])]
    feeds = dict(zip(inner_nonseqs, nonseqs))
    for i in range(n):
        t = n - 1 - i if op.reverse else i
        for var, seq in zip(inner_seqs, seqs):
            feeds[var] = seq[t]
        for taps, buffer, lag, tap_values, size in zip(inner_taps, buffers, op.lags, op.state_taps, slots):
            for var, tap in zip(taps, tap_values):
                feeds[var] = buffer[(lag + i + tap) % size]
        results = run_body(feeds)
        for j, (buffer, lag, size) in enumerate(zip(buffers, op.lags, slots)):
            value = np.asarray(results[j])
            if value.shape != buffer.shape[1:]:
                raise ShapeError(f"scan {op.scan_name!r}: {op.output_names[j]} has shape {value.shape} at step "
                                 f"{t}, its initial state has shape {buffer.shape[1:]}: a state must keep its "
                                 f"shape from step to step (scan built at {op.built_at})")
            buffer[(lag + i) % size] = value
        for k in range(op.n_stacked):
            value = np.asarray(results[op.n_states + k])
            if stacked[k] is None:
                stacked[k] = np.empty((n,) + value.shape, dtype=op.body.outputs[op.n_states + k].dtype)
                first = value.shape
            elif value.shape != stacked[k].shape[1:]:
                first = stacked[k].shape[1:]
                raise ShapeError(f"scan {op.scan_name!r}: {op.output_names[op.n_states + k]} has shape "
                                 f"{value.shape} at step {t}, {first} at the first step: an output must keep "
                                 f"its shape from step to step (scan built at {op.built_at})")
            stacked[k][t] = value
    return loop_outputs(op, buffers, stacked, n)


def state_buffers(op, inits, n):
    """One buffer per state, its first ``L`` slots holding the initial values: all ``L + n``
    values, or a window of ``L + 1`` slots (the values its taps read) for a ``last_only`` state."""
    buffers = []
    for init, lag, out, last in zip(inits, op.lags, op.body.outputs, op.last_only):
        buffer = np.empty((lag + 1 if last else lag + n,) + init.shape[1:], dtype=out.dtype)
        buffer[:lag] = init[:lag]
        buffers.append(buffer)
    return buffers


def loop_outputs(op, buffers, stacked, n):
    """The op's outputs after ``n`` steps: each state's buffer (its last ``L`` values, oldest
    first, for a ``last_only`` window: virtual slots n .. n + L - 1), then the stacks."""
    buffers = list(buffers)
    for j, lag in enumerate(op.lags):
        if op.last_only[j]:
            size = len(buffers[j])
            buffers[j] = buffers[j][[(n + m) % size for m in range(lag)]]
    return buffers + list(stacked)
