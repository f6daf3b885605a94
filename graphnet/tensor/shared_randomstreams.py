"""Theano's ``RandomStreams`` on graphnet's counter-based RNG.

    srng = RandomStreams(seed=1234)
    mask = srng.binomial(size=x.shape, n=1, p=1 - corruption_level, dtype=graphnet.config.floatX)
    corrupted = mask * x

Every element is a pure function of (draw seed, step, flat element index)
(``graphnet.ops.rng``), as in dropout: no generator state, the same bits on every
backend and thread count, and a mask is regenerated rather than stored. Each
call of ``binomial``/``uniform``/``normal`` gets its own draw seed derived from
the stream's seed; all draws of one stream share one step counter, a shared
variable. ``p``, ``low``/``high``, ``avg``/``std`` may be numbers or symbolic
(a scalar or a tensor that broadcasts to ``size``), and ``size`` may hold
symbolic sizes (``size=x.shape``, ``(x.shape[0], 100)``).

**When the draws change: on every call, as in Theano.** The step counter is
the stream's state; its ``default_update`` (``step + 1``) is applied by every
function that reads it (``update_in_every_function``), so a plain
``graphnet.function`` draws fresh numbers on each call, and the same seed
replays the same sequence. Pass ``no_default_updates=True`` to
``graphnet.function`` for a function that draws the same numbers every time
(or give the step an explicit update of your own). This differs from
``gn.nn.dropout``, whose step advances only in ``training=True`` functions.
"""
from __future__ import annotations

import itertools

import numpy as np

from graphnet import config
from graphnet.ops import rng
from graphnet.errors import DTypeError, GraphnetError
from graphnet.graph.ir import Apply, Constant, Op, SharedVariable, TensorType, Variable, as_variable
from graphnet.ops import elementwise as ew
from graphnet.ops.elementwise import Elemwise, lit
from graphnet.ops.indexing import ShapeTuple, alloc


def _check_step(step, hint):
    if step.ndim != 0 or step.dtype.kind not in "iu":
        raise DTypeError(f"random draw: the step counter must be an integer scalar{hint}")


class BernoulliMask(Elemwise):
    """1 with probability ``p``, else 0, for every element of ``broadcast(like, p)``.

    Elementwise, so it fuses into its consumer (``mask * x``): the kernel
    draws each bit from (seed, step, element index) with the same
    ``keep_mask`` as dropout; ``p`` is an input, so it may be symbolic.
    """

    nin = 3
    __props__ = ("seed", "dtype")
    uses_element_index = True

    def __init__(self, seed, dtype):
        self.seed, self.dtype = int(seed), np.dtype(dtype)

    def output_dtype(self, like, step, p):
        return self.dtype

    def make_node(self, like, step, p):
        node = super().make_node(like, step, p)
        _check_step(node.inputs[1], self.error_hint())
        if node.inputs[2].dtype.kind not in "fiub":
            raise DTypeError(f"RandomStreams.binomial: p must be numeric, got {node.inputs[2].dtype}{self.error_hint()}")
        return node

    def impl(self, like, step, p):
        shape = np.broadcast_shapes(np.shape(like), np.shape(p))
        # As keep_mask: the 24-bit uniform and p compared as float64, bit for bit as in kernels.
        u = rng.uniform01_array(self.seed, int(step), shape, np.float32).astype(np.float64)
        return (u < np.asarray(p, np.float64)).astype(self.dtype)

    def scalar(self, args, dtype):
        return f"({lit(1, dtype)} if keep_mask({self.seed}, {args[1]}, index, {args[2]}) else {lit(0, dtype)})"

    def grad(self, inputs, outputs, g):
        return [None, None, None]


class _StandardDraw(Op):
    """Base of the standard uniform and normal draws of ``like``'s shape (run by NumPy on every backend).

    Their location and scale are applied by ordinary graph ops afterwards, so
    they may be symbolic and they fuse.
    """

    __props__ = ("seed", "dtype")

    def __init__(self, seed, dtype):
        self.seed, self.dtype = int(seed), np.dtype(dtype)
        if self.dtype.kind != "f":
            raise DTypeError(f"RandomStreams: {type(self).__name__} makes floats, not {self.dtype}")

    def make_node(self, like, step):
        like, step = as_variable(like), as_variable(step)
        _check_step(step, self.error_hint())
        return Apply(self, [like, step], [TensorType(self.dtype, like.shape)])

    def infer_shape(self, node, shapes):
        return [shapes[0]]

    def grad(self, inputs, outputs, g):
        return [None, None]


class UniformDraw(_StandardDraw):
    """Uniform in ``[0, 1)``."""

    def perform(self, inputs):
        u = rng.uniform01_array(self.seed, int(inputs[1]), np.shape(inputs[0]))
        return [u.astype(self.dtype)]


class NormalDraw(_StandardDraw):
    """Standard normal (Box-Muller on two uniforms per element)."""

    def perform(self, inputs):
        shape = np.shape(inputs[0])
        u = rng.uniform01_array(self.seed, int(inputs[1]), (int(np.prod(shape, dtype=np.int64)), 2))
        radius = np.sqrt(-2.0 * np.log1p(-u[:, 0]))  # 1 - u is in (0, 1]: no log(0)
        z = radius * np.cos(2.0 * np.pi * u[:, 1])
        return [z.reshape(shape).astype(self.dtype)]


def _float_dtype(dtype):
    return config.floatX if dtype in (None, "floatX") else np.dtype(dtype).name


class RandomStreams:
    """A source of random tensors in Theano's API: ``binomial``, ``uniform``, ``normal``.

    The stream's state is ``self.step``, a shared int64 counter whose default
    update advances it in every function that draws from the stream.
    """

    def __init__(self, seed=None):
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, np.uint32)[0])
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise GraphnetError(f"RandomStreams: seed must be a non-negative integer, got {seed!r}")
        self.base_seed = int(seed)
        self._draws = itertools.count()
        self.step = SharedVariable(np.int64(0), name=f"random_streams_step_{seed}")
        self.step.default_update = ew.add(self.step, 1)
        self.step.update_in_every_function = True

    def updates(self):
        """``[(step, step + 1)]``: the update every function applies on its own (kept for explicit use)."""
        return [(self.step, ew.add(self.step, 1))]

    def _next_seed(self):
        return int(np.random.SeedSequence([self.base_seed, next(self._draws)]).generate_state(1, np.uint32)[0])

    @staticmethod
    def _like(size, what, params=()):
        """A variable of shape ``size``: ``x`` itself for ``size=x.shape``, else a filled array.

        Without ``size``, the broadcast shape of the symbolic parameters (Theano's rule).
        """
        if size is None:
            symbolic = [p for p in params if isinstance(p, Variable)]
            if not symbolic:
                raise GraphnetError(f"RandomStreams.{what}: give size=..., e.g. size=x.shape or (n, 100)")
            like = symbolic[0]
            for other in symbolic[1:]:
                like = ew.second(other, like)
            return like
        if isinstance(size, ShapeTuple):
            return size.variable
        if isinstance(size, Variable) and size.ndim == 1:
            raise GraphnetError(f"RandomStreams.{what}: size must be a tuple of sizes (ints or symbolic "
                                "scalars) or x.shape, not a symbolic shape vector")
        size = (size,) if isinstance(size, (int, np.integer)) or getattr(size, "ndim", None) == 0 else tuple(size)
        return alloc(np.zeros((), np.int8), *size)

    def binomial(self, size=None, n=1, p=0.5, ndim=None, dtype="int64"):
        """0/1 draws, 1 with probability ``p`` (a number, or symbolic: scalar or broadcast tensor).

        ``n`` must be 1: a Bernoulli mask, which is what the tutorials draw.
        """
        if isinstance(n, Variable) or n != 1:
            raise GraphnetError(f"RandomStreams.binomial: only n=1 (a Bernoulli mask) is supported, got n={n}")
        if not isinstance(p, Variable):
            if not isinstance(p, (int, float, np.floating, np.integer)) or not 0 <= p <= 1:
                raise GraphnetError(f"RandomStreams.binomial: p must be a number in [0, 1] or a symbolic "
                                    f"variable, got {p!r}")
            p = Constant(np.float64(p))
        dtype = config.floatX if dtype == "floatX" else dtype
        return BernoulliMask(self._next_seed(), dtype)(self._like(size, "binomial", (p,)), self.step, p)

    def uniform(self, size=None, low=0.0, high=1.0, ndim=None, dtype=None):
        """Uniform in ``[low, high)``; ``low`` and ``high`` may be symbolic."""
        like = self._like(size, "uniform", (low, high))
        u = UniformDraw(self._next_seed(), _float_dtype(dtype))(like, self.step)
        return _affine(u, low, high - low if _is_number(low) and _is_number(high) else ew.sub(high, low), 0.0, 1.0)

    def normal(self, size=None, avg=0.0, std=1.0, ndim=None, dtype=None):
        """Normal with mean ``avg`` and standard deviation ``std``, either of which may be symbolic."""
        like = self._like(size, "normal", (avg, std))
        z = NormalDraw(self._next_seed(), _float_dtype(dtype))(like, self.step)
        return _affine(z, avg, std, 0.0, 1.0)

    def __getattr__(self, attr):
        if attr in ("multinomial", "choice", "permutation", "random_integers", "shuffle_row_elements"):
            raise GraphnetError(f"RandomStreams.{attr} is not supported by graphnet (binomial with n=1, "
                                "uniform and normal are)")
        raise AttributeError(attr)


def _is_number(value):
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def _affine(draw, shift, scale, no_shift, no_scale):
    """``shift + scale * draw``, skipping the identity parts; the result keeps ``draw``'s dtype."""
    out = draw
    if not (_is_number(scale) and scale == no_scale):
        out = ew.mul(out, scale)
    if not (_is_number(shift) and shift == no_shift):
        out = ew.add(out, shift)
    return ew.cast(out, draw.dtype)


MRG_RandomStreams = RandomStreams
