"""Elementwise ops: arithmetic, comparisons, math functions and activations.

Each op carries three things side by side: its NumPy reference (``impl``), its
symbolic gradient (``grad``), and the scalar expression the fuser inlines into
a generated kernel (``scalar``). The CPU and CUDA code generators build every
elementwise kernel from ``scalar``; nothing else knows what an op computes.

``scalar(args, dtype)`` receives the argument expressions as strings and the
compute dtype, and returns an expression string. It may use ``math``, ``np``
and the helpers defined in ``graphnet.compiler.render.scalar_prelude``
(``sigmoid``, ``softplus``, ``keep_mask``...). Literals go through ``lit`` so a
float32 kernel stays in float32.
"""
from __future__ import annotations

import numpy as np

from graphnet.errors import DTypeError, ShapeError
from graphnet.graph.ir import Apply, Op, TensorType, as_variable, broadcast_shapes


def lit(value, dtype):
    """A typed literal: ``np.float32(0.9)`` keeps float32 kernels in float32.

    The number is the shortest text that gives the same value in ``dtype``
    (``0.9``, not float32's ``0.8999999761581421``).
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        with np.errstate(over="ignore"):   # a float64 constant past float32's range is inf in float32
            value = dtype.type(value)
        if not np.isfinite(value):   # nan and inf are names no kernel module defines
            return f"np.{dtype.name}({'np.nan' if np.isnan(value) else ('-' if value < 0 else '') + 'np.inf'})"
        text = str(value) if dtype.itemsize < 8 else repr(float(value))
        if dtype.type(float(text)) != value:   # read back through float64, it must still be the same
            text = repr(float(value))
        return f"np.{dtype.name}({text})"
    if dtype.kind == "b":
        return repr(bool(value))
    return f"np.{dtype.name}({int(value)})"


def float_dtype(dtype):
    """The float dtype a math function computes in for an input of ``dtype``."""
    dtype = np.dtype(dtype)
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


class Elemwise(Op):
    """Base of elementwise ops: broadcast inputs, one output of the broadcast shape."""

    kind = "elementwise"
    nin = 1

    def shape_source(self, node):
        # An input of the output's static shape, every length known: a None could be 1 at run
        # time, broadcast against the others. (Weight decay's gradient ``second(W ** 2, c)``
        # then reads W's shape, not W ** 2: it need not share a loop with the penalty's sum.)
        out = node.outputs[0].shape
        if None in out:
            return None
        return next((k for k, v in enumerate(node.inputs) if v.shape == out), None)

    def output_dtype(self, *dtypes):
        return np.result_type(*dtypes)

    def make_node(self, *inputs):
        if len(inputs) != self.nin:
            raise TypeError(f"{self.name} takes {self.nin} inputs, got {len(inputs)}")
        # Weak Python scalars take the dtype of the first symbolic operand.
        like = next((v for v in inputs if hasattr(v, "owner")), None)
        inputs = [as_variable(v, like=like) for v in inputs]
        shape = broadcast_shapes(*[v.shape for v in inputs], op_name=self.name, node_hint=self.error_hint())
        dtype = self.output_dtype(*[v.dtype for v in inputs])
        return Apply(self, inputs, [TensorType(dtype, shape)])

    def infer_shape(self, node, shapes):
        try:
            out = np.broadcast_shapes(*shapes)
        except ValueError:
            named = " and ".join(f"{tuple(s)} of {v.describe()}" for v, s in zip(node.inputs, shapes))
            raise ShapeError(f"{self.name}: run-time shapes {named} do not broadcast "
                             "(inconsistent batch sizes?)") from None
        for var, shape in zip(node.inputs, shapes):
            lead = len(out) - len(shape)
            for axis, (static, dim) in enumerate(zip(var.shape, shape)):
                if dim != out[lead + axis] and static != 1:
                    # Gradients sum over statically broadcast axes only.
                    raise ShapeError(
                        f"{self.name}: axis {axis} of {var.describe()} is {dim} at run time and would broadcast "
                        f"to {out[lead + axis]}, but it was declared {'?' if static is None else static}; "
                        "declare it as 1 to broadcast")
        return [out]

    def perform(self, inputs):
        out = np.asarray(self.impl(*inputs), dtype=self._out_dtype(inputs))
        shapes = [np.shape(a) for a in inputs]
        if all(shape == out.shape for shape in shapes):
            return [out]   # nothing broadcast (the host's 0-d index arithmetic): np.broadcast_shapes costs 2 us
        return [out.reshape(np.broadcast_shapes(*shapes))]

    def _out_dtype(self, inputs):
        return self.output_dtype(*[np.asarray(a).dtype for a in inputs])

    def impl(self, *arrays):
        raise NotImplementedError

    def scalar(self, args, dtype):
        raise NotImplementedError


class UnaryFloat(Elemwise):
    """A math function computed in floating point (ints are promoted to float64)."""

    def output_dtype(self, dtype):
        return float_dtype(dtype)


# ---------------------------------------------------------------- arithmetic
class Add(Elemwise):
    nin = 2
    def impl(self, a, b): return np.add(a, b)
    def scalar(self, args, dtype): return f"({args[0]} + {args[1]})"
    def grad(self, inputs, outputs, g):
        return [g[0], g[0]]


class Sub(Elemwise):
    nin = 2
    def impl(self, a, b): return np.subtract(a, b)
    def scalar(self, args, dtype): return f"({args[0]} - {args[1]})"
    def grad(self, inputs, outputs, g):
        return [g[0], neg(g[0])]


class Mul(Elemwise):
    nin = 2
    def impl(self, a, b): return np.multiply(a, b)
    def scalar(self, args, dtype): return f"({args[0]} * {args[1]})"
    def grad(self, inputs, outputs, g):
        a, b = inputs
        return [mul(g[0], b), mul(g[0], a)]


class TrueDiv(Elemwise):
    nin = 2
    def output_dtype(self, a, b): return float_dtype(np.result_type(a, b))
    def impl(self, a, b): return np.true_divide(a, b)
    def scalar(self, args, dtype): return f"({args[0]} / {args[1]})"
    def grad(self, inputs, outputs, g):
        a, b = inputs
        return [true_div(g[0], b), neg(mul(g[0], true_div(outputs[0], b)))]


class Pow(Elemwise):
    nin = 2
    def impl(self, a, b): return np.power(a, b)
    def scalar(self, args, dtype):
        return f"({args[0]} ** {args[1]})"
    def grad(self, inputs, outputs, g):
        a, b = inputs
        da = mul(g[0], mul(b, pow(a, sub(b, 1))))
        db = mul(g[0], mul(outputs[0], log(a))) if b.dtype.kind == "f" else None
        return [da, db]


class Neg(Elemwise):
    def impl(self, a): return np.negative(a)
    def scalar(self, args, dtype): return f"(-{args[0]})"
    def grad(self, inputs, outputs, g): return [neg(g[0])]


class Abs(Elemwise):
    def impl(self, a): return np.abs(a)
    def scalar(self, args, dtype): return f"abs({args[0]})"
    def grad(self, inputs, outputs, g): return [mul(g[0], sign(inputs[0]))]


class Sign(Elemwise):
    def impl(self, a): return np.sign(a)
    def scalar(self, args, dtype):
        x = args[0]
        # Neither above nor below zero: zero itself, or NaN for floats (np.sign(nan) is nan).
        rest = x if np.dtype(dtype).kind == "f" else lit(0, dtype)
        return f"({lit(1, dtype)} if {x} > 0 else ({lit(-1, dtype)} if {x} < 0 else {rest}))"
    def grad(self, inputs, outputs, g): return [zeros_like(inputs[0])]


class Maximum(Elemwise):
    nin = 2
    def impl(self, a, b): return np.maximum(a, b)
    def scalar(self, args, dtype): return f"nan_max({args[0]}, {args[1]})"  # NaN wins, as in NumPy
    def grad(self, inputs, outputs, g):
        a, b = inputs
        takes_a = greater_equal(a, b)
        return [where(takes_a, g[0], 0), where(takes_a, 0, g[0])]


class Minimum(Elemwise):
    nin = 2
    def impl(self, a, b): return np.minimum(a, b)
    def scalar(self, args, dtype): return f"nan_min({args[0]}, {args[1]})"  # NaN wins, as in NumPy
    def grad(self, inputs, outputs, g):
        a, b = inputs
        takes_a = less_equal(a, b)
        return [where(takes_a, g[0], 0), where(takes_a, 0, g[0])]


class Second(Elemwise):
    """``second(a, b)``: ``b`` broadcast to the shape of ``broadcast(a, b)``.

    How gradients broadcast a reduced value back (``zeros_like``, sum's
    gradient) without a copy: as an elementwise op it fuses like any other.
    """
    nin = 2
    shape_only_inputs = (0,)
    def output_dtype(self, a, b): return np.dtype(b)
    def impl(self, a, b): return np.broadcast_to(b, np.broadcast_shapes(np.shape(a), np.shape(b)))
    def scalar(self, args, dtype): return args[1]
    def grad(self, inputs, outputs, g): return [None, g[0]]


class Cast(Elemwise):
    __props__ = ("dtype",)
    def __init__(self, dtype): self.dtype = np.dtype(dtype)
    def __str__(self): return f"cast{{{self.dtype.name}}}"
    def output_dtype(self, a): return self.dtype
    def impl(self, a): return np.asarray(a).astype(self.dtype)
    def scalar(self, args, dtype):
        return f"np.{self.dtype.name}({args[0]})" if self.dtype.kind != "b" else f"({args[0]} != 0)"
    def grad(self, inputs, outputs, g):
        if inputs[0].dtype.kind != "f":
            return [None]
        return [cast(g[0], inputs[0].dtype)]


class Where(Elemwise):
    nin = 3
    def output_dtype(self, c, a, b): return np.result_type(a, b)
    def make_node(self, cond, a, b):
        like = a if hasattr(a, "owner") else (b if hasattr(b, "owner") else None)
        a, b = as_variable(a, like=like), as_variable(b, like=like)
        cond = as_variable(cond)
        if cond.dtype.kind != "b":
            cond = cast(cond, np.bool_)
        return super().make_node(cond, a, b)
    def impl(self, c, a, b): return np.where(c, a, b)
    def scalar(self, args, dtype): return f"({args[1]} if {args[0]} else {args[2]})"
    def grad(self, inputs, outputs, g):
        c = inputs[0]
        return [None, where(c, g[0], 0), where(c, 0, g[0])]


# --------------------------------------------------------------- comparisons
class Compare(Elemwise):
    nin = 2
    is_comparison = True
    __props__ = ("symbol",)
    _ufuncs = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
               "==": np.equal, "!=": np.not_equal}
    _names = {"<": "less", "<=": "less_equal", ">": "greater", ">=": "greater_equal",
              "==": "eq", "!=": "neq"}
    def __init__(self, symbol): self.symbol = symbol
    @property
    def name(self): return self._names[self.symbol]
    def __str__(self): return self.name
    def output_dtype(self, a, b): return np.dtype(np.bool_)
    def impl(self, a, b): return self._ufuncs[self.symbol](a, b)
    def scalar(self, args, dtype): return f"({args[0]} {self.symbol} {args[1]})"
    def grad(self, inputs, outputs, g): return [None, None]


# ------------------------------------------------------------- math functions
class Exp(UnaryFloat):
    def impl(self, a): return np.exp(a)
    def scalar(self, args, dtype): return f"vexp({args[0]})"
    def grad(self, inputs, outputs, g): return [mul(g[0], outputs[0])]


class Log(UnaryFloat):
    def impl(self, a):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(a)
    def scalar(self, args, dtype): return f"safe_log({args[0]})"
    def grad(self, inputs, outputs, g): return [true_div(g[0], inputs[0])]


class Sqrt(UnaryFloat):
    def impl(self, a):
        with np.errstate(invalid="ignore"):
            return np.sqrt(a)
    def scalar(self, args, dtype): return f"safe_sqrt({args[0]})"
    def grad(self, inputs, outputs, g): return [true_div(mul(g[0], 0.5), outputs[0])]


class Sigmoid(UnaryFloat):
    def impl(self, a):
        a = np.asarray(a)
        # Two branches so neither exp overflows.
        e = np.exp(-np.abs(a))
        return np.where(a >= 0, 1 / (1 + e), e / (1 + e))
    def scalar(self, args, dtype): return f"vsigmoid({args[0]})"
    def grad(self, inputs, outputs, g):
        s = outputs[0]
        return [mul(g[0], mul(s, sub(1, s)))]


class Tanh(UnaryFloat):
    def impl(self, a): return np.tanh(a)
    def scalar(self, args, dtype): return f"vtanh({args[0]})"
    def grad(self, inputs, outputs, g):
        t = outputs[0]
        return [mul(g[0], sub(1, mul(t, t)))]


class Softplus(UnaryFloat):
    """``log(1 + exp(x))``, written so it neither overflows nor loses small values."""
    def impl(self, a):
        a = np.asarray(a)
        return np.maximum(a, 0) + np.log1p(np.exp(-np.abs(a)))
    def scalar(self, args, dtype): return f"softplus({args[0]})"
    def grad(self, inputs, outputs, g): return [mul(g[0], sigmoid(inputs[0]))]


class Relu(Elemwise):
    def impl(self, a): return np.maximum(a, 0).astype(np.asarray(a).dtype)
    def scalar(self, args, dtype): return f"max({args[0]}, {lit(0, dtype)})"
    def grad(self, inputs, outputs, g):
        # The lecture's mask 1[a > 0], recomputed from the pre-activation.
        return [where(greater(inputs[0], 0), g[0], 0)]


class LeakyRelu(Elemwise):
    __props__ = ("alpha",)
    def __init__(self, alpha=0.01): self.alpha = float(alpha)
    def output_dtype(self, a): return float_dtype(a)
    def impl(self, a): return np.where(np.asarray(a) > 0, a, self.alpha * np.asarray(a))
    def scalar(self, args, dtype):
        x = args[0]
        return f"({x} if {x} > 0 else {lit(self.alpha, dtype)} * {x})"
    def grad(self, inputs, outputs, g):
        return [where(greater(inputs[0], 0), g[0], mul(g[0], self.alpha))]


class Elu(Elemwise):
    __props__ = ("alpha",)
    def __init__(self, alpha=1.0): self.alpha = float(alpha)
    def output_dtype(self, a): return float_dtype(a)
    def impl(self, a):
        a = np.asarray(a)
        return np.where(a > 0, a, self.alpha * np.expm1(np.minimum(a, 0)))
    def scalar(self, args, dtype):
        x = args[0]
        return f"({x} if {x} > 0 else {lit(self.alpha, dtype)} * math.expm1({x}))"
    def grad(self, inputs, outputs, g):
        # d/dx alpha*(e^x - 1) = out + alpha below zero.
        return [where(greater(inputs[0], 0), g[0], mul(g[0], add(outputs[0], self.alpha)))]


class DropoutScale(Elemwise):
    """Inverted dropout: ``x * keep_mask / keep_prob``, the mask drawn per element.

    The mask comes from the counter-based RNG of ``graphnet.ops.rng`` keyed by
    (seed, step, flat element index), so the backward pass regenerates the very
    same mask instead of storing it, and every backend draws the same bits.
    """
    nin = 2
    __props__ = ("keep_prob", "seed")
    uses_element_index = True

    def __init__(self, keep_prob, seed):
        self.keep_prob, self.seed = float(keep_prob), int(seed)

    def output_dtype(self, x, step): return np.dtype(x)

    def make_node(self, x, step):
        node = super().make_node(x, step)
        if node.inputs[1].ndim != 0 or node.inputs[1].dtype.kind not in "iu":
            raise DTypeError(f"dropout: the step counter must be an integer scalar{self.error_hint()}")
        return node

    def impl(self, x, step):
        from graphnet.ops import rng
        x = np.asarray(x)
        keep = rng.keep_mask_array(self.seed, int(step), x.size, self.keep_prob).reshape(x.shape)
        return np.where(keep, x / np.asarray(self.keep_prob, x.dtype), np.zeros((), x.dtype))

    def scalar(self, args, dtype):
        # ``index`` is the flat element index the kernel template provides.
        return (f"({args[0]} / {lit(self.keep_prob, dtype)} if keep_mask({self.seed}, {args[1]}, index, "
                f"{lit(self.keep_prob, 'float64')}) else {lit(0, dtype)})")

    def grad(self, inputs, outputs, g):
        return [DropoutScale(self.keep_prob, self.seed)(g[0], inputs[1]), None]


# -------------------------------------------------------------- constructors
add, sub, mul, true_div, pow = Add(), Sub(), Mul(), TrueDiv(), Pow()
neg, abs, sign = Neg(), Abs(), Sign()
maximum, minimum, second = Maximum(), Minimum(), Second()
exp, log, sqrt = Exp(), Log(), Sqrt()
sigmoid, tanh, softplus, relu = Sigmoid(), Tanh(), Softplus(), Relu()
where = Where()
less, less_equal, greater, greater_equal = Compare("<"), Compare("<="), Compare(">"), Compare(">=")
eq, neq = Compare("=="), Compare("!=")


def cast(x, dtype):
    """Convert ``x`` to ``dtype`` (no-op when it already is)."""
    x = as_variable(x)
    return x if x.dtype == np.dtype(dtype) else Cast(dtype)(x)


def leaky_relu(x, alpha=0.01):
    """``x`` above zero, ``alpha * x`` below (the lecture's slope 0.01)."""
    return LeakyRelu(alpha)(x)


def elu(x, alpha=1.0):
    """``x`` above zero, ``alpha * (exp(x) - 1)`` below."""
    return Elu(alpha)(x)


def zeros_like(x):
    """Zeros of ``x``'s shape and dtype, as a fusable broadcast of a constant."""
    return second(x, as_variable(0, like=x))


def gradient_zeros(x):
    """Zeros standing for "no gradient flows here" (a dead mode branch, an unused output).

    Marked ``structural_zero`` so the compiler may drop the arithmetic done on
    them (``0 * x``, ``sum(0)``), which was never meant to be computed.
    """
    zeros = zeros_like(x)
    zeros.structural_zero = True
    return zeros


def ones_like(x):
    return second(x, as_variable(1, like=x))
