"""What every compiled program shares, whatever runs its kernels.

A program is built from a :class:`~graphnet.compiler.schedule.plan.KernelPlan`:
each planned kernel is *lowered* to a step by the backend's lowering table
(:class:`~graphnet.compiler.registry.Lowerings`). Running checks the fed shapes
against every node's shape rule and fed values against their ops' checks
(labels) *before* any kernel runs, so a bad call fails without touching state;
shapes, buffers and the shape arithmetic are made once per signature of input
shapes (a *frame*) and reused by every later call with those shapes.
"""
from __future__ import annotations

import os

import numpy as np

from graphnet.compiler.runtime.provenance import infer_output_shapes, node_error
from graphnet.errors import CompileError, GraphnetError
from graphnet.graph.ir import Constant

DEBUG = int(os.environ.get("GRAPHNET_DEBUG", "0"))
#: values with at most this many elements are tracked while inferring shapes
SMALL_VALUE = 16
#: shape signatures kept per program (each holds its buffers)
MAX_FRAMES = 64
#: value signatures remembered by a value-dependent program (each is a key to a frame)
MAX_VALUE_SIGNATURES = 1 << 14
#: small input values a frame remembers as having passed its value rules (``index_checks``)
PASSED_VALUES_KEPT = 1 << 14


def _value_key(value):
    """A small value's dtype, shape and bytes: equal keys, equal values."""
    value = np.asarray(value)
    return value.dtype.char, value.shape, value.tobytes()


def describe_nodes(nodes):
    """``op -> name, built at file:line`` for each node: where a kernel's work came from."""
    return "; ".join(f"{n.op} -> {n.outputs[0].describe()}, built at {n.source}" for n in nodes)


def annotate(body, nodes):
    """``body`` under one comment line per node it computes (the op, the variable, the user's line)."""
    header = [f"# {n.op} -> {n.outputs[0].describe()}  ({n.source})" for n in nodes]
    return "\n".join(header) + "\n" + body


def _remember(table, key, value, limit):
    """``table[key] = value``, forgetting the oldest entry past ``limit``; returns ``value``."""
    if len(table) >= limit:
        table.pop(next(iter(table)))
    table[key] = value
    return value


def values_deciding_shapes(fgraph):
    """The graph inputs whose values may decide a shape: those upstream of the inputs an op
    declares shape-deciding (``Op.shape_value_inputs``) where its static type leaves a length
    open. The walk stops at ops that read only shapes (``x.shape[0]``): a minibatch sliced
    ``X[i * 20:(i + 1) * 20]`` has 20 rows whatever ``i`` is, and ``arange(y.shape[0])`` is
    decided by shapes alone, so neither puts ``i`` in a frame's key."""
    stack = [n.inputs[i] for n in fgraph.nodes() if n.op.infer_shape_needs_values
             and any(None in out.shape for out in n.outputs) for i in n.op.shape_value_inputs(n)]
    found, seen = set(), set()
    while stack:
        var = stack.pop()
        if id(var) in seen:
            continue
        seen.add(id(var))
        if var.owner is None:
            found.add(var)
        elif not var.owner.op.reads_only_shapes:
            stack.extend(var.owner.inputs)
    return found


class CompiledProgram:
    """A plan lowered to steps, run per input-shape signature. Subclasses say how steps run."""

    backend = "?"
    #: outputs returned by run() are the caller's own arrays (no copy needed)
    owns_outputs = True

    def __init__(self, fgraph, plan, lowerings, check_numerics=False, name="function"):
        self.fgraph, self.plan, self.name = fgraph, plan, name
        self.check_numerics = check_numerics
        self.shape_nodes = plan.shape_nodes
        self.refusals = plan.refusals
        self.in_place = plan.in_place
        self.steps = [self._lower(lowerings, i, kernel) for i, kernel in enumerate(plan.kernels)]
        self.kernels = [s.kernel for s in self.steps]
        self.simplified_roots = []   # (root as written, the input the passes reduced it to)
        self._frames = {}             # input signature -> (frame, traffic)
        self._frames_by_shapes = {}   # every variable's shape -> the same (value-dependent graphs)
        self._shaped_variables = list(dict.fromkeys(v for n in fgraph.nodes() for v in n.outputs))
        self._shown_traffic = None
        #: every variable's shape at the last call (None before the first): what reports describe
        self.last_shapes = None
        # The loss and its gradient check the same labels against the same logits: once is enough.
        distinct = {}
        for node, var in plan.value_checks:
            checked = tuple(node.inputs[i] for i in node.op.checked_inputs)
            distinct.setdefault((checked, node.inputs[node.op.row_input]), (node, var))
        self.distinct_value_checks = list(distinct.values())
        self._signature_inputs = [v for v in fgraph.variables() if not isinstance(v, Constant)]
        # Of those, the ones whose small values may decide a shape (a fed minibatch index, not a
        # bias the step updates): only these values belong to the signature.
        deciding = values_deciding_shapes(fgraph) if plan.value_dependent else set()
        self._value_inputs = [v for v in self._signature_inputs if v in deciding]

    def _lower(self, lowerings, index, planned):
        """The backend's step for ``planned``, a code-generation failure named by its nodes and lines."""
        try:
            return lowerings[type(planned)](planned, self, index)
        except GraphnetError:
            raise
        except Exception as exc:  # noqa: BLE001 - a codegen bug must name the nodes it met
            raise CompileError(f"code generation failed for kernel {index} ({describe_nodes(planned.nodes)}): "
                               f"{type(exc).__name__}: {exc}") from exc

    # ----------------------------------------------------------------- frames
    def signature(self, host):
        """The key of ``host``'s frame: every input's shape, then the small values that may decide shapes."""
        signature = tuple([host[v].shape for v in self._signature_inputs])   # every value here is an array
        if self._value_inputs:
            signature += tuple(host[v].tobytes() if host[v].size <= SMALL_VALUE else None for v in self._value_inputs)
        return signature

    def frame(self, host, signature=None):
        """The frame for the shapes (and, where a shape depends on them, small values) in ``host``."""
        if signature is None:
            signature = self.signature(host)
        found = self._frames.get(signature)
        if found is None:
            shapes = self._infer_shapes(host)
            if self.plan.value_dependent:
                # Small values decide some shapes (a minibatch sliced by a fed index): many
                # value signatures share one set of shapes, and so one frame of buffers.
                key = tuple([shapes[v] for v in self._shaped_variables])
                found = self._frames_by_shapes.get(key)
                if found is None:
                    found = _remember(self._frames_by_shapes, key, self._new_frame(shapes), MAX_FRAMES)
                _remember(self._frames, signature, found, MAX_VALUE_SIGNATURES)
            else:
                found = _remember(self._frames, signature, self._new_frame(shapes), MAX_FRAMES)
        if found[1] is not self._shown_traffic:
            self.show(found)
        return found[0]

    def show(self, found):
        """Make ``fn.kernels`` and ``fn.report()`` describe the call of this (frame, traffic)."""
        frame, traffic = found
        for step, (read, written) in zip(self.steps, traffic):
            step.kernel.bytes_read, step.kernel.bytes_written = read, written
        self._shown_traffic = traffic
        self.last_shapes = frame.shapes

    def _new_frame(self, shapes):
        return self.make_frame(shapes, self._shape_values(shapes)), self._traffic(shapes)

    def make_frame(self, shapes, shape_values):
        raise NotImplementedError

    def index_checks(self, shapes):
        """``(inputs, check)`` for a frame at ``shapes``, or None: ``check(*values of inputs)``
        runs again, on a call's small input values, the shape rules of the ops that need values
        (a slice's bounds from a fed index, arange's, index arrays' range), raising as shape
        inference does, with the node's provenance, before any kernel. A frame serves every
        value of an input that decides no shape, so these rules must run on every call."""
        checking = [n for n in self.fgraph.nodes() if n.op.infer_shape_needs_values]
        if not checking:
            return None
        def small(v):
            return int(np.prod(shapes[v], dtype=np.int64)) <= SMALL_VALUE
        # The nodes computing the small values a checking node reads (a big value is never
        # computed here: its stand-in has the right shape), in graph order.
        wanted, stack = set(), [v for n in checking for v in n.inputs if small(v)]
        while stack:
            node = stack.pop().owner
            if node is not None and id(node) not in wanted:
                wanted.add(id(node))
                if not node.op.reads_only_shapes:
                    stack.extend(v for v in node.inputs if small(v))
        order = [n for n in self.fgraph.nodes() if id(n) in wanted or n.op.infer_shape_needs_values]
        inputs = list(dict.fromkeys(v for n in order for v in n.inputs if v.owner is None and not isinstance(v, Constant)
                                    and small(v)))
        known = {v: np.asarray(v.data) for n in order for v in n.inputs if isinstance(v, Constant)}
        stand_ins = {v: np.broadcast_to(np.zeros((), v.dtype), shapes[v]) for n in order for v in n.inputs}
        computes = {id(n): all(small(o) for o in n.outputs) for n in order}

        # The rules are a function of these small values alone (the frame fixes every shape), so
        # values that passed once pass again: a minibatch index cycles through a few hundred
        # values, and running the rules costs ~30 us a call (W6: 7% of a minibatch).
        passed = set()

        def check(*values):
            key = tuple(_value_key(value) for value in values)
            if key in passed:
                return
            have = dict(known)
            have.update(zip(inputs, values))
            for node in order:
                args = [have.get(v, stand_ins[v]) for v in node.inputs]
                try:
                    if node.op.infer_shape_needs_values:
                        infer_output_shapes(node, args)
                    if computes[id(node)] and (node.op.reads_only_shapes or all(v in have for v in node.inputs)):
                        with np.errstate(all="ignore"):
                            have.update(zip(node.outputs, node.op.perform(args)))
                except Exception as exc:  # noqa: BLE001 - re-raised with the node's provenance
                    node_error(node, exc)
            if len(passed) >= PASSED_VALUES_KEPT:
                passed.clear()
            passed.add(key)
        return inputs, check

    def check_fed_values(self, host, shapes):
        """Ops' checks of fed values (labels in range), before any kernel runs."""
        for node, _ in self.distinct_value_checks:
            checked = {i: host[node.inputs[i]] for i in node.op.checked_inputs if node.inputs[i] in host}
            node.op.check_values(node, checked, [shapes[v] for v in node.inputs])

    # -------------------------------------------------------- shape inference
    def _shape_values(self, shapes):
        """Values of the shape arithmetic (element counts and what is computed from them)."""
        values = {}
        for node in self.shape_nodes:
            args = [values.get(v, v.data if isinstance(v, Constant) else np.broadcast_to(np.zeros((), v.dtype), shapes[v]))
                    for v in node.inputs]
            for var, value in zip(node.outputs, node.op.perform(args)):
                values[var] = np.asarray(value, dtype=var.dtype)
        return values

    def _infer_shapes(self, env):
        shapes = {v: np.shape(value) for v, value in env.items()}
        # Small values (scalars, bounds) are followed through the graph only
        # when some op needs them to know its shape.
        values = {v: np.asarray(a) for v, a in env.items() if np.size(a) <= SMALL_VALUE} \
            if self.plan.value_dependent else None
        for node in self.fgraph.nodes():
            try:
                if node.op.infer_shape_needs_values:
                    out_shapes = infer_output_shapes(node, self._known_values(node, values, shapes))
                else:
                    out_shapes = node.op.infer_shape(node, [shapes[v] for v in node.inputs])
            except Exception as exc:  # noqa: BLE001 - re-raised with the node's provenance
                node_error(node, exc)
            for var, shape in zip(node.outputs, out_shapes):
                shapes[var] = tuple(int(d) for d in shape)
            if values is not None:
                self._follow_small_values(node, shapes, values)
        return shapes

    @staticmethod
    def _known_values(node, values, shapes):
        """Inputs for a value-dependent ``infer_shape``: small values, else zero-filled
        stand-ins of the right shape (the data being sliced; its own ``perform``
        checks every index again before reading)."""
        return [values[v] if v in values else np.broadcast_to(np.zeros((), v.dtype), shapes[v])
                for v in node.inputs]

    @staticmethod
    def _follow_small_values(node, shapes, values):
        """Compute ``node``'s value during shape inference when it is small and its inputs are known."""
        if any(int(np.prod(shapes[o], dtype=np.int64)) > SMALL_VALUE for o in node.outputs):
            return
        if node.op.reads_only_shapes:
            args = [np.broadcast_to(np.zeros((), v.dtype), shapes[v]) for v in node.inputs]
        elif all(v in values for v in node.inputs):
            args = [values[v] for v in node.inputs]
        else:
            return
        try:
            with np.errstate(all="ignore"):  # NaN here is the kernels' to report, not a warning
                results = node.op.perform(args)
        except GraphnetError:
            raise
        except Exception as exc:  # noqa: BLE001 - as the node would fail when run, with its provenance
            node_error(node, exc)
        for var, value in zip(node.outputs, results):
            values[var] = np.asarray(value, dtype=var.dtype)

    def _traffic(self, shapes):
        """(bytes read, bytes written) of each step at these shapes."""
        def size(v):
            return int(np.prod(shapes[v], dtype=np.int64)) * v.dtype.itemsize if v in shapes else 0
        return [(sum(size(v) for v in step.reads), sum(size(v) for v in step.writes)) for step in self.steps]
