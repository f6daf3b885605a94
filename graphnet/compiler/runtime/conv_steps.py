"""How the CPU backend runs the convolution family: convolutions, pooling, per-image loops.

Registered in ``CPU_LOWERINGS`` next to the other steps:

- :class:`ConvStep` (a plan's ``ConvKernel``): per image, im2col into a
  (K, L) scratch that stays in cache, one BLAS GEMM with the filters, then the
  epilogue kernel on the image's (channels, pixels) slice while it is still
  warm. The input gradient is the transposed GEMM followed by col2im; the
  filter gradient sums one GEMM per image. A 1x1 convolution at stride 1
  without padding reads the image itself as its columns.
- :class:`ImageLoopStep` (``ImageLoopKernel``): a fused loop run once per
  image over (channels, pixels), reading per-channel vectors as one value per row.
- :class:`PoolStep` and :class:`ChannelReduceStep`: the templates of
  :mod:`graphnet.compiler.render.conv`.

Why im2col + GEMM and no direct convolution on the CPU: docs/architecture.md
("Convolutions"); im2col took ~10% of the GEMMs' time on the W8b block.
"""
from __future__ import annotations

import numpy as np

from graphnet.compiler.render import conv as templates
from graphnet.compiler.runtime import threads
from graphnet.compiler.runtime.program import annotate
from graphnet.compiler.runtime.provenance import check_finite
from graphnet.compiler.runtime.steps import CPU_LOWERINGS, FusedStep, Step, call_kernel, fused_step, kernel_record
from graphnet.compiler.schedule.plan import ChannelReduceKernel, ConvKernel, ImageLoopKernel, PoolKernel
from graphnet.ops.conv import Conv2D, Conv2DGradFilters, Conv2DGradInput
from graphnet.ops.pool import MaxPool2DGrad
from graphnet.ops.reduce import Moments


def image_dims(shape):
    """(images, rows, cols) of a per-image loop over ``shape``: axis 0, axis 1, the rest collapsed."""
    cols = 1
    for d in shape[2:]:
        cols *= d
    return shape[0], shape[1], cols


def planes(shape):
    """(planes, rows, cols): every axis before the last two collapsed."""
    count = 1
    for d in shape[:-2]:
        count *= d
    return count, shape[-2], shape[-1]


def load_template(program, template):
    return program.load(template.body)


# ------------------------------------------------------------- per-image loops
class ImageLoopStep(FusedStep):
    """A fused loop run once per image: ``full2d`` arguments are the image's (rows, cols)
    slice, per-channel vectors one value per row."""

    def bind_images(self, frame, given=None, serial=False):
        """``(prepare(env) -> arrays, run(arrays, n))`` on ``frame``; ``given``: {variable: array
        used for every image} (a convolution's product held in a one-image scratch). ``serial``:
        the serial variant whatever the size (between two BLAS calls, a parallel loop's threads
        and BLAS's would wait on each other, DESIGN.md)."""
        given = given or {}
        images, rows, cols = image_dims(frame.shapes[self.domain_var])
        per_view = {"full2d": (images, rows, cols), "rows": (rows,), "one": (1,)}
        layout = [(var, per_view[view], view == "full2d") for var, view in self.source.inputs]
        layout += [(var, (images, rows, cols), True) for var in self.source.outputs]
        kernel, head = (self.serial, [rows, cols, 1]) if serial else self.variant(rows, cols)
        tail = [self.flags] if self.flags is not None else []

        def prepare(env):
            return [(given[var], False) if var in given else (env[var].reshape(shape), sliced)
                    for var, shape, sliced in layout]

        def run(arrays, n):
            call_kernel(kernel, *head, *[a[n] if sliced else a for a, sliced in arrays], *tail)
        return prepare, run, images

    def bind(self, frame):
        prepare, run, images = self.bind_images(frame)
        flags = self.flags

        def call(env):
            if flags is not None:
                flags[:] = 0
            arrays = prepare(env)
            for n in range(images):
                run(arrays, n)
        return call


@CPU_LOWERINGS.register(ImageLoopKernel)
def lower_image_loop(planned, program, index, name=None):
    return fused_step(planned, program, name or f"k{index}_fused_per_image", ImageLoopStep)


# ----------------------------------------------------------------- convolutions
class ConvGeometry:
    """The shape arithmetic of one convolution node for one frame."""

    def __init__(self, op, x_shape, w_shape, out_hw):
        self.n, self.c, self.h, self.w = x_shape
        self.o, _, self.kh, self.kw = w_shape
        self.ph, self.pw = op.pads_for(w_shape)
        self.sh, self.sw = op.subsample
        self.dh, self.dw = op.filter_dilation
        self.oh, self.ow = out_hw
        self.k = self.c * self.kh * self.kw
        self.l = self.oh * self.ow
        #: a 1x1 filter at stride 1 without padding: the image itself is its columns
        self.pointwise = (self.kh, self.kw, self.ph, self.pw, self.sh, self.sw) == (1, 1, 0, 0, 1, 1)

    @property
    def params(self):
        return (self.kh, self.kw, self.ph, self.pw, self.sh, self.sw, self.dh, self.dw, self.oh, self.ow)


class ConvStep(Step):
    """One convolution op, run image by image (see the module docstring)."""

    kind = "conv"

    def __init__(self, planned, kernel, module_im2col, module_col2im, epilogue=None, keep_product=False):
        super().__init__(planned, kernel)
        self.node, self.epilogue = planned.node, epilogue
        self.im2col, self.col2im = module_im2col.kernel_serial, module_col2im.kernel_serial
        #: check_numerics names the node from the whole product: keep it although nothing reads it
        self.keep_product = keep_product

    def bind(self, frame):
        node, shapes = self.node, frame.shapes
        op = node.op
        if isinstance(op, Conv2D):
            x_var, w_var = node.inputs
            geometry = ConvGeometry(op, shapes[x_var], shapes[w_var], shapes[node.outputs[0]][2:])
            per_image = self._forward(geometry)
        elif isinstance(op, Conv2DGradInput):
            w_var, g_var, x_var = node.inputs
            geometry = ConvGeometry(op, shapes[x_var], shapes[w_var], shapes[g_var][2:])
            per_image = self._grad_input(geometry)
        else:
            x_var, g_var, w_var = node.inputs
            geometry = ConvGeometry(op, shapes[x_var], shapes[w_var], shapes[g_var][2:])
            return self._grad_filters(geometry)
        return self._run_images(frame, geometry, per_image)

    def _run_images(self, frame, geometry, per_image):
        """The call of a convolution whose output (images, rows, L) takes the epilogue per image."""
        p, product = self.planned, self.planned.product
        out_shape = frame.shapes[product]
        _, rows, pixels = image_dims(out_shape)
        store = p.write_product or self.keep_product
        scratch = None if store else np.empty((rows, pixels), product.dtype)
        # the product's buffer: planned when written, fresh when an output, own when only checked
        out_fixed = frame.env.get(product) if p.write_product else np.empty(out_shape, product.dtype)
        epilogue = None
        if self.epilogue is not None:
            epilogue = self.epilogue.bind_images(frame, {product: scratch} if scratch is not None else None,
                                                 serial=True)
            self.kernel.ran_parallel = self.epilogue.kernel.ran_parallel
        flags = self.epilogue.flags if self.epilogue is not None else None

        def call(env):
            if store:
                out = out_fixed if out_fixed is not None else env[product]
                env[product] = out
                out = out.reshape(geometry.n, rows, pixels)
            prepare_args = per_image(env)
            if flags is not None:
                flags[:] = 0
            arrays = epilogue[0](env) if epilogue is not None else None
            for n in range(geometry.n):
                target = out[n] if store else scratch
                prepare_args(n, target)
                if epilogue is not None:
                    epilogue[1](arrays, n)
        return call

    def _forward(self, g):
        node, im2col = self.node, self.im2col
        x_var, w_var = node.inputs
        cols = None if g.pointwise else np.empty((g.k, g.l), node.outputs[0].dtype)
        params = g.params

        def per_call(env):
            x = env[x_var]
            filters = np.ascontiguousarray(node.op.oriented(env[w_var]).reshape(g.o, g.k))
            threads.blas_threads(g.o, g.l, g.k)

            def image(n, target):
                if cols is None:
                    np.dot(filters, x[n].reshape(g.c, g.l), out=target)
                else:
                    call_kernel(im2col, 1, x[n], cols, *params)
                    np.dot(filters, cols, out=target)
            return image
        return per_call

    def _grad_input(self, g):
        node, col2im = self.node, self.col2im
        w_var, g_var, _ = node.inputs
        dcols = None if g.pointwise else np.empty((g.k, g.l), node.outputs[0].dtype)
        params = g.params

        def per_call(env):
            grads = env[g_var].reshape(g.n, g.o, g.l)
            filters_t = np.ascontiguousarray(node.op.oriented(env[w_var]).reshape(g.o, g.k)).T
            threads.blas_threads(g.k, g.l, g.o)

            def image(n, target):
                if dcols is None:
                    np.dot(filters_t, grads[n], out=target)
                else:
                    np.dot(filters_t, grads[n], out=dcols)
                    call_kernel(col2im, 1, dcols, target.reshape(g.c, g.h, g.w), *params)
            return image
        return per_call

    def _grad_filters(self, g):
        node, im2col = self.node, self.im2col
        x_var, g_var, _ = node.inputs
        dtype = node.outputs[0].dtype
        cols = None if g.pointwise else np.empty((g.k, g.l), dtype)
        total, partial = np.empty((g.o, g.k), dtype), np.empty((g.o, g.k), dtype)
        params, out_var = g.params, node.outputs[0]

        def call(env):
            x, grads = env[x_var], env[g_var].reshape(g.n, g.o, g.l)
            threads.blas_threads(g.o, g.k, g.l)
            total[...] = 0
            for n in range(g.n):
                if cols is None:
                    np.dot(grads[n], x[n].reshape(g.c, g.l).T, out=partial)
                else:
                    call_kernel(im2col, 1, x[n], cols, *params)
                    np.dot(grads[n], cols.T, out=partial)
                np.add(total, partial, out=total)
            out = env.get(out_var)
            if out is None:
                out = env[out_var] = np.empty((g.o, g.c, g.kh, g.kw), dtype)
            out[...] = node.op.oriented(total.reshape(out.shape))
        return call

    def check_numerics(self, env):
        if self.planned.product in env:
            check_finite(self.node, self.planned.product, np.asarray(env[self.planned.product]))
        if self.epilogue is not None:
            self.epilogue.check_numerics(env)


@CPU_LOWERINGS.register(ConvKernel)
def lower_conv(planned, program, index):
    op = planned.node.op
    epilogue = None
    if planned.epilogue is not None:
        epilogue = lower_image_loop(planned.epilogue, program, index, f"k{index}_conv_epilogue")
    im2col, col2im = load_template(program, templates.IM2COL), load_template(program, templates.COL2IM)
    used, module = ((templates.COL2IM, col2im) if isinstance(op, Conv2DGradInput) else (templates.IM2COL, im2col))
    what = {Conv2D: "per image: im2col, then np.dot(filters (O, K), columns (K, L), out=the image's output)",
            Conv2DGradInput: "per image: np.dot(filters.T (K, O), grad (O, L), out=columns), then col2im",
            Conv2DGradFilters: "per image: im2col, then np.dot(grad (O, L), columns.T (L, K)), summed"}[type(op)]
    text = f"# {what}\n" + used.body
    if epilogue is not None:
        text += "\n# then the epilogue, on each image's output while it is in cache:\n" + epilogue.kernel.source
    kernel = kernel_record(planned, f"k{index}_conv" + ("_epilogue" if epilogue else ""), is_blas=True,
                           kind="conv", source=annotate(text, [planned.node]),
                           compiled=epilogue.kernel.compiled if epilogue else module.kernel_serial,
                           compiled_parallel=epilogue.kernel.compiled_parallel if epilogue else None)
    keep = program.check_numerics and not planned.write_product
    return ConvStep(planned, kernel, im2col, col2im, epilogue, keep_product=keep)


# ------------------------------------------------------------------ pooling
class PoolStep(Step):
    """Pooling (every mode) or max pooling's gradient over the planes of the input."""

    kind = "pool"

    def __init__(self, planned, kernel, module):
        super().__init__(planned, kernel)
        self.node = planned.node
        self.serial, self.parallel = module.kernel_serial, module.kernel_parallel

    def bind(self, frame):
        node, op, shapes = self.node, self.node.op, frame.shapes
        count, rows, cols = planes(shapes[node.inputs[0]])
        out_var = node.outputs[0]
        out_hw = shapes[out_var][-2:] if not isinstance(op, MaxPool2DGrad) else shapes[node.inputs[2]][-2:]
        parallel = threads.use_parallel(count * rows * cols, count)
        self.kernel.ran_parallel = parallel
        kernel = self.parallel if parallel else self.serial
        n_chunks = threads.chunks(count) if parallel else 1
        window = op.ws + op.stride + op.pad
        in_shape, small = (count, rows, cols), (count,) + tuple(out_hw)
        if isinstance(op, MaxPool2DGrad):
            x_var, pooled_var, g_var = node.inputs

            def call(env):
                call_kernel(kernel, n_chunks, env[x_var].reshape(in_shape), env[pooled_var].reshape(small),
                            env[g_var].reshape(small), env[out_var].reshape(in_shape), *window)
            return call
        mode = templates.POOL_MODE_CODES[op.mode]
        x_var = node.inputs[0]

        def call(env):
            call_kernel(kernel, n_chunks, env[x_var].reshape(in_shape), env[out_var].reshape(small), *window, mode)
        return call


@CPU_LOWERINGS.register(PoolKernel)
def lower_pool(planned, program, index):
    is_grad = isinstance(planned.node.op, MaxPool2DGrad)
    template = templates.MAX_POOL_GRAD if is_grad else templates.POOL
    module = load_template(program, template)
    name = template.name if is_grad else f"{planned.node.op.mode}_pool"
    kernel = kernel_record(planned, f"k{index}_{name}", kind="pool", source=annotate(template.body, planned.nodes),
                           compiled=module.kernel_serial, compiled_parallel=module.kernel_parallel)
    return PoolStep(planned, kernel, module)


# ---------------------------------------------------------- per-channel reductions
class ChannelReduceStep(Step):
    """A sum, or mean and variance, per channel over (images, pixels)."""

    kind = "reduce"

    def __init__(self, planned, kernel, module):
        super().__init__(planned, kernel)
        self.node = planned.node
        self.serial, self.parallel = module.kernel_serial, module.kernel_parallel

    def bind(self, frame):
        node = self.node
        x_var = node.inputs[0]
        images, channels, pixels = image_dims(frame.shapes[x_var])
        parallel = threads.use_parallel(images * channels * pixels, channels)
        self.kernel.ran_parallel = parallel
        kernel = self.parallel if parallel else self.serial
        n_chunks = threads.chunks(channels) if parallel else 1
        shape = (images, channels, pixels)
        outs = node.outputs

        def call(env):
            call_kernel(kernel, n_chunks, env[x_var].reshape(shape), *[env[v].reshape(-1) for v in outs])
        return call


@CPU_LOWERINGS.register(ChannelReduceKernel)
def lower_channel_reduce(planned, program, index):
    template = templates.CHANNEL_MOMENTS if isinstance(planned.node.op, Moments) else templates.CHANNEL_SUM
    module = load_template(program, template)
    kernel = kernel_record(planned, f"k{index}_{template.name}", kind="reduce",
                           source=annotate(template.body, planned.nodes),
                           compiled=module.kernel_serial, compiled_parallel=module.kernel_parallel)
    return ChannelReduceStep(planned, kernel, module)
