"""The steps a compiled CUDA program runs, and the device runtime they share.

Every value lives on the device as a flat (1-D, C order) array; its shape is
known from shape inference (``shapes``), so reshapes cost nothing and a kernel
indexes ``R x C`` domains by arithmetic. Steps mirror the CPU's
(:mod:`graphnet.compiler.runtime.steps`), one per kernel of the same plan,
registered in ``CUDA_LOWERINGS`` (and ``CUDA_VIEWS`` per view op):

- :class:`FusedKernelStep`: a generated fused kernel (map or reduction);
- :class:`GemmStep`: a matrix product, tiled in shared memory with its
  elementwise consumer fused as the epilogue, or cuBLAS (through CuPy) and then
  that epilogue as its own kernel, chosen per size on every call;
- :class:`RowwiseStep`: softmax, log-softmax, softmax cross-entropy (and grad);
- :class:`TransposeStep`: a transpose that must exist as an array;
- :class:`ViewStep`: reshapes, which only rename the device array;
- :class:`HostStep`: the fallback, an op's NumPy ``perform`` on host copies.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from graphnet.compiler.registry import Lowerings
from graphnet.compiler.render import cuda as kernels
from graphnet.compiler.runtime.program import annotate
from graphnet.compiler.runtime.provenance import node_error
from graphnet.compiler.runtime.steps import Kernel, Step, kernel_record, rows_cols
from graphnet.compiler.schedule.plan import GemmKernel, HostKernel, LoopKernel, RowwiseKernel, ViewKernel
from graphnet.ops.shape import ExpandDims, Reshape, ReshapeLike, Squeeze, Transpose

#: products with at least this many multiply-adds go to cuBLAS when CuPy is installed
CUBLAS_MIN_MACS = int(os.environ.get("GRAPHNET_CUBLAS_MIN_MACS", 1 << 18))
MAX_GRID = 65535


@dataclass(eq=False)
class CudaKernel(Kernel):
    """A CPU :class:`Kernel` record plus where it runs: ``device`` is "gpu" or
    "host" (a NumPy fallback, whose inputs and outputs cross the bus), and
    ``ran`` says what ran on the last call ("tiled" or "cublas" for a GEMM)."""

    device: str = "gpu"
    ran: str = ""


def size_of(shape):
    return int(np.prod(shape, dtype=np.int64))


class DeviceRuntime:
    """The numba.cuda module, the block shapes, bus traffic counts, and the
    values known on the host during a call (feeds, constants, shared values)."""

    def __init__(self, cuda, tuning, simulator, cupy=None):
        self.cuda, self.tuning, self.simulator, self.cupy = cuda, tuning, simulator, cupy
        self.transfers = {"uploads": 0, "bytes_uploaded": 0, "downloads": 0, "bytes_downloaded": 0}
        self.host_values = {}

    # ---- memory and the bus
    def empty(self, shape, dtype):
        return self.cuda.device_array(max(1, size_of(shape)), np.dtype(dtype))

    def upload(self, value, into=None):
        flat = np.ascontiguousarray(value).reshape(-1)
        if flat.size == 0:
            flat = np.zeros(1, flat.dtype)
        self.transfers["uploads"] += 1
        self.transfers["bytes_uploaded"] += flat.nbytes
        if into is not None and into.size == flat.size and into.dtype == flat.dtype:
            into.copy_to_device(flat)
            return into
        return self.cuda.to_device(flat)

    def download(self, array, shape, dtype):
        host = np.empty(shape, dtype)   # owns its memory, so a shared variable can keep it
        if host.size:
            array.copy_to_host(host.reshape(-1))
            self.transfers["downloads"] += 1
            self.transfers["bytes_downloaded"] += host.nbytes
        return host

    def host_value(self, env, var, shapes):
        """``var``'s value on the host: known already, or copied back (and remembered)."""
        if var not in self.host_values:
            self.host_values[var] = self.download(env[var], shapes[var], var.dtype)
        return self.host_values[var]

    # ---- launch shapes: (blocks, threads) or None when there is nothing to do
    def map_launch(self, n):
        if n == 0:
            return None
        threads = self.tuning.map_threads
        return min(-(-n // threads), self.tuning.max_blocks), threads

    def row_launch(self, rows):
        return None if rows == 0 else (min(rows, self.tuning.max_row_blocks), self.tuning.row_threads)

    def launch(self, template, rows, cols):
        t = self.tuning
        if template == "map":
            return self.map_launch(rows * cols)
        if template == "row":
            return self.row_launch(rows)
        if template == "col":
            return None if cols == 0 else (min(-(-cols // t.col_width), t.max_row_blocks), (t.col_width, t.col_lanes))
        return 1, t.all_threads

    def gemm_launch(self, m, n):
        tile = self.tuning.gemm_tile
        blocks = (min(-(-n // tile), MAX_GRID), min(-(-m // tile), MAX_GRID))
        return blocks, (self.tuning.gemm_threads, self.tuning.gemm_threads)


def array_type(var):
    """The numba type of ``var``'s flat device array."""
    from numba import types
    from numba.np.numpy_support import from_dtype
    return types.Array(from_dtype(var.dtype), 1, "C")


def int_types(n):
    from numba import types
    return [types.int64] * n


# ---------------------------------------------------------------------- steps
class CudaStep(Step):
    """A CPU :class:`Step` whose ``run`` also takes the device runtime."""

    def run(self, env, buffers, shapes, rt):
        raise NotImplementedError

    def signatures(self):
        """(Python function, numba argument types) of each device kernel this step launches."""
        return []


class FusedKernelStep(CudaStep):
    kind = "fused"

    def __init__(self, planned, source, module, kernel):
        super().__init__(planned, kernel)
        self.source, self.function = source, module.kernel
        self.domain_var = planned.domain_var

    def signatures(self):
        return [(self.function.py_func, int_types(2) + [array_type(v) for v, _ in self.source.inputs] +
                 [array_type(v) for v in self.source.written])]

    def run(self, env, buffers, shapes, rt):
        rows, cols = rows_cols(shapes[self.domain_var])
        args = [env[var] for var, _ in self.source.inputs]
        for var in self.source.written:
            env[var] = buffers[var]
            args.append(buffers[var])
        launch = rt.launch(self.source.template, rows, cols)
        if launch is not None:
            self.function[launch](rows, cols, *args)


class GemmStep(CudaStep):
    """``dot`` (with the plan's epilogue, if any) on the device: tiled, or cuBLAS then the epilogue."""

    kind = "gemm"

    def __init__(self, planned, source, module, kernel, cublas=False, epilogue_module=None):
        super().__init__(planned, kernel)
        self.dot, self.a_src, self.b_src, self.source = planned.dot, planned.a, planned.b, source
        self.cublas = cublas
        self.function = module.kernel
        self.epilogue_function = epilogue_module.kernel if epilogue_module else None

    def signatures(self):
        source = self.source
        found = [(self.function.py_func, int_types(3) + [array_type(self.a_src), array_type(self.b_src)] +
                  [array_type(v) for v, _ in source.inputs] + [array_type(v) for v in source.written])]
        if self.epilogue_function is not None:
            found.append((self.epilogue_function.py_func, int_types(2) +
                          [array_type(v) for v, _ in source.epilogue.inputs] +
                          [array_type(v) for v in source.epilogue.written]))
        return found

    def run(self, env, buffers, shapes, rt):
        shape_a, shape_b = shapes[self.dot.inputs[0]], shapes[self.dot.inputs[1]]
        m = shape_a[0] if len(shape_a) == 2 else 1
        n = shape_b[1] if len(shape_b) == 2 else 1
        k = shape_a[-1]
        a, b = env[self.a_src], env[self.b_src]
        outputs = []
        for var in list(self.writes) + list(self.scratch):
            env[var] = buffers[var]
            if var in self.source.written:
                outputs.append(buffers[var])
        if m * n == 0:
            return
        if self.cublas and m * n * k >= CUBLAS_MIN_MACS:
            self._run_cublas(rt, env, buffers, a, b, m, n, k)
            self.kernel.ran = "cublas"
            return
        inputs = [env[var] for var, _ in self.source.inputs]
        self.function[rt.gemm_launch(m, n)](m, n, k, a, b, *inputs, *outputs)
        self.kernel.ran = "tiled"

    def _run_cublas(self, rt, env, buffers, a, b, m, n, k):
        cp, source = rt.cupy, self.source
        left = cp.asarray(a).reshape(k, m).T if source.trans_a else cp.asarray(a).reshape(m, k)
        right = cp.asarray(b).reshape(n, k).T if source.trans_b else cp.asarray(b).reshape(k, n)
        product = buffers[source.product]
        cp.matmul(left, right, out=cp.asarray(product).reshape(m, n))
        if source.epilogue is None:
            return
        epilogue = source.epilogue
        args = [product if var is source.product else env[var] for var, _ in epilogue.inputs]
        args += [buffers[var] for var in epilogue.written]
        self.epilogue_function[rt.map_launch(m * n)](m, n, *args)


class RowwiseStep(CudaStep):
    kind = "rowwise"

    def __init__(self, planned, module, kernel):
        super().__init__(planned, kernel)
        self.node, self.function = planned.node, module.kernel
        #: a joined kernel (the loss and its gradient) writes the outputs of all its nodes
        self.results = [v for n in planned.nodes for v in n.outputs]

    def signatures(self):
        return [(self.function.py_func, int_types(2) + [array_type(v) for v in self.planned.arguments])]

    def run(self, env, buffers, shapes, rt):
        rows, cols = shapes[self.planned.rows_var]
        if self.may_fail:   # values the graph computed (fed ones were checked up front)
            for node in self.nodes:
                node.op.check_values(node, {i: rt.host_value(env, node.inputs[i], shapes)
                                            for i in node.op.checked_inputs}, [shapes[v] for v in node.inputs])
        for var in self.results:
            env[var] = buffers[var]
        launch = rt.row_launch(rows) if cols else None
        if launch is not None:
            self.function[launch](rows, cols, *[env[v] for v in self.planned.arguments])


class TransposeStep(CudaStep):
    """A transpose that must exist as an array (one a GEMM reads is a transpose flag instead)."""

    kind = "transpose"

    def __init__(self, planned, module, kernel):
        super().__init__(planned, kernel)
        self.node, self.function = planned.node, module.kernel
        self.is_view = False   # a new array, not the input's storage

    def signatures(self):
        return [(self.function.py_func, int_types(2) + [array_type(self.node.inputs[0]),
                                                        array_type(self.node.outputs[0])])]

    def run(self, env, buffers, shapes, rt):
        rows, cols = shapes[self.node.inputs[0]]
        out = buffers[self.node.outputs[0]]
        env[self.node.outputs[0]] = out
        launch = rt.map_launch(rows * cols)
        if launch is not None:
            self.function[launch](rows, cols, env[self.node.inputs[0]], out)


class ViewStep(CudaStep):
    """A reshape: the same flat device array under another shape."""

    kind = "view"
    needs_buffers = False

    def __init__(self, planned, kernel):
        super().__init__(planned, kernel)
        self.node = planned.node

    def run(self, env, buffers, shapes, rt):
        env[self.node.outputs[0]] = env[self.node.inputs[0]]


class HostStep(CudaStep):
    """Nodes without a device kernel, run by their ops' NumPy ``perform``.

    Inputs not already known on the host are copied back, outputs copied up:
    each such step is a round trip over the bus (``fn.kernels`` marks it).
    """

    kind = "host"
    needs_buffers = False   # the uploads are new device arrays

    def __init__(self, planned, kernel):
        super().__init__(planned, kernel)
        self.is_view = False

    def run(self, env, buffers, shapes, rt):
        for node in self.nodes:
            args = [rt.host_value(env, v, shapes) for v in node.inputs]
            try:
                results = node.op.perform(args)
            except Exception as exc:  # noqa: BLE001 - re-raised with the node's provenance
                node_error(node, exc)
            for var, value in zip(node.outputs, results):
                value = np.asarray(value, dtype=var.dtype)
                rt.host_values[var] = value
                env[var] = rt.upload(value)


# ------------------------------------------------------------------- lowering
CUDA_LOWERINGS = Lowerings("cuda kernel lowering")
#: how a view op runs on the device (by op class): a rename, or a transpose kernel
CUDA_VIEWS = Lowerings("cuda view lowering")


def _kernel(planned, name, **fields):
    return kernel_record(planned, name, record=CudaKernel, **fields)


@CUDA_LOWERINGS.register(LoopKernel)
def lower_loop(planned, program, index):
    source = kernels.CudaFusedKernelSource(planned, program.runtime.tuning)
    module = program.load(source.body)
    suffix = "" if source.template == "map" else f"_reduce_{source.template}"
    kernel = _kernel(planned, f"k{index}_fused{suffix}", source=annotate(source.body, planned.nodes),
                     compiled=module.kernel)
    return FusedKernelStep(planned, source, module, kernel)


@CUDA_LOWERINGS.register(GemmKernel)
def lower_gemm(planned, program, index):
    if not planned.blas_ready:
        return lower_host(planned, program, index)
    tuning = program.runtime.tuning
    epilogue = kernels.CudaFusedKernelSource(planned.epilogue, tuning) if planned.epilogue else None
    source = kernels.GemmKernelSource(planned.dot, planned.trans_a, planned.trans_b, tuning, epilogue,
                                      planned.write_product)
    header = "".join(f"# {n.op} -> {n.outputs[0].describe()}  ({n.source})\n" for n in planned.nodes)
    module = program.load(source.body)
    cublas = program.target.cupy is not None
    epilogue_module = program.load(epilogue.body) if cublas and epilogue is not None else None
    name = f"k{index}_gemm" + ("_epilogue" if epilogue else "")
    kernel = _kernel(planned, name, is_blas=True, kind="gemm", source=header + source.body, compiled=module.kernel)
    return GemmStep(planned, source, module, kernel, cublas=cublas, epilogue_module=epilogue_module)


def _template_step(planned, program, name, kind, body, make_step):
    """A step running one fixed kernel text (a row template, the transpose)."""
    module = program.load(body)
    kernel = _kernel(planned, name, kind=kind, source=annotate(body, planned.nodes), compiled=module.kernel)
    return make_step(planned, module, kernel)


@CUDA_LOWERINGS.register(RowwiseKernel)
def lower_rowwise(planned, program, index):
    template = kernels.ROWWISE_TEMPLATES[planned.template_key]
    return _template_step(planned, program, f"k{index}_{template.name}", "rowwise", template.body, RowwiseStep)


@CUDA_LOWERINGS.register(ViewKernel)
def lower_view(planned, program, index):
    lowering = CUDA_VIEWS.find(type(planned.node.op))
    return (lowering or lower_host)(planned, program, index)


@CUDA_VIEWS.register(Reshape, ReshapeLike, ExpandDims, Squeeze)
def lower_rename(planned, program, index):
    node = planned.node
    kernel = _kernel(planned, f"k{index}_{node.op.name}", kind="view",
                     source=f"# {node.op}: the same device array under a new shape")
    return ViewStep(planned, kernel)


@CUDA_VIEWS.register(Transpose)
def lower_transpose(planned, program, index):
    perm = planned.node.op.perm
    if perm == tuple(range(len(perm))):
        return lower_rename(planned, program, index)
    if perm != (1, 0):
        return lower_host(planned, program, index)
    return _template_step(planned, program, f"k{index}_transpose", "transpose", kernels.TRANSPOSE_BODY,
                          TransposeStep)


@CUDA_LOWERINGS.register(HostKernel)
def lower_host(planned, program, index):
    label = ", ".join(planned.ops)
    kernel = _kernel(planned, f"k{index}_{planned.nodes[0].op.name}", kind="host", device="host",
                     source=f"# NumPy reference of {label} on the host (no CUDA kernel for it): "
                            "its inputs are copied back and its outputs up")
    return HostStep(planned, kernel)
