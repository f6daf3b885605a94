"""How the CUDA backend runs the convolution family (the kernels of ``render/cuda_conv.py``).

Registered in ``CUDA_LOWERINGS``. A convolution is one direct-convolution kernel (a gather
per output element); its epilogue, when the plan gave it one, runs right after as the
plan's per-image loop (the fused map kernel over (channels, pixels), launched once per image
on slices of the flat device arrays). A GPU would want im2col + cuBLAS or an implicit GEMM
for large convolutions: that is future work, named in docs/cuda.md.
"""
from __future__ import annotations

import numpy as np

from graphnet.compiler.render import cuda as kernels
from graphnet.compiler.render import cuda_conv as templates
from graphnet.compiler.render.conv import POOL_MODE_CODES
from graphnet.compiler.runtime.conv_steps import image_dims, planes
from graphnet.compiler.runtime.cuda_steps import (
    CUDA_LOWERINGS, CudaStep, FusedKernelStep, _kernel, array_type, int_types,
)
from graphnet.compiler.runtime.program import annotate
from graphnet.compiler.schedule.plan import ChannelReduceKernel, ConvKernel, ImageLoopKernel, PoolKernel
from graphnet.ops.conv import Conv2D, Conv2DGradInput
from graphnet.ops.pool import MaxPool2DGrad
from graphnet.ops.reduce import Moments


def conv_geometry(node, shapes):
    """The integer arguments every convolution kernel takes (``CONV_PARAMS``)."""
    op = node.op
    if isinstance(op, Conv2D):
        x, w = node.inputs
        out_hw = shapes[node.outputs[0]][2:]
    elif isinstance(op, Conv2DGradInput):
        w, g, x = node.inputs
        out_hw = shapes[g][2:]
    else:
        x, g, w = node.inputs
        out_hw = shapes[g][2:]
    n, c, h, width = shapes[x]
    o, _, kh, kw = shapes[w]
    (ph, pw), (sh, sw), (dh, dw) = op.pads_for(shapes[w]), op.subsample, op.filter_dilation
    return [n, c, h, width, o, kh, kw, out_hw[0], out_hw[1], ph, pw, sh, sw, dh, dw, int(op.filter_flip)]


class ImageLoopCudaStep(FusedKernelStep):
    """The fused map kernel over (channels, pixels), launched once per image on array slices."""

    def run(self, env, buffers, shapes, rt, given=None):
        given = given or {}
        images, rows, cols = image_dims(shapes[self.domain_var])
        for var in self.source.written:
            env[var] = buffers[var]
        launch = rt.launch("map", rows, cols)
        if launch is None:
            return
        size = rows * cols
        arrays = [(given.get(var, env[var]), view == "full2d") for var, view in self.source.inputs]
        arrays += [(buffers[var], True) for var in self.source.written]
        for n in range(images):
            self.function[launch](rows, cols, *[a[n * size:(n + 1) * size] if sliced else a for a, sliced in arrays])


class ConvCudaStep(CudaStep):
    """One convolution op as a direct-convolution kernel, then its epilogue per image."""

    kind = "conv"

    def __init__(self, planned, kernel, module, epilogue=None, statistics=None):
        super().__init__(planned, kernel)
        self.node, self.function, self.epilogue = planned.node, module.kernel, epilogue
        #: the per-channel reduction of the output, launched after the convolution
        self.statistics = statistics
        self._scratch = {}

    def signatures(self):
        node = self.node
        data = [node.inputs[0], node.inputs[1]]
        found = [(self.function.py_func, int_types(16) + [array_type(v) for v in data] +
                  [array_type(node.outputs[0])])]
        return (found + (self.epilogue.signatures() if self.epilogue is not None else []) +
                (self.statistics.signatures() if self.statistics is not None else []))

    def run(self, env, buffers, shapes, rt):
        node, product = self.node, self.planned.product
        if self.planned.write_product:
            out = buffers[product]
        else:   # the product only feeds the epilogue: a buffer of this step's own
            key = tuple(shapes[product])
            out = self._scratch.get(key)
            if out is None:
                out = self._scratch[key] = rt.empty(shapes[product], product.dtype)
        env[product] = out
        total = int(np.prod(shapes[product]))
        launch = rt.map_launch(total)
        if launch is not None:
            self.function[launch](*conv_geometry(node, shapes), env[node.inputs[0]], env[node.inputs[1]], out)
        if self.epilogue is not None:
            self.epilogue.run(env, buffers, shapes, rt, given={product: out})
        if self.statistics is not None:
            self.statistics.run(env, buffers, shapes, rt)


def _template_module(program, template):
    return program.load(template.body)


@CUDA_LOWERINGS.register(ImageLoopKernel)
def lower_image_loop(planned, program, index, name=None):
    source = kernels.CudaFusedKernelSource(planned, program.runtime.tuning)
    module = program.load(source.body)
    kernel = _kernel(planned, name or f"k{index}_fused_per_image", source=annotate(source.body, planned.nodes),
                     compiled=module.kernel)
    return ImageLoopCudaStep(planned, source, module, kernel)


@CUDA_LOWERINGS.register(ConvKernel)
def lower_conv(planned, program, index):
    op = planned.node.op
    template = {Conv2D: templates.CONV_FORWARD, Conv2DGradInput: templates.CONV_GRAD_INPUT}.get(
        type(op), templates.CONV_GRAD_FILTERS)
    epilogue = None
    if planned.epilogue is not None:
        epilogue = lower_image_loop(planned.epilogue, program, index, f"k{index}_conv_epilogue")
    statistics = None
    if planned.statistics is not None:
        reduction = ChannelReduceKernel([planned.statistics], [planned.product], list(planned.statistics.outputs))
        statistics = lower_channel_reduce(reduction, program, index)
    module = _template_module(program, template)
    text = template.body + ("\n# then, per image, the epilogue:\n" + epilogue.kernel.source if epilogue else "")
    text += "\n# then the per-channel statistics:\n" + statistics.kernel.source if statistics else ""
    suffix = "_epilogue" if epilogue else ("_statistics" if statistics else "")
    kernel = _kernel(planned, f"k{index}_{template.name}{suffix}", kind="conv",
                     source=annotate(text, [planned.node]), compiled=module.kernel)
    return ConvCudaStep(planned, kernel, module, epilogue, statistics)


class PoolCudaStep(CudaStep):
    kind = "pool"

    def __init__(self, planned, kernel, module):
        super().__init__(planned, kernel)
        self.node, self.function = planned.node, module.kernel

    def signatures(self):
        node = self.node
        ints = int_types(11 if isinstance(node.op, MaxPool2DGrad) else 12)
        return [(self.function.py_func, ints + [array_type(v) for v in node.inputs] + [array_type(node.outputs[0])])]

    def run(self, env, buffers, shapes, rt):
        node, op = self.node, self.node.op
        count, rows, cols = planes(shapes[node.inputs[0]])
        pooled = shapes[node.inputs[2]] if isinstance(op, MaxPool2DGrad) else shapes[node.outputs[0]]
        out = buffers[node.outputs[0]]
        env[node.outputs[0]] = out
        ints = [count, rows, cols, pooled[-2], pooled[-1], *op.ws, *op.stride, *op.pad]
        if not isinstance(op, MaxPool2DGrad):
            ints.append(POOL_MODE_CODES[op.mode])
        launch = rt.map_launch(int(np.prod(shapes[node.outputs[0]])))
        if launch is not None:
            self.function[launch](*ints, *[env[v] for v in node.inputs], out)


@CUDA_LOWERINGS.register(PoolKernel)
def lower_pool(planned, program, index):
    template = templates.MAX_POOL_GRAD if isinstance(planned.node.op, MaxPool2DGrad) else templates.POOL
    module = _template_module(program, template)
    kernel = _kernel(planned, f"k{index}_{template.name}", kind="pool", source=annotate(template.body, planned.nodes),
                     compiled=module.kernel)
    return PoolCudaStep(planned, kernel, module)


class ChannelReduceCudaStep(CudaStep):
    kind = "reduce"

    def __init__(self, planned, kernel, module):
        super().__init__(planned, kernel)
        self.node, self.function = planned.node, module.kernel

    def signatures(self):
        node = self.node
        return [(self.function.py_func, int_types(3) + [array_type(node.inputs[0])] +
                 [array_type(v) for v in node.outputs])]

    def run(self, env, buffers, shapes, rt):
        node = self.node
        images, channels, pixels = image_dims(shapes[node.inputs[0]])
        outs = [buffers[v] for v in node.outputs]
        for var, out in zip(node.outputs, outs):
            env[var] = out
        launch = rt.map_launch(channels)
        if launch is not None:
            self.function[launch](images, channels, pixels, env[node.inputs[0]], *outs)


@CUDA_LOWERINGS.register(ChannelReduceKernel)
def lower_channel_reduce(planned, program, index):
    template = templates.CHANNEL_MOMENTS if isinstance(planned.node.op, Moments) else templates.CHANNEL_SUM
    module = _template_module(program, template)
    kernel = _kernel(planned, f"k{index}_{template.name}", kind="reduce",
                     source=annotate(template.body, planned.nodes), compiled=module.kernel)
    return ChannelReduceCudaStep(planned, kernel, module)
