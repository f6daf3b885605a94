"""2-D convolution (Theano's ``conv2d``) and its two gradients, as ops of their own.

Layouts are Theano's: input NCHW ``(batch, channels, rows, cols)``, filters
OIHW ``(out_channels, in_channels, rows, cols)``. ``filter_flip=True`` (the
default, as Theano) is a true convolution: the filters are flipped in both
spatial axes before the sliding dot product; ``False`` is the cross-correlation
PyTorch and JAX compute.

The three ops share one bilinear form ``B(x, w, g) = <g, conv(x, w)>``:
``Conv2DGradInput(w, g) = dB/dx`` and ``Conv2DGradFilters(x, g) = dB/dw``. Each
is linear in both of its data inputs, so the gradient of every op here is
again one of the three (``<v, dB/dx> = B(v, w, g)``), and the backward graph
(and the second derivative) stays an ordinary graph of these ops.

The NumPy references are im2col: a strided window view of the padded input,
contracted with the filters by ``np.tensordot`` (one BLAS call); the gradient
with respect to the input scatters the columns back with one strided add per
filter tap. The compiler runs these through its host fallback until it lowers
them to generated kernels.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from graphnet.errors import DTypeError, ShapeError
from graphnet.graph.ir import Apply, Op, TensorType, as_variable, shape_str

BORDER_MODES = ("valid", "full", "half")


# --------------------------------------------------------------------- parameters
def pair(value, what, minimum):
    """``value`` as a pair of ints ``>= minimum`` (an int means the same for rows and columns)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    try:
        first, second = value
    except (TypeError, ValueError):
        raise ShapeError(f"{what} must be an int or a pair of ints, got {value!r}") from None
    for v in (first, second):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
            raise ShapeError(f"{what} must hold ints >= {minimum}, got {value!r}")
    return int(first), int(second)


def normalize_border_mode(border_mode):
    """``"valid"``, ``"full"``, ``"half"``, or a pair of non-negative paddings."""
    if isinstance(border_mode, str):
        if border_mode not in BORDER_MODES:
            raise ShapeError(f"conv2d: border_mode must be one of {', '.join(BORDER_MODES)}, an int or a pair, "
                             f"got {border_mode!r}")
        return border_mode
    return pair(border_mode, "conv2d: border_mode", 0)


def dilated_size(size, dilation):
    """The extent of a filter of ``size`` taps spread ``dilation`` apart."""
    return (size - 1) * dilation + 1


def paddings(border_mode, filter_hw, dilation):
    """Zero padding (rows, cols) added on each side for ``border_mode``."""
    if border_mode == "valid":
        return 0, 0
    extent = [dilated_size(k, d) for k, d in zip(filter_hw, dilation)]
    if border_mode == "full":
        return extent[0] - 1, extent[1] - 1
    if border_mode == "half":
        return extent[0] // 2, extent[1] // 2
    return border_mode


def output_size(size, filter_size, pad, stride, dilation):
    """Rows (or cols) of the output; ``None`` where the input or filter size is not known.

    May be below 1: the callers refuse that with the shapes in the message.
    """
    if size is None or filter_size is None:
        return None
    return (size + 2 * pad - dilated_size(filter_size, dilation)) // stride + 1


class ConvParams(Op):
    """What the three convolution ops share: the parameters and the shape arithmetic."""

    kind = "conv"
    __props__ = ("border_mode", "subsample", "filter_flip", "filter_dilation")

    def __init__(self, border_mode="valid", subsample=(1, 1), filter_flip=True, filter_dilation=(1, 1)):
        self.border_mode = normalize_border_mode(border_mode)
        self.subsample = pair(subsample, f"{self.name}: subsample", 1)
        self.filter_flip = bool(filter_flip)
        self.filter_dilation = pair(filter_dilation, f"{self.name}: filter_dilation", 1)

    def describe_params(self):
        return (f"border_mode={self.border_mode!r}, subsample={self.subsample}, "
                f"filter_dilation={self.filter_dilation}")

    def conv_output_shape(self, x_shape, w_shape, hint=""):
        """The output shape of ``conv(x, w)``; ShapeError on a mismatch (dims may be None)."""
        shapes = f"input {shape_str(x_shape)} and filters {shape_str(w_shape)}"
        if len(x_shape) != 4 or len(w_shape) != 4:
            raise ShapeError(f"conv2d: expects a 4-d input (batch, channels, rows, cols) and 4-d filters "
                             f"(out_channels, in_channels, rows, cols), got {shapes}{hint}")
        if x_shape[1] is not None and w_shape[1] is not None and x_shape[1] != w_shape[1]:
            raise ShapeError(f"conv2d: {shapes} disagree on the input channels ({x_shape[1]} vs {w_shape[1]})"
                             f"{hint}")
        if None in w_shape[2:] and isinstance(self.border_mode, str) and self.border_mode != "valid":
            pads = (None, None)
        else:
            pads = paddings(self.border_mode, w_shape[2:], self.filter_dilation)
        out = []
        for axis, (size, k, p, s, d) in enumerate(zip(x_shape[2:], w_shape[2:], pads, self.subsample,
                                                      self.filter_dilation)):
            if p is None:
                out.append(None)
                continue
            n = output_size(size, k, p, s, d)
            if n is not None and n < 1:
                which = "rows" if axis == 0 else "cols"
                raise ShapeError(f"conv2d: the filters ({dilated_size(k, d)} {which} with dilation {d}) are "
                                 f"larger than the padded input ({size + 2 * p} {which}): {shapes} with "
                                 f"{self.describe_params()} give {n} output {which}{hint}")
            out.append(n)
        return (x_shape[0], w_shape[0], out[0], out[1])

    def check_output_grad(self, x_shape, w_shape, g_shape, hint=""):
        """For the gradient ops: ``g`` must have the shape ``conv(x, w)`` has."""
        expected = self.conv_output_shape(x_shape, w_shape, hint)
        if len(g_shape) != 4 or any(a is not None and b is not None and a != b for a, b in zip(expected, g_shape)):
            raise ShapeError(f"{self.name}: the output gradient {shape_str(g_shape)} does not match the output "
                             f"{shape_str(expected)} of input {shape_str(x_shape)} and filters "
                             f"{shape_str(w_shape)}{hint}")

    def check_dtypes(self, *variables):
        for v in variables:
            if v.dtype.kind != "f":
                raise DTypeError(f"{self.name}: operands must be floating point, got "
                                 f"{', '.join(str(u.dtype) for u in variables)}{self.error_hint()}")
        return np.result_type(*[v.dtype for v in variables])

    # --- the NumPy reference, shared by the three ops
    def pads_for(self, w_shape):
        return paddings(self.border_mode, w_shape[2:], self.filter_dilation)

    def oriented(self, w):
        """The filters as the cross-correlation uses them (flipped for a true convolution)."""
        return w[:, :, ::-1, ::-1] if self.filter_flip else w

    def columns(self, x, w_shape, out_hw):
        """A strided view (batch, channels, out_rows, out_cols, k_rows, k_cols) of the padded input."""
        (ph, pw), (sh, sw), (dh, dw) = self.pads_for(w_shape), self.subsample, self.filter_dilation
        padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
        window = (dilated_size(w_shape[2], dh), dilated_size(w_shape[3], dw))
        view = sliding_window_view(padded, window, axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
        return view[:, :, :out_hw[0], :out_hw[1]]


# --------------------------------------------------------------------- the ops
class Conv2D(ConvParams):
    """``conv2d(x, w)``: NCHW input, OIHW filters -> (batch, out_channels, out_rows, out_cols)."""

    def make_node(self, x, w):
        x, w = as_variable(x), as_variable(w)
        dtype = self.check_dtypes(x, w)
        shape = self.conv_output_shape(x.shape, w.shape, self.error_hint())
        return Apply(self, [x, w], [TensorType(dtype, shape)])

    def infer_shape(self, node, shapes):
        return [self.conv_output_shape(*shapes)]

    def perform(self, inputs):
        x, w = (np.asarray(a) for a in inputs)
        shape = self.conv_output_shape(x.shape, w.shape)
        cols = self.columns(x, w.shape, shape[2:])
        # (N, C, Ho, Wo, kh, kw) . (O, C, kh, kw) over C, kh, kw -> (N, Ho, Wo, O)
        out = np.tensordot(cols, self.oriented(w), axes=([1, 4, 5], [1, 2, 3]))
        return [np.ascontiguousarray(out.transpose(0, 3, 1, 2), dtype=np.result_type(x, w))]

    def grad(self, inputs, outputs, g):
        x, w = inputs
        params = self._props()
        return [Conv2DGradInput(*params)(w, g[0], x), Conv2DGradFilters(*params)(x, g[0], w)]


class Conv2DGradInput(ConvParams):
    """``dB/dx``: the gradient of ``conv2d`` with respect to its input.

    Inputs ``(filters, output_grad, x)``; only the shape of ``x`` is read
    (with a stride, several input sizes give the same output size).
    """

    def make_node(self, w, g, x):
        w, g, x = as_variable(w), as_variable(g), as_variable(x)
        dtype = self.check_dtypes(w, g)
        self.check_output_grad(x.shape, w.shape, g.shape, self.error_hint())
        return Apply(self, [w, g, x], [TensorType(dtype, x.shape)])

    def infer_shape(self, node, shapes):
        w, g, x = shapes
        self.check_output_grad(x, w, g)
        return [tuple(x)]

    def perform(self, inputs):
        w, g, x = (np.asarray(a) for a in inputs)
        self.check_output_grad(x.shape, w.shape, g.shape)
        (ph, pw), (sh, sw), (dh, dw) = self.pads_for(w.shape), self.subsample, self.filter_dilation
        n, c, rows, cols = x.shape
        out_rows, out_cols = g.shape[2:]
        # dcols[n, i, j, c, a, b] = sum_o g[n, o, i, j] w'[o, c, a, b], then each tap (a, b)
        # adds its column back where it was read from (col2im).
        dcols = np.tensordot(g, self.oriented(w), axes=([1], [0]))
        padded = np.zeros((n, c, rows + 2 * ph, cols + 2 * pw), np.result_type(w, g))
        for a in range(w.shape[2]):
            for b in range(w.shape[3]):
                r0, c0 = a * dh, b * dw
                padded[:, :, r0:r0 + sh * (out_rows - 1) + 1:sh, c0:c0 + sw * (out_cols - 1) + 1:sw] += \
                    dcols[:, :, :, :, a, b].transpose(0, 3, 1, 2)
        return [np.ascontiguousarray(padded[:, :, ph:ph + rows, pw:pw + cols])]

    def grad(self, inputs, outputs, g):
        w, gout, x = inputs
        params = self._props()
        return [Conv2DGradFilters(*params)(g[0], gout, w), Conv2D(*params)(g[0], w), None]


class Conv2DGradFilters(ConvParams):
    """``dB/dw``: the gradient of ``conv2d`` with respect to its filters.

    Inputs ``(x, output_grad, filters)``; only the shape of ``filters`` is read.
    """

    def make_node(self, x, g, w):
        x, g, w = as_variable(x), as_variable(g), as_variable(w)
        dtype = self.check_dtypes(x, g)
        self.check_output_grad(x.shape, w.shape, g.shape, self.error_hint())
        return Apply(self, [x, g, w], [TensorType(dtype, w.shape)])

    def infer_shape(self, node, shapes):
        x, g, w = shapes
        self.check_output_grad(x, w, g)
        return [tuple(w)]

    def perform(self, inputs):
        x, g, w = (np.asarray(a) for a in inputs)
        self.check_output_grad(x.shape, w.shape, g.shape)
        cols = self.columns(x, w.shape, g.shape[2:])
        # (N, O, Ho, Wo) . (N, C, Ho, Wo, kh, kw) over N, Ho, Wo -> (O, C, kh, kw)
        dw = np.tensordot(g, cols, axes=([0, 2, 3], [0, 2, 3]))
        return [np.ascontiguousarray(self.oriented(dw), dtype=np.result_type(x, g))]

    def grad(self, inputs, outputs, g):
        x, gout, w = inputs
        params = self._props()
        return [Conv2DGradInput(*params)(g[0], gout, x), Conv2D(*params)(x, g[0]), None]


# --------------------------------------------------------------------- constructor
def conv2d(input, filters, input_shape=None, filter_shape=None, border_mode="valid", subsample=(1, 1),
           filter_flip=True, filter_dilation=(1, 1)):
    """Theano's ``conv2d``: NCHW ``input`` convolved with OIHW ``filters``.

    ``border_mode``: ``"valid"`` (no padding), ``"full"`` (every partial
    overlap), ``"half"`` (pad by half the filter: same size for odd filters at
    stride 1), an int or a pair of paddings. ``subsample`` is the stride,
    ``filter_dilation`` the spacing of the filter taps. ``filter_flip=True`` is a
    true convolution; ``False`` cross-correlates (as PyTorch's ``conv2d``).
    ``input_shape`` and ``filter_shape``, as in Theano, are checked against
    the variables' static shapes (``None`` entries match anything).
    """
    op = Conv2D(border_mode, subsample, filter_flip, filter_dilation)
    input, filters = as_variable(input), as_variable(filters)
    for given, var, what in ((input_shape, input, "input_shape"), (filter_shape, filters, "filter_shape")):
        if given is None:
            continue
        given = tuple(given)
        if len(given) != var.ndim or any(a is not None and b is not None and a != b
                                         for a, b in zip(given, var.type.shape)):
            raise ShapeError(f"conv2d: {what}={given} does not match {var.describe()} of shape "
                             f"{shape_str(var.type.shape)}{op.error_hint()}")
    return op(input, filters)
