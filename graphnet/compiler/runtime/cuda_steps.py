"""The steps a compiled CUDA program runs, and the device runtime they share.

Every value lives on the device as a flat (1-D, C order) array; its shape is
known from shape inference (``shapes``), so reshapes cost nothing and a kernel
indexes ``R x C`` domains by arithmetic. Steps mirror the CPU's
(:mod:`graphnet.compiler.runtime.steps`) and keep its interface (``reads``,
``writes``, ``kind``, ``elementwise_writes``, ``pattern_of``), so the CPU's
memory planning decides in-place updates for both:

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

from graphnet.compiler.runtime.reference import node_error
from graphnet.compiler.runtime.steps import Kernel, Step, rows_cols
from graphnet.ops.nn import check_labels

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


def domain_variable(group):
    """The variable whose run-time shape is a fused group's domain."""
    return group.reductions[0].inputs[0] if group.reductions else group.nodes[0].outputs[0]


# ---------------------------------------------------------------------- steps
class FusedKernelStep(Step):
    kind = "fused"

    def __init__(self, group, source, module, kernel):
        super().__init__(group.nodes, source.reads, source.written, kernel)
        self.source, self.function = source, module.kernel
        self.domain_var = domain_variable(group)

    @property
    def elementwise_writes(self):
        return self.source.outputs

    def pattern_of(self, var):
        return next((view for v, view in self.source.inputs if v is var), None)

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


class GemmStep(Step):
    """``dot`` (with its elementwise consumer group fused, if any) on the device."""

    kind = "gemm"

    def __init__(self, dot, a_src, b_src, source, module, kernel, cublas=False, epilogue_module=None):
        reads = [a_src, b_src] + [v for v, _ in source.inputs if v not in (a_src, b_src)]
        nodes = [dot] + (list(source.epilogue.group.nodes) if source.epilogue else [])
        writes = list(source.written)
        if cublas and source.product not in writes:
            writes.append(source.product)   # where cuBLAS puts the product before the epilogue
        super().__init__(nodes, reads, writes, kernel)
        self.dot, self.a_src, self.b_src, self.source = dot, a_src, b_src, source
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
        for var in self.writes:
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


class RowwiseStep(Step):
    kind = "rowwise"

    def __init__(self, node, template, module, kernel, labels_checked):
        super().__init__([node], list(node.inputs), list(node.outputs), kernel)
        self.node, self.template, self.function = node, template, module.kernel
        self.labels_checked = labels_checked
        # Computed labels are range-checked only here: the call can still fail at this step.
        self.may_fail = template.startswith("softmax_cross_entropy") and not labels_checked

    def signatures(self):
        return [(self.function.py_func, int_types(2) + [array_type(v) for v in self.node.inputs] +
                 [array_type(self.node.outputs[0])])]

    def run(self, env, buffers, shapes, rt):
        logits = self.node.inputs[1] if self.template == "softmax_cross_entropy_grad" else self.node.inputs[0]
        rows, cols = shapes[logits]
        if self.template.startswith("softmax_cross_entropy") and not self.labels_checked:
            labels = self.node.inputs[-1]
            check_labels(rt.host_value(env, labels, shapes), cols, f"cross_entropy ({self.node.source})")
        out = buffers[self.node.outputs[0]]
        env[self.node.outputs[0]] = out
        launch = rt.row_launch(rows) if cols else None
        if launch is not None:
            self.function[launch](rows, cols, *[env[v] for v in self.node.inputs], out)


class TransposeStep(Step):
    kind = "transpose"

    def __init__(self, node, module, kernel):
        super().__init__([node], [node.inputs[0]], [node.outputs[0]], kernel)
        self.node, self.function = node, module.kernel

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


class ViewStep(Step):
    """A reshape: the same flat device array under another shape."""

    kind = "view"

    def __init__(self, node, kernel):
        super().__init__([node], [node.inputs[0]], [node.outputs[0]], kernel)
        self.node = node

    def run(self, env, buffers, shapes, rt):
        env[self.node.outputs[0]] = env[self.node.inputs[0]]


class HostStep(Step):
    """Nodes without a device kernel, run by their ops' NumPy ``perform``.

    Inputs not already known on the host are copied back, outputs copied up:
    each such step is a round trip over the bus (``fn.kernels`` marks it).
    """

    kind = "host"

    def __init__(self, nodes, kernel):
        produced = {v for n in nodes for v in n.outputs}
        reads = []
        for n in nodes:
            reads += [v for v in n.inputs if v not in produced and v not in reads]
        super().__init__(list(nodes), reads, [v for n in nodes for v in n.outputs], kernel)
        self.may_fail = any(n.op.kind not in ("elementwise", "reduce", "view") for n in nodes)

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
