"""A compiled CPU program: kernel plan -> steps with generated Numba code -> runs.

Building turns each fusion group into a step (loading its kernel module from
the on-disk cache, compiling only what is new). Running checks the fed shapes
against every node's shape rule and the labels against their class counts
*before* any kernel runs, so a bad call fails without touching state; then it
runs the steps on preallocated buffers (one memory plan per input-shape
signature) and hands back outputs and update values.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np
from numba.core.errors import NumbaError

from graphnet.compiler.runtime import cache
from graphnet.compiler.render import cpu as cpu_codegen
from graphnet.compiler.runtime.reference import check_finite, infer_output_shapes, node_error
from graphnet.compiler.schedule.memory import in_place_updates, plan_buffers
from graphnet.compiler.schedule.fuse import plan_fusion
from graphnet.compiler.runtime.steps import BlasStep, FusedStep, HostStep, Kernel, RowwiseStep, non_finite
from graphnet.errors import CompileError, GraphnetError, NumericsError
from graphnet.graph.ir import Constant, SharedVariable
from graphnet.ops.reduce import SizeOf
from graphnet.ops.nn import LogSoftmax, Softmax, SoftmaxCrossEntropy, SoftmaxCrossEntropyGrad, check_labels

DEBUG = int(os.environ.get("GRAPHNET_DEBUG", "0"))
#: values with at most this many elements are tracked while inferring shapes
SMALL_VALUE = 16
#: shape signatures kept per program (each holds its buffers)
MAX_FRAMES = 64


def describe_nodes(nodes):
    """``op -> name, built at file:line`` for each node: where a kernel's work came from."""
    return "; ".join(f"{n.op} -> {n.outputs[0].describe()}, built at {n.source}" for n in nodes)


def rowwise_template(node):
    """The row-wise kernel template for ``node``, or None when it has none."""
    op = node.op
    if isinstance(op, (Softmax, LogSoftmax)):
        if node.inputs[0].ndim == 2 and op.axis == 1:
            return "log_softmax" if isinstance(op, LogSoftmax) else "softmax"
        return None
    if isinstance(op, SoftmaxCrossEntropy):
        return "softmax_cross_entropy"
    if isinstance(op, SoftmaxCrossEntropyGrad):
        return "softmax_cross_entropy_grad"
    return None


def shape_arithmetic(fgraph):
    """Nodes whose values depend only on run-time shapes: element counts and
    scalar arithmetic on them (``mean``'s divisor, batch norm's ``n / (n - 1)``).

    They are evaluated once per input-shape signature instead of on every call.
    """
    static = set()
    nodes = []
    for node in fgraph.nodes():
        if isinstance(node.op, SizeOf) or (
                node.outputs[0].ndim == 0 and any(v in static for v in node.inputs)
                and all(v in static or isinstance(v, Constant) for v in node.inputs)
                and not getattr(node.op, "uses_element_index", False)):
            nodes.append(node)
            static.update(node.outputs)
    return nodes


class CpuProgram:
    backend = "cpu"
    #: outputs returned by run() are the caller's own arrays (no copy needed)
    owns_outputs = True

    def __init__(self, fgraph, fuse=True, check_numerics=False, name="function"):
        self.fgraph = fgraph
        self.check_numerics = check_numerics
        self.name = name
        self.shape_nodes = shape_arithmetic(fgraph)
        self.plan = plan_fusion(fgraph, fuse=fuse, precomputed=set(self.shape_nodes))
        self.refusals = self.plan.refusals
        roots = set(fgraph.roots)
        used_outside = self._used_outside_group(roots)
        self.steps = [self._compile_step(i, group, used_outside) for i, group in enumerate(self.plan.groups)]
        self.kernels = [s.kernel for s in self.steps]
        # check_numerics may stop a call after an update kernel ran: updates then
        # go to fresh buffers, so the failed call leaves every parameter as it was.
        self.in_place = {} if check_numerics else in_place_updates(self.steps, fgraph.updates, fgraph.outputs)
        self._frames = {}
        self.simplified_roots = []   # (root as written, the input the passes reduced it to)
        self._value_dependent = any(getattr(n.op, "infer_shape_needs_values", False) for n in fgraph.nodes())
        inputs = fgraph.variables()
        # Writable copies: a read-only array is another type to Numba, and another compile.
        self._constants = {v: np.array(v.data) for v in inputs if isinstance(v, Constant)}
        self._shared = [v for v in inputs if isinstance(v, SharedVariable)]
        self._signature_inputs = [v for v in inputs if not isinstance(v, Constant)]
        # Outputs a kernel writes get a fresh array on every call, handed to the
        # caller as is: no copy out of a pooled buffer.
        written = {v for step in self.steps if step.kind in ("fused", "rowwise", "blas") for v in step.writes}
        self._fresh_outputs = [v for v in dict.fromkeys(fgraph.outputs) if v in written and v not in self.in_place]
        self._label_inputs = [(n.inputs[-1], n) for n in fgraph.nodes()
                              if isinstance(n.op, (SoftmaxCrossEntropy, SoftmaxCrossEntropyGrad))
                              and n.inputs[-1].owner is None]

    # ---------------------------------------------------------------- building
    def _used_outside_group(self, roots):
        group_of = {n: g for g in self.plan.groups for n in g.nodes}
        used = set(roots)
        for g in self.plan.groups:
            for n in g.nodes:
                for v in n.inputs:
                    if v.owner is not None and v.owner in group_of and group_of[v.owner] is not g:
                        used.add(v)
        return used

    def _compile_step(self, index, group, used_outside):
        """``_make_step``, with a failure of the code generator named by its nodes and their lines."""
        try:
            return self._make_step(index, group, used_outside)
        except GraphnetError:
            raise
        except Exception as exc:  # noqa: BLE001 - a codegen bug must name the nodes it met
            raise CompileError(f"code generation failed for kernel {index} ({describe_nodes(group.nodes)}): "
                               f"{type(exc).__name__}: {exc}") from exc

    def _make_step(self, index, group, used_outside):
        node = group.nodes[0]
        label = ", ".join(n.op.name for n in group.nodes)
        if group.kind == "fused" and group.domain == ():
            kernel = Kernel(f"k{index}_scalar", list(group.nodes), [], [], kind="host",
                            source=f"# NumPy reference of {label} (0-d values: not worth a compiled kernel)")
            step = HostStep(group.nodes, kernel)
            kernel.inputs, kernel.outputs = list(step.reads), list(step.writes)
            return step
        if group.kind == "fused":
            source = cpu_codegen.FusedKernelSource(group, used_outside, check_numerics=self.check_numerics)
            module = self._load(source.body)
            name = f"k{index}_fused"
            kernel = Kernel(name, list(group.nodes), [v for v, _ in source.inputs],
                            list(source.written), source=self._annotate(source.body, group),
                            compiled=module.kernel_serial, compiled_parallel=module.kernel_parallel)
            return FusedStep(group, source, module, kernel)
        template = rowwise_template(node) if group.kind == "rowwise" else None
        if template is not None:
            body = cpu_codegen.ROWWISE_BODIES[template]
            module = self._load(body)
            kernel = Kernel(f"k{index}_{template}", [node], list(node.inputs), list(node.outputs),
                            source=self._annotate(body, group), compiled=module.kernel_serial,
                            compiled_parallel=module.kernel_parallel, kind="rowwise")
            return RowwiseStep(node, module, kernel, template)
        if group.kind == "blas":
            kernel = Kernel(f"k{index}_gemm", [node], list(node.inputs), list(node.outputs), is_blas=True,
                            kind="blas", source=f"np.dot({node.inputs[0].describe()}, {node.inputs[1].describe()}, out=buffer)")
            return BlasStep(node, kernel)
        kind = "view" if group.kind == "view" else "host"
        kernel = Kernel(f"k{index}_{node.op.name}", [node], list(node.inputs), list(node.outputs), kind=kind,
                        source=f"# NumPy reference of {label}")
        return HostStep([node], kernel, kind)

    def _load(self, body):
        return cache.load_module(cpu_codegen.module_source(body), name_hint="k")

    @staticmethod
    def _annotate(body, group):
        header = [f"# {n.op} -> {n.outputs[0].describe()}  ({n.source})" for n in group.nodes]
        return "\n".join(header) + "\n" + body

    # ----------------------------------------------------------------- running
    def _frame(self, env):
        """Shapes and buffers for this signature of input shapes (made once).

        Where an output shape depends on input values (a slice with symbolic
        bounds), the small input values belong to the signature too.
        """
        inputs = self._signature_inputs
        signature = tuple(env[v].shape for v in inputs)
        if self._value_dependent:
            signature += tuple(env[v].tobytes() for v in inputs if env[v].size <= SMALL_VALUE)
        frame = self._frames.get(signature)
        if frame is None:
            if len(self._frames) >= MAX_FRAMES:
                self._frames.pop(next(iter(self._frames)))
            shapes = self._infer_shapes(env)
            buffers = plan_buffers(self.steps, shapes, self.fgraph.roots, self.in_place)
            self._estimate_traffic(shapes)
            frame = self._frames[signature] = (shapes, buffers, self._shape_values(shapes))
        return frame

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
        values = {v: a for v, a in env.items() if np.size(a) <= SMALL_VALUE} if self._value_dependent else None
        for node in self.fgraph.nodes():
            try:
                if getattr(node.op, "infer_shape_needs_values", False):
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
        if isinstance(node.op, SizeOf):
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

    def _estimate_traffic(self, shapes):
        for step in self.steps:
            size = lambda v: int(np.prod(shapes[v], dtype=np.int64)) * v.dtype.itemsize  # noqa: E731
            step.kernel.bytes_read = sum(size(v) for v in step.reads)
            step.kernel.bytes_written = sum(size(v) for v in step.writes)

    @staticmethod
    def _check_numerics(step, env):
        """Raise NumericsError naming the first node of ``step`` whose output holds NaN or Inf."""
        if isinstance(step, FusedStep):
            found = step.first_non_finite(env)
            if found:
                node, var, what = found
                raise NumericsError(f"check_numerics: {what} in the output of {node.op} ({var.describe()}), "
                                    f"built at {node.source}")
            return
        for var in step.writes:
            check_finite(var.owner, var, np.asarray(env[var]))

    def run(self, feeds):
        env = dict(feeds)
        env.update(self._constants)
        for var in self._shared:
            env[var] = var.get_value(copy=False)
        shapes, buffers, shape_values = self._frame(env)
        env.update(shape_values)
        for labels, node in self._label_inputs:
            check_labels(env[labels], shapes[node.inputs[-2]][1],
                         f"input {labels.describe()} of cross_entropy ({node.source})")
        buffers = dict(buffers)
        for var in self._fresh_outputs:
            buffers[var] = np.empty(shapes[var], var.dtype)
        for expr, shared in self.in_place.items():
            buffers[expr] = shared.get_value(copy=False)   # the graph need not read it
        timing = DEBUG >= 2
        for step in self.steps:
            start = time.perf_counter() if timing else 0.0
            try:
                step.run(env, buffers, shapes)
            except GraphnetError:
                raise
            except NumbaError as exc:  # compiled lazily, on the first call: still a compile error
                raise CompileError(f"Numba could not compile kernel {step.kernel.name} "
                                   f"({describe_nodes(step.nodes)}): {exc}") from exc
            except Exception as exc:  # noqa: BLE001 - re-raised with the node's provenance
                node_error(step.nodes[-1], exc)
            if timing:
                print(f"[graphnet] {step.kernel.name:28s} {1e6 * (time.perf_counter() - start):9.1f} us "
                      f"({', '.join(step.kernel.ops)})", file=sys.stderr)
            if self.check_numerics:
                self._check_numerics(step, env)
        if self.check_numerics:
            for before, after in self.simplified_roots:
                what = non_finite(env[after])
                if what:
                    raise NumericsError(f"check_numerics: {what} in the output of {before.owner.op} "
                                        f"({before.describe()}), built at {before.owner.source} "
                                        f"(simplified to the value of {after.describe()})")
        outputs, handed = [], set()
        for var in self.fgraph.outputs:
            fresh = var in self._fresh_outputs and id(var) not in handed
            outputs.append(env[var] if fresh else np.array(env[var], copy=True))
            handed.add(id(var))
        # Pooled buffers are reused next call: an update that was not written in
        # place is handed over as a copy the shared variable can own.
        updates = [env[expr] if expr in self.in_place else np.array(env[expr], copy=True)
                   for _, expr in self.fgraph.updates]
        return outputs, updates
