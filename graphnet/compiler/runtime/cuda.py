"""The CUDA backend: the CPU compiler's optimized, fused plan, run as numba.cuda kernels.

``gn.function(..., backend="cuda")`` runs the same passes and lowers the same
kernel plan (:func:`graphnet.compiler.schedule.plan.plan_kernels`) as the CPU
backend, GEMM epilogues and transpose flags included; only the code generator
(:mod:`graphnet.compiler.render.cuda`) and the steps (:mod:`.cuda_steps`,
registered in ``CUDA_LOWERINGS``) differ.

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

from graphnet.compiler.pipeline import compile_graph
from graphnet.compiler.render import cuda as kernels
from graphnet.compiler.runtime import cache
from graphnet.compiler.runtime.cuda_memory import DEVICE_VALUES
from graphnet.compiler.runtime.cuda_steps import CUDA_LOWERINGS, DeviceRuntime
from graphnet.compiler.runtime.program import DEBUG, CompiledProgram
from graphnet.compiler.runtime.provenance import check_finite, node_error
from graphnet.compiler.schedule.memory import plan_buffers
from graphnet.errors import GraphnetError
from graphnet.graph.ir import Constant, Placeholder, SharedVariable



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
    """The CUDA backend: the CPU compiler's passes and kernel plan, lowered to numba.cuda kernels."""
    target = require_cuda()
    return compile_graph(fgraph, options, lambda graph, plan: CudaProgram(
        graph, plan, target, check_numerics=options.get("check_numerics", False),
        name=options.get("name", "function")))


@dataclass
class _Frame:
    """Everything made once per signature of input shapes."""
    shapes: dict
    buffers: dict
    shape_values: dict    # host values of the shape arithmetic
    shape_arrays: dict    # the same, on the device
    feed_arrays: dict     # device arrays the feeds are copied into


# ------------------------------------------------------------------- program
class CudaProgram(CompiledProgram):
    backend = "cuda"

    def __init__(self, fgraph, plan, target, check_numerics=False, name="function", tuning=None):
        self.target = target
        tuning = tuning or (kernels.SIMULATOR_TUNING if target.simulator else kernels.GPU_TUNING)
        self.runtime = DeviceRuntime(target.cuda, tuning, target.simulator, target.cupy)
        super().__init__(fgraph, plan, CUDA_LOWERINGS, check_numerics=check_numerics, name=name)
        self._placeholders = [v for v in fgraph.variables() if isinstance(v, Placeholder)]
        self._constants = None

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
                for function, types in step.signatures()]

    @property
    def transfers(self):
        """Bus traffic so far: uploads, downloads and their bytes."""
        return dict(self.runtime.transfers)

    def load(self, body, header=""):
        return cache.load_module(kernels.module_source(body, self.runtime.tuning, header), name_hint="cuda")

    # ----------------------------------------------------------------- running
    def make_frame(self, shapes, shape_values):
        rt = self.runtime
        buffers = plan_buffers(self.steps, shapes, self.fgraph.roots, self.in_place, empty=rt.empty)
        return _Frame(shapes, buffers, shape_values, {v: rt.upload(value) for v, value in shape_values.items()},
                      {p: rt.empty(shapes[p], p.dtype) for p in self._placeholders})

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
        frame = self.frame(host)
        shapes = frame.shapes
        host.update(frame.shape_values)
        self.check_fed_values(host, shapes)
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
        if step.needs_buffers:   # computed on the device (views and host steps were checked as they ran)
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
