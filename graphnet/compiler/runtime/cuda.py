"""The CUDA backend: the CPU compiler's optimized, fused plan, run as numba.cuda kernels.

``gn.function(..., backend="cuda")`` runs the same passes
(:func:`graphnet.compiler.pipeline.optimize`) and the same fusion plan
(:func:`graphnet.compiler.schedule.fuse.plan_fusion`) as the CPU backend; only the
code generator (:mod:`.cuda_kernels`) and the steps (:mod:`.cuda_steps`) differ.
One addition to the plan: a matrix product absorbs the elementwise kernel that
reads it (bias, activation) as its GEMM epilogue, rule 3 of the design, and a
transpose that only matrix products read is read in place by them.

Data stays on the device. Feeds are copied up and fetched outputs copied back;
shared variables keep a device copy between calls (:class:`DeviceValues`,
keyed by the variable's ``version``), so a training loop moves only its
mini-batches, its fetches, and the new values of what it updates: after each
call those are copied back too, so ``get_value()`` is always current (the cost:
one device-to-host copy of each updated variable per call).

Needs NVIDIA's ``numba-cuda`` package (``pip install graphnet[cuda]``) and a GPU,
or ``NUMBA_ENABLE_CUDASIM=1`` set before ``numba.cuda`` is first imported, which
runs the kernels in NVIDIA's simulator on the CPU (slowly: for tests).
"""
from __future__ import annotations

import os
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass

import numpy as np

from graphnet.compiler.runtime import cache
from graphnet.compiler.render import cuda as kernels
from graphnet.compiler.runtime.reference import check_finite, node_error
from graphnet.compiler.runtime.cuda_memory import DEVICE_VALUES
from graphnet.compiler.schedule.memory import in_place_updates, plan_buffers
from graphnet.compiler.schedule.fuse import input_pattern, plan_fusion
from graphnet.compiler.pipeline import optimize
from graphnet.compiler.runtime.cpu import MAX_FRAMES, SMALL_VALUE, CpuProgram, rowwise_template, shape_arithmetic
from graphnet.errors import GraphnetError
from graphnet.graph.ir import Constant, Placeholder, SharedVariable
from graphnet.ops.linalg import Dot
from graphnet.ops.nn import SoftmaxCrossEntropy, SoftmaxCrossEntropyGrad, check_labels
from graphnet.ops.shape import ExpandDims, Reshape, ReshapeLike, Squeeze, Transpose

DEBUG = int(os.environ.get("GRAPHNET_DEBUG", "0"))
RESHAPES = (Reshape, ReshapeLike, ExpandDims, Squeeze)


# --------------------------------------------------------------- availability
@dataclass
class CudaTarget:
    cuda: object          # the numba.cuda module (real or simulator)
    simulator: bool
    cupy: object = None   # CuPy, for cuBLAS, when installed and on a real GPU

    @property
    def description(self):
        if self.simulator:
            return "the numba-cuda simulator (NUMBA_ENABLE_CUDASIM=1, on the CPU)"
        device = self.cuda.get_current_device()
        name = device.name.decode() if isinstance(device.name, bytes) else device.name
        return f"{name} (compute capability {'.'.join(map(str, device.compute_capability))})"


def require_cuda():
    """The CUDA target, or a GraphnetError that says what is missing and what to do."""
    try:
        import numba_cuda  # noqa: F401  (NVIDIA's package; numba's own numba.cuda is deprecated)
    except ImportError:
        raise GraphnetError(
            "backend='cuda' needs NVIDIA's numba-cuda package, which is not installed: "
            "pip install 'graphnet[cuda]' (or pip install numba-cuda); backend='cpu' needs nothing more") from None
    try:
        from numba import cuda
    except Exception as exc:  # noqa: BLE001 - a broken install must still read clearly
        raise GraphnetError(f"backend='cuda': numba.cuda failed to import ({type(exc).__name__}: {exc})") from exc
    simulator = cuda.to_device.__module__.startswith("numba.cuda.simulator")
    if simulator:
        lock_simulator_shared_arrays()
        return CudaTarget(cuda, True)
    if not cuda.is_available():
        reason = cuda.cuda_error() if hasattr(cuda, "cuda_error") else None
        late = (" (NUMBA_ENABLE_CUDASIM=1 is set, but numba.cuda had been imported before it was)"
                if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" else "")
        raise GraphnetError(
            "backend='cuda': no usable NVIDIA GPU" + (f" ({str(reason).strip()})" if reason else "") + late +
            "; use backend='cpu', or set NUMBA_ENABLE_CUDASIM=1 before numba.cuda is first imported to run "
            "the kernels in NVIDIA's CUDA simulator on the CPU (slow: meant for tests on tiny shapes)")
    return CudaTarget(cuda, False, _cupy())


def lock_simulator_shared_arrays():
    """Work around a race in numba-cuda's simulator (seen in 0.30.4).

    ``FakeCUDAShared.array`` looks a block's shared array up by the calling
    line and creates it when missing, without a lock: two threads of a block
    can each create one, and a reduction through "shared" memory then silently
    loses values (once in a few thousand launches here). This is the same
    lookup, under a lock. Only the simulator is touched, once.
    """
    from numba.cuda.simulator import kernelapi
    shared = kernelapi.FakeCUDAShared
    if getattr(shared, "graphnet_locked", False):
        return
    unlocked, lock = shared.array, threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:
            return unlocked(self, shape, dtype, alignment)   # dynamic shared memory: one buffer, no lookup
        if isinstance(dtype, kernelapi.types.Type):
            dtype = kernelapi.numpy_support.as_dtype(dtype)
        caller = tuple(traceback.extract_stack(sys._getframe(1), limit=1)[0])[0:2]
        with lock:
            found = self._allocations.get(caller)
            if found is None:
                found = self._allocations[caller] = np.empty(shape, dtype)
        return found

    shared.array, shared.graphnet_locked = array, True


def _cupy():
    try:
        import cupy
        cupy.cuda.runtime.getDeviceCount()
        return cupy
    except Exception:  # noqa: BLE001 - CuPy is optional: without it every product runs tiled
        return None


def build(fgraph, options):
    """Optimize ``fgraph`` with the CPU compiler's passes and compile it into a CudaProgram."""
    target = require_cuda()
    optimized = optimize(fgraph, options.get("disable_passes", ()))
    return CudaProgram(optimized, target, fuse=options.get("fuse", True),
                       check_numerics=options.get("check_numerics", False), name=options.get("name", "function"))


@dataclass
class _Frame:
    """Everything made once per signature of input shapes."""
    shapes: dict
    buffers: dict
    shape_values: dict    # host values of the shape arithmetic
    shape_arrays: dict    # the same, on the device
    feed_arrays: dict     # device arrays the feeds are copied into


# ------------------------------------------------------------------- program
class CudaProgram:
    backend = "cuda"

    #: outputs are fresh host arrays: Function need not copy them again
    owns_outputs = True

    # Shape inference, shape arithmetic and traffic estimates are the CPU program's, unchanged.
    _infer_shapes = CpuProgram._infer_shapes
    _known_values = CpuProgram._known_values
    _follow_small_values = CpuProgram._follow_small_values
    _shape_values = CpuProgram._shape_values
    _estimate_traffic = CpuProgram._estimate_traffic
    _annotate = staticmethod(CpuProgram._annotate)

    def __init__(self, fgraph, target, fuse=True, check_numerics=False, name="function", tuning=None):
        from graphnet.compiler.runtime import cuda_steps
        self.fgraph, self.target, self.name = fgraph, target, name
        self.check_numerics = check_numerics
        self.fuse = fuse
        tuning = tuning or (kernels.SIMULATOR_TUNING if target.simulator else kernels.GPU_TUNING)
        self.runtime = cuda_steps.DeviceRuntime(target.cuda, tuning, target.simulator, target.cupy)
        self.shape_nodes = shape_arithmetic(fgraph)
        self.plan = plan_fusion(fgraph, fuse=fuse, precomputed=set(self.shape_nodes))
        self.refusals = list(self.plan.refusals)
        self._label_inputs = [(n.inputs[-1], n) for n in fgraph.nodes()
                              if isinstance(n.op, (SoftmaxCrossEntropy, SoftmaxCrossEntropyGrad))
                              and n.inputs[-1].owner is None]
        self.steps = _StepBuilder(self, cuda_steps).build()
        self.kernels = [s.kernel for s in self.steps]
        # check_numerics may refuse a call after a step: then nothing may have been updated in place.
        self.in_place = {} if check_numerics else in_place_updates(self.steps, fgraph.updates, fgraph.outputs)
        self._value_dependent = any(getattr(n.op, "infer_shape_needs_values", False) for n in fgraph.nodes())
        self._signature_inputs = [v for v in fgraph.variables() if not isinstance(v, Constant)]
        self._placeholders = [v for v in fgraph.variables() if isinstance(v, Placeholder)]
        self._constants = None
        self._frames = {}

    @property
    def device(self):
        """What runs the kernels, in words."""
        return self.target.description

    def kernel_signatures(self):
        """(kernel name, Python function, numba argument types) of every device kernel.

        What a check needs to compile each kernel ahead of time
        (``numba.cuda.compile_ptx``), without a GPU and without running it.
        """
        return [(step.kernel.name, function, types) for step in self.steps
                for function, types in getattr(step, "signatures", lambda: [])()]

    @property
    def transfers(self):
        """Bus traffic so far: uploads, downloads and their bytes."""
        return dict(self.runtime.transfers)

    def load(self, body, header=""):
        return cache.load_module(kernels.module_source(body, self.runtime.tuning, header), name_hint="cuda")

    # ----------------------------------------------------------------- running
    def _frame(self, host):
        inputs = self._signature_inputs
        signature = tuple(np.shape(host[v]) for v in inputs)
        if self._value_dependent:   # small values decide some shapes (as on the CPU)
            signature += tuple(np.asarray(host[v]).tobytes() for v in inputs if np.size(host[v]) <= SMALL_VALUE)
        frame = self._frames.get(signature)
        if frame is None:
            if len(self._frames) >= MAX_FRAMES:
                self._frames.pop(next(iter(self._frames)))
            rt = self.runtime
            shapes = self._infer_shapes(host)
            values = self._shape_values(shapes)
            buffers = plan_buffers(self.steps, shapes, self.fgraph.roots, self.in_place, empty=rt.empty)
            self._estimate_traffic(shapes)
            frame = self._frames[signature] = _Frame(
                shapes, buffers, values, {v: rt.upload(value) for v, value in values.items()},
                {p: rt.empty(shapes[p], p.dtype) for p in self._placeholders})
        return frame

    def _device_inputs(self, feeds, frame):
        rt, env = self.runtime, {}
        if self._constants is None:
            self._constants = {v: rt.upload(v.data) for v in self.fgraph.variables() if isinstance(v, Constant)}
        env.update(self._constants)
        env.update(frame.shape_arrays)
        for p in self._placeholders:
            env[p] = rt.upload(feeds[p], into=frame.feed_arrays[p])
        for var in self.fgraph.variables():
            if isinstance(var, SharedVariable):
                env[var] = DEVICE_VALUES.array(var, rt)
        return env

    def run(self, feeds):
        rt = self.runtime
        if self.target.simulator:
            # The RNG's uint64 arithmetic wraps around on purpose; run as Python
            # by the simulator, NumPy warns about it on every draw.
            warnings.filterwarnings("ignore", message="overflow encountered", category=RuntimeWarning,
                                    module="_graphnet_cuda_")
        host = dict(feeds)
        for var in self.fgraph.variables():
            if isinstance(var, Constant):
                host[var] = var.data
            elif isinstance(var, SharedVariable):
                host[var] = var.get_value(copy=False)
        frame = self._frame(host)
        shapes = frame.shapes
        host.update(frame.shape_values)
        for labels, node in self._label_inputs:
            check_labels(host[labels], shapes[node.inputs[-2]][1], f"cross_entropy ({node.source})")
        rt.host_values = host
        env = self._device_inputs(feeds, frame)
        buffers = dict(frame.buffers)
        for expr, shared in self.in_place.items():
            buffers[expr] = DEVICE_VALUES.array(shared, rt)   # the graph need not read it
        try:
            self._run_steps(env, buffers, shapes)
            outputs = [np.array(host[v], copy=True) if v in host else rt.download(env[v], shapes[v], v.dtype)
                       for v in self.fgraph.outputs]
            updates = self._updates(env, shapes)
        except BaseException:
            # An update written in place may have half happened: the host value is the truth.
            for shared in self.in_place.values():
                DEVICE_VALUES.forget(shared)
            raise
        finally:
            rt.host_values = {}
        return outputs, updates

    def _run_steps(self, env, buffers, shapes):
        rt, timing = self.runtime, DEBUG >= 2
        for step in self.steps:
            start = time.perf_counter() if timing else 0.0
            try:
                step.run(env, buffers, shapes, rt)
            except GraphnetError:
                raise
            except Exception as exc:  # noqa: BLE001 - re-raised with the node's provenance
                node_error(step.nodes[-1], exc)
            if timing:
                self.target.cuda.synchronize()
                print(f"[graphnet cuda] {step.kernel.name:28s} {1e6 * (time.perf_counter() - start):9.1f} us "
                      f"({', '.join(step.kernel.ops)})", file=sys.stderr)
            if self.check_numerics:
                self._check_numerics(step, env, shapes)

    def _check_numerics(self, step, env, shapes):
        """Raise NumericsError naming the first node of ``step`` whose values hold NaN or Inf.

        A kernel keeps most values in registers, so its nodes are evaluated again
        on the host (their NumPy reference, on copies of the same inputs) to find
        the first bad one; then what the kernel wrote is checked too.
        """
        rt, values = self.runtime, {}
        if step.kind not in ("host", "view"):
            for node in step.nodes:
                args = [values[v] if v in values else rt.host_value(env, v, shapes) for v in node.inputs]
                with np.errstate(all="ignore"):
                    results = node.op.perform(args)
                for var, value in zip(node.outputs, results):
                    values[var] = np.asarray(value, dtype=var.dtype)
                    check_finite(node, var, values[var])
        for var in step.writes:
            check_finite(var.owner, var, rt.download(env[var], shapes[var], var.dtype))

    def _updates(self, env, shapes):
        """Host copies of the new values; device copies recorded as current for the next call.

        An update not written in place sits in a pooled buffer that the next
        call reuses, so it is first copied into an array the variable owns
        (its previous array, which nothing reads any more, when it has one).
        """
        rt, values, pending = self.runtime, [], []
        for shared, expr in self.fgraph.updates:
            array = env[expr]
            value = rt.download(array, shapes[expr], expr.dtype)
            if expr not in self.in_place:
                owned = DEVICE_VALUES.spare(shared, array.size, array.dtype)
                if owned is None:
                    owned = rt.empty(shapes[expr], expr.dtype)
                owned.copy_to_device(array)
                array = owned
            values.append(value)
            pending.append((shared, value, array))
        for shared, value, array in pending:
            DEVICE_VALUES.commit(shared, value, array)
        return values


# ------------------------------------------------------------ building steps
class _StepBuilder:
    """The fusion plan's groups -> CUDA steps, GEMM epilogues and in-place transposes found."""

    def __init__(self, program, cuda_steps):
        self.program, self.cs = program, cuda_steps
        self.groups = program.plan.groups
        self.roots = set(program.fgraph.roots)
        group_index = {n: i for i, g in enumerate(self.groups) for n in g.nodes}
        self.readers = {}   # variable -> indices of the groups that read it
        for i, g in enumerate(self.groups):
            for n in g.nodes:
                for v in n.inputs:
                    if group_index.get(v.owner) != i:
                        self.readers.setdefault(v, set()).add(i)
        self.used_outside = set(self.roots) | {v for v, users in self.readers.items() if v.owner is not None and users}
        self.transposed = self._transposes_read_in_place()
        self.epilogues = self._gemm_epilogues()

    # ---- decisions
    def gemm_ready(self, group):
        """A matrix product the GEMM kernel runs: float operands of the product's dtype."""
        if group.kind != "blas" or not isinstance(group.nodes[0].op, Dot):
            return False
        node = group.nodes[0]
        return node.outputs[0].dtype.kind == "f" and all(v.dtype == node.outputs[0].dtype for v in node.inputs)

    def _transposes_read_in_place(self):
        """{transpose output: its input} for 2-D transposes read only by GEMMs."""
        found = {}
        for group in self.groups:
            node = group.nodes[0]
            if group.kind != "view" or not isinstance(node.op, Transpose) or node.op.perm != (1, 0):
                continue
            out = node.outputs[0]
            users = self.readers.get(out, set())
            if out not in self.roots and users and all(self.gemm_ready(self.groups[i]) for i in users):
                found[out] = node.inputs[0]
        return found

    def _gemm_epilogues(self):
        """{consumer group index: product group index} for products whose consumer is fused in."""
        found = {}
        if not self.program.fuse:
            return found   # fuse=False: one kernel per op, the unfused baseline
        for d, group in enumerate(self.groups):
            if not self.gemm_ready(group):
                continue
            product = group.nodes[0].outputs[0]
            if product.ndim != 2:
                continue
            for c in sorted(self.readers.get(product, ())):
                consumer = self.groups[c]
                if (consumer.kind == "fused" and not consumer.reductions and c not in found
                        and consumer.domain == product.shape and input_pattern(product.shape, consumer.domain) == "full"):
                    found[c] = d
                # Only the first reader may take it: the product must not be needed earlier.
                break
        return found

    # ---- steps
    def build(self):
        absorbed = set(self.epilogues.values())
        steps = []
        for i, group in enumerate(self.groups):
            if i in absorbed or (group.kind == "view" and group.nodes[0].outputs[0] in self.transposed):
                continue
            if i in self.epilogues:
                steps.append(self._gemm(len(steps), self.groups[self.epilogues[i]], group))
            else:
                steps.append(self._step(len(steps), group))
        # The product now feeds its consumer inside one kernel: no longer a refusal.
        fused_in = {(self.groups[d].nodes[0].outputs[0], n) for c, d in self.epilogues.items()
                    for n in self.groups[c].nodes}
        self.program.refusals = [r for r in self.program.refusals if (r[0], r[1]) not in fused_in]
        return steps

    def _kernel(self, name, nodes, inputs, outputs, **fields):
        return self.cs.CudaKernel(name, list(nodes), list(inputs), list(outputs), **fields)

    def _step(self, index, group):
        cs, program, node = self.cs, self.program, group.nodes[0]
        if group.kind == "fused":
            source = kernels.CudaFusedKernelSource(group, self.used_outside, program.runtime.tuning)
            module = program.load(source.body)
            suffix = "" if source.template == "map" else f"_reduce_{source.template}"
            kernel = self._kernel(f"k{index}_fused{suffix}", group.nodes, [v for v, _ in source.inputs],
                                  source.written, source=program._annotate(source.body, group), compiled=module.kernel)
            return cs.FusedKernelStep(group, source, module, kernel)
        if group.kind == "blas" and self.gemm_ready(group):
            return self._gemm(index, group, None)
        template = rowwise_template(node) if group.kind == "rowwise" else None
        if template is not None:
            body = kernels.ROWWISE_BODIES[template]
            module = program.load(body)
            kernel = self._kernel(f"k{index}_{template}", [node], node.inputs, node.outputs, kind="rowwise",
                                  source=program._annotate(body, group), compiled=module.kernel)
            labels_checked = template.startswith("softmax_cross_entropy") and node.inputs[-1].owner is None
            return cs.RowwiseStep(node, template, module, kernel, labels_checked)
        if group.kind == "view" and (isinstance(node.op, RESHAPES) or (
                isinstance(node.op, Transpose) and node.op.perm == tuple(range(len(node.op.perm))))):
            kernel = self._kernel(f"k{index}_{node.op.name}", [node], node.inputs, node.outputs, kind="view",
                                  source=f"# {node.op}: the same device array under a new shape")
            return cs.ViewStep(node, kernel)
        if group.kind == "view" and isinstance(node.op, Transpose) and node.op.perm == (1, 0):
            module = program.load(kernels.TRANSPOSE_BODY)
            kernel = self._kernel(f"k{index}_transpose", [node], node.inputs, node.outputs, kind="transpose",
                                  source=program._annotate(kernels.TRANSPOSE_BODY, group), compiled=module.kernel)
            return cs.TransposeStep(node, module, kernel)
        label = ", ".join(n.op.name for n in group.nodes)
        kernel = self._kernel(f"k{index}_{node.op.name}", group.nodes, [], [], kind="host", device="host",
                              source=f"# NumPy reference of {label} on the host (no CUDA kernel for it): "
                                     "its inputs are copied back and its outputs up")
        step = cs.HostStep(group.nodes, kernel)
        kernel.inputs, kernel.outputs = list(step.reads), list(step.writes)
        return step

    def _gemm(self, index, dot_group, consumer):
        program, dot = self.program, dot_group.nodes[0]
        a, b = dot.inputs
        a_src, b_src = self.transposed.get(a, a), self.transposed.get(b, b)
        product = dot.outputs[0]
        tuning = program.runtime.tuning
        epilogue = None
        if consumer is not None:
            epilogue = kernels.CudaFusedKernelSource(consumer, self.used_outside, tuning)
            others = self.readers.get(product, set()) - {self.groups.index(consumer)}
            write_product = product in self.roots or bool(others)
        else:
            write_product = True
        source = kernels.GemmKernelSource(dot, a_src is not a, b_src is not b, tuning, epilogue, write_product)
        nodes = [dot] + (list(consumer.nodes) if consumer else [])
        header = "".join(f"# {n.op} -> {n.outputs[0].describe()}  ({n.source})\n" for n in nodes)
        module = program.load(source.body)
        cublas = program.target.cupy is not None
        epilogue_module = program.load(epilogue.body) if cublas and epilogue is not None else None
        name = f"k{index}_gemm" + ("_epilogue" if consumer else "")
        inputs = [a_src, b_src] + [v for v, _ in source.inputs]
        kernel = self._kernel(name, nodes, inputs, source.written, is_blas=True, kind="gemm",
                              source=header + source.body, compiled=module.kernel)
        return self.cs.GemmStep(dot, a_src, b_src, source, module, kernel, cublas=cublas,
                                epilogue_module=epilogue_module)

