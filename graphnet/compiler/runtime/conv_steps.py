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

    def calls(self, frame):
        return None   # a loop over images, bound per frame (``bind``): no straight-line Calls yet

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

    @property
    def transposed_params(self):
        """At stride 1, the input gradient is a convolution of the output gradient with the
        filters turned 180 degrees and their channels swapped, padded by the filter's extent
        minus 1 minus the forward padding: these are its im2col parameters, or None when that
        padding would be negative (a padding wider than the filter) or the stride is not 1."""
        qh, qw = self.dh * (self.kh - 1) - self.ph, self.dw * (self.kw - 1) - self.pw
        if (self.sh, self.sw) != (1, 1) or qh < 0 or qw < 0:
            return None
        return (self.kh, self.kw, qh, qw, 1, 1, self.dh, self.dw, self.h, self.w)


#: convolutions with fewer output elements run their images in one lane (threads cost more)
LANE_MIN_ELEMENTS = threads.PARALLEL_MIN_ELEMENTS


def over_images(count, lanes, work):
    """``work(lane, images)`` for ``lanes`` contiguous ranges of ``count`` images; the calling
    thread runs lane 0. Each lane runs im2col, a one-thread GEMM and the epilogue on its own
    images (all release the GIL): no thread spins waiting for another's BLAS call."""
    if lanes == 1:
        work(0, range(count))
        return
    futures = [threads.helpers().submit(work, k, range(k * count // lanes, (k + 1) * count // lanes))
               for k in range(1, lanes)]
    work(0, range(count // lanes))
    for future in futures:
        future.result()


class ChannelStatistics:
    """A convolution's statistics epilogue: per-channel sums of x and x^2 per lane, added image
    by image, then the sum, or the mean and biased variance (as the moments kernels: float64,
    ``E[x^2] - mean^2`` clamped at 0, keeping NaN), written to the reduction's outputs."""

    def __init__(self, node, accumulate, lanes, channels, count):
        self.node, self.accumulate, self.count = node, accumulate, count
        self.totals = [(np.zeros(channels), np.zeros(channels)) for _ in range(lanes)]

    def start(self):
        for s, s2 in self.totals:
            s[:] = 0
            s2[:] = 0

    def add(self, lane, image):
        call_kernel(self.accumulate, 1, image, *self.totals[lane])

    def finish(self, env):
        s = sum(t[0] for t in self.totals)
        outputs = self.node.outputs
        if not isinstance(self.node.op, Moments):
            env[outputs[0]].reshape(-1)[:] = s
            return
        s2 = sum(t[1] for t in self.totals)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = s / self.count
            var = s2 / self.count - mean * mean
        env[outputs[0]].reshape(-1)[:] = mean
        env[outputs[1]].reshape(-1)[:] = np.where(var < 0, 0.0, var)


class ConvStep(Step):
    """One convolution op, run image by image (see the module docstring).

    Large enough convolutions run their images in ``lanes`` threads side by side, each with
    one BLAS thread and scratch of its own, instead of giving each image's GEMM every BLAS
    thread: the per-image GEMMs are small, and a BLAS thread pool synchronizing 32-64 times a
    step collapsed on this shared machine (DESIGN.md, "Threads under load").
    """

    kind = "conv"

    def __init__(self, planned, kernel, module_im2col, module_col2im, epilogue=None, keep_product=False,
                 module_accumulate=None):
        super().__init__(planned, kernel)
        self.node, self.epilogue = planned.node, epilogue
        self.im2col, self.col2im = module_im2col.kernel_serial, module_col2im.kernel_serial
        self.accumulate = module_accumulate.kernel_serial if module_accumulate is not None else None
        #: check_numerics names the node from the whole product: keep it although nothing reads it
        self.keep_product = keep_product

    def bind(self, frame):
        node, shapes = self.node, frame.shapes
        op = node.op
        if isinstance(op, Conv2D):
            x_var, w_var = node.inputs
            geometry = ConvGeometry(op, shapes[x_var], shapes[w_var], shapes[node.outputs[0]][2:])
            return self._run_images(frame, geometry, *self._forward(geometry))
        if isinstance(op, Conv2DGradInput):
            w_var, g_var, x_var = node.inputs
            geometry = ConvGeometry(op, shapes[x_var], shapes[w_var], shapes[g_var][2:])
            return self._run_images(frame, geometry, *self._grad_input(geometry))
        x_var, g_var, w_var = node.inputs
        return self._grad_filters(ConvGeometry(op, shapes[x_var], shapes[w_var], shapes[g_var][2:]))

    def _lanes(self, g, macs):
        """(lanes, BLAS shape): images side by side when the work is large enough to share."""
        large = g.n * g.o * g.l >= LANE_MIN_ELEMENTS
        lanes = min(threads.num_threads(), g.n) if large and not threads.crowded() else 1
        self.kernel.ran_parallel = lanes > 1
        return lanes, ((1, 1, 1) if lanes > 1 else macs)   # (1, 1, 1): below every threshold, one thread

    def _run_images(self, frame, geometry, setup, make_lane, macs):
        """The call of a convolution whose output (images, rows, L) takes the epilogue per image.

        ``setup(env)`` gives what every image reads (the oriented filters); ``make_lane()`` a
        lane's ``image(shared, n, target)``, with its own scratch.
        """
        p, product = self.planned, self.planned.product
        out_shape = frame.shapes[product]
        _, rows, pixels = image_dims(out_shape)
        store = p.write_product or self.keep_product
        # the product's buffer: planned when written, fresh when an output, own when only checked
        out_fixed = frame.env.get(product) if p.write_product else np.empty(out_shape, product.dtype)
        lanes, blas_shape = self._lanes(geometry, macs)
        state = []
        for _ in range(lanes):
            scratch = None if store else np.empty((rows, pixels), product.dtype)
            epilogue = None
            if self.epilogue is not None:
                epilogue = self.epilogue.bind_images(frame, {product: scratch} if scratch is not None else None,
                                                     serial=True)
            state.append((make_lane(), scratch, epilogue))
        flags = self.epilogue.flags if self.epilogue is not None else None
        statistics = self._statistics(lanes, rows, geometry.n * pixels)

        def call(env):
            out = None
            if store:
                out = out_fixed if out_fixed is not None else env[product]
                env[product] = out
                out = out.reshape(geometry.n, rows, pixels)
            shared = setup(env)
            if flags is not None:
                flags[:] = 0
            prepared = [epilogue[0](env) if epilogue is not None else None for _, _, epilogue in state]

            if statistics is not None:
                statistics.start()

            def work(lane, images):
                image, scratch, epilogue = state[lane]
                for n in images:
                    target = out[n] if store else scratch
                    image(shared, n, target)
                    if epilogue is not None:
                        epilogue[1](prepared[lane], n)
                    if statistics is not None:
                        statistics.add(lane, target)
            threads.blas_threads(*blas_shape)
            over_images(geometry.n, lanes, work)
            if statistics is not None:
                statistics.finish(env)
        return call

    def _statistics(self, lanes, channels, count):
        node = self.planned.statistics
        return None if node is None else ChannelStatistics(node, self.accumulate, lanes, channels, count)

    def _forward(self, g):
        node, im2col = self.node, self.im2col
        x_var, w_var = node.inputs
        dtype, params = node.outputs[0].dtype, g.params

        def setup(env):
            return env[x_var], np.ascontiguousarray(node.op.oriented(env[w_var]).reshape(g.o, g.k))

        def make_lane():
            cols = None if g.pointwise else np.empty((g.k, g.l), dtype)

            def image(shared, n, target):
                x, filters = shared
                if cols is None:
                    np.dot(filters, x[n].reshape(g.c, g.l), out=target)
                else:
                    call_kernel(im2col, 1, x[n], cols, *params)
                    np.dot(filters, cols, out=target)
            return image
        return setup, make_lane, (g.o, g.l, g.k)

    def _grad_input(self, g):
        # As a convolution its GEMM has H*W columns against OH*OW for col2im's: the same work
        # when the forward keeps the size ("half"), 2.25x more for a 5x5 "valid" on 12x12
        # (LeNet's second layer: 11.4 ms against col2im's fewer multiply-adds).
        if g.transposed_params is not None and not g.pointwise and g.h * g.w <= g.oh * g.ow:
            return self._grad_input_as_convolution(g)
        node, col2im = self.node, self.col2im
        w_var, g_var, _ = node.inputs
        dtype, params = node.outputs[0].dtype, g.params

        def setup(env):
            return (env[g_var].reshape(g.n, g.o, g.l),
                    np.ascontiguousarray(node.op.oriented(env[w_var]).reshape(g.o, g.k)).T)

        def make_lane():
            dcols = None if g.pointwise else np.empty((g.k, g.l), dtype)

            def image(shared, n, target):
                grads, filters_t = shared
                if dcols is None:
                    np.dot(filters_t, grads[n], out=target)
                else:
                    np.dot(filters_t, grads[n], out=dcols)
                    call_kernel(col2im, 1, dcols, target.reshape(g.c, g.h, g.w), *params)
            return image
        return setup, make_lane, (g.k, g.l, g.o)

    def _grad_input_as_convolution(self, g):
        """Stride 1: im2col of the output gradient and one GEMM (C, O*kh*kw) @ (O*kh*kw, H*W)
        per image, straight into the image's gradient: the GEMM's inner dimension is
        O*kh*kw instead of O, there is no col2im scatter and no (K, L) intermediate. On the W8b
        backward it measured the same as col2im (528 vs 532 ms, load 8.3 on 2 cores)."""
        node, im2col = self.node, self.im2col
        w_var, g_var, _ = node.inputs
        dtype, params = node.outputs[0].dtype, g.transposed_params
        depth, pixels = g.o * g.kh * g.kw, g.h * g.w

        def setup(env):
            oriented = node.op.oriented(env[w_var])[:, :, ::-1, ::-1]   # turned 180 degrees
            return (env[g_var].reshape(g.n, g.o, g.oh, g.ow),
                    np.ascontiguousarray(oriented.transpose(1, 0, 2, 3)).reshape(g.c, depth))

        def make_lane():
            cols = np.empty((depth, pixels), dtype)

            def image(shared, n, target):
                grads, filters = shared
                call_kernel(im2col, 1, grads[n], cols, *params)
                np.dot(filters, cols, out=target)
            return image
        return setup, make_lane, (g.c, pixels, depth)

    def _grad_filters(self, g):
        node, im2col = self.node, self.im2col
        x_var, g_var, _ = node.inputs
        dtype = node.outputs[0].dtype
        params, out_var = g.params, node.outputs[0]
        lanes, blas_shape = self._lanes(g, (g.o, g.k, g.l))
        # per lane: its columns, one image's filter gradient, and the lane's sum of them
        state = [(None if g.pointwise else np.empty((g.k, g.l), dtype), np.empty((g.o, g.k), dtype),
                  np.empty((g.o, g.k), dtype)) for _ in range(lanes)]

        def call(env):
            x, grads = env[x_var], env[g_var].reshape(g.n, g.o, g.l)

            def work(lane, images):
                cols, partial, total = state[lane]
                total[...] = 0
                for n in images:
                    if cols is None:
                        np.dot(grads[n], x[n].reshape(g.c, g.l).T, out=partial)
                    else:
                        call_kernel(im2col, 1, x[n], cols, *params)
                        np.dot(grads[n], cols.T, out=partial)
                    np.add(total, partial, out=total)
            threads.blas_threads(*blas_shape)
            over_images(g.n, lanes, work)
            total = state[0][2]
            for _, _, other in state[1:]:
                np.add(total, other, out=total)
            out = env.get(out_var)
            if out is None:
                out = env[out_var] = np.empty((g.o, g.c, g.kh, g.kw), dtype)
            out[...] = node.op.oriented(total.reshape(out.shape))
        return call

    def check_numerics(self, env):
        if self.planned.product in env:
            check_finite(self.node, self.planned.product, np.asarray(env[self.planned.product]))
        if self.planned.statistics is not None:
            for var in self.planned.statistics.outputs:
                check_finite(self.planned.statistics, var, np.asarray(env[var]))
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
    if planned.statistics is not None:
        text += ("\n# then its per-channel statistics, image by image while in cache:\n"
                 + templates.CHANNEL_ACCUMULATE.body)
    suffix = "_epilogue" if epilogue else ("_statistics" if planned.statistics is not None else "")
    kernel = kernel_record(planned, f"k{index}_conv{suffix}", is_blas=True,
                           kind="conv", source=annotate(text, [planned.node]),
                           compiled=epilogue.kernel.compiled if epilogue else module.kernel_serial,
                           compiled_parallel=epilogue.kernel.compiled_parallel if epilogue else None)
    keep = program.check_numerics and not planned.write_product
    accumulate = load_template(program, templates.CHANNEL_ACCUMULATE) if planned.statistics is not None else None
    return ConvStep(planned, kernel, im2col, col2im, epilogue, keep_product=keep, module_accumulate=accumulate)


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
#: per-channel sums in vector lanes run at memory speed on one thread; waking a second one
#: costs more up to ~2M elements (float32, 64 channels: 148 / 168 us serial against 136 / 184
#: parallel at 2M for the sum / the moments; 50 / 58 against 90 / 86 at 737K; at 16M
#: parallel 2411 / 2844 against 3727 / 4796)
CHANNEL_REDUCE_PARALLEL_MIN = 1 << 21


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
        elements = images * channels * pixels
        parallel = elements >= CHANNEL_REDUCE_PARALLEL_MIN and threads.use_parallel(elements, channels)
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
