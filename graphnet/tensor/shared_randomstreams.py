"""Theano's ``RandomStreams`` on graphnet's counter-based RNG.

    srng = RandomStreams(seed=1234)
    mask = srng.binomial(size=x.shape, n=1, p=0.8, dtype=graphnet.config.floatX)
    corrupted = mask * x

Every element is a pure function of (draw seed, step, flat element index)
(``graphnet.ops.rng``), as in dropout: no generator state, the same bits on every
backend and thread count, and a mask is regenerated rather than stored. Each
call of ``binomial``/``uniform``/``normal`` gets its own draw seed derived from
the stream's seed; all draws of one stream share one step counter, a shared
variable.

**When the draws change.** The step counter advances through its
``default_update``, which graphnet applies only in functions compiled with
``training=True`` (as for dropout and batch norm). Compile the functions that
should see fresh noise on every call with ``training=True``, or pass
``updates=srng.updates()`` (plus your own) explicitly; a function compiled
without either draws the same numbers on every call, which is what an
evaluation function usually wants.
"""
from __future__ import annotations

import itertools

import numpy as np

from graphnet import config
from graphnet.ops import rng
from graphnet.errors import DTypeError, GraphnetError
from graphnet.graph.ir import Apply, Op, SharedVariable, TensorType, as_variable
from graphnet.ops import elementwise as ew
from graphnet.ops.elementwise import Elemwise, lit
from graphnet.ops.indexing import ShapeTuple, alloc


def _check_step(step, hint):
    if step.ndim != 0 or step.dtype.kind not in "iu":
        raise DTypeError(f"random draw: the step counter must be an integer scalar{hint}")


class BernoulliMask(Elemwise):
    """1 with probability ``p``, else 0, for every element of ``like``'s shape.

    Elementwise, so it fuses into its consumer (``mask * x``): the kernel
    draws each bit from (seed, step, element index) with the same
    ``keep_mask`` as dropout.
    """

    nin = 2
    __props__ = ("p", "seed", "dtype")
    uses_element_index = True

    def __init__(self, p, seed, dtype):
        self.p, self.seed, self.dtype = float(p), int(seed), np.dtype(dtype)

    def output_dtype(self, like, step):
        return self.dtype

    def make_node(self, like, step):
        node = super().make_node(like, step)
        _check_step(node.inputs[1], self.error_hint())
        return node

    def impl(self, like, step):
        return rng.keep_mask_array(self.seed, int(step), np.shape(like), self.p).astype(self.dtype)

    def scalar(self, args, dtype):
        return (f"({lit(1, dtype)} if keep_mask({self.seed}, {args[1]}, index, {lit(self.p, 'float64')}) "
                f"else {lit(0, dtype)})")

    def grad(self, inputs, outputs, g):
        return [None, None]


class _ContinuousDraw(Op):
    """Base of uniform and normal draws of ``like``'s shape (run by NumPy on every backend)."""

    __props__ = ("a", "b", "seed", "dtype")

    def __init__(self, a, b, seed, dtype):
        self.a, self.b, self.seed, self.dtype = float(a), float(b), int(seed), np.dtype(dtype)

    def make_node(self, like, step):
        like, step = as_variable(like), as_variable(step)
        _check_step(step, self.error_hint())
        return Apply(self, [like, step], [TensorType(self.dtype, like.shape)])

    def infer_shape(self, node, shapes):
        return [shapes[0]]

    def grad(self, inputs, outputs, g):
        return [None, None]


class UniformDraw(_ContinuousDraw):
    """Uniform in ``[a, b)``."""

    def perform(self, inputs):
        u = rng.uniform01_array(self.seed, int(inputs[1]), np.shape(inputs[0]))
        return [(self.a + (self.b - self.a) * u).astype(self.dtype)]


class NormalDraw(_ContinuousDraw):
    """Normal with mean ``a`` and standard deviation ``b`` (Box-Muller on two uniforms per element)."""

    def perform(self, inputs):
        shape = np.shape(inputs[0])
        u = rng.uniform01_array(self.seed, int(inputs[1]), (int(np.prod(shape, dtype=np.int64)), 2))
        radius = np.sqrt(-2.0 * np.log1p(-u[:, 0]))  # 1 - u is in (0, 1]: no log(0)
        z = radius * np.cos(2.0 * np.pi * u[:, 1])
        return [(self.a + self.b * z).reshape(shape).astype(self.dtype)]


class RandomStreams:
    """A source of random tensors in Theano's API: ``binomial``, ``uniform``, ``normal``."""

    def __init__(self, seed=None):
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, np.uint32)[0])
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise GraphnetError(f"RandomStreams: seed must be a non-negative integer, got {seed!r}")
        self.base_seed = int(seed)
        self._draws = itertools.count()
        self.step = SharedVariable(np.int64(0), name=f"random_streams_step_{seed}")
        self.step.default_update = ew.add(self.step, 1)

    def updates(self):
        """``[(step, step + 1)]``: pass to ``gn.function(updates=...)`` to advance without training=True."""
        return [(self.step, ew.add(self.step, 1))]

    def _next_seed(self):
        return int(np.random.SeedSequence([self.base_seed, next(self._draws)]).generate_state(1, np.uint32)[0])

    @staticmethod
    def _like(size, what):
        """A variable of shape ``size``: ``x`` itself for ``size=x.shape``, else a filled array."""
        if size is None:
            raise GraphnetError(f"RandomStreams.{what}: give size=..., e.g. size=x.shape or (n, 100)")
        if isinstance(size, ShapeTuple):
            return size.variable
        size = (size,) if isinstance(size, (int, np.integer)) or getattr(size, "ndim", None) == 0 else tuple(size)
        return alloc(np.zeros((), np.int8), *size)

    def binomial(self, size=None, n=1, p=0.5, ndim=None, dtype="int64"):
        """0/1 draws, 1 with probability ``p`` (``n`` must be 1: a Bernoulli mask)."""
        if n != 1:
            raise GraphnetError(f"RandomStreams.binomial: only n=1 (a Bernoulli mask) is supported, got n={n}")
        if not isinstance(p, (int, float, np.floating)) or not 0 <= p <= 1:
            raise GraphnetError(f"RandomStreams.binomial: p must be a number in [0, 1], got {p!r}")
        dtype = config.floatX if dtype == "floatX" else dtype
        return BernoulliMask(p, self._next_seed(), dtype)(self._like(size, "binomial"), self.step)

    def uniform(self, size=None, low=0.0, high=1.0, ndim=None, dtype=None):
        dtype = config.floatX if dtype in (None, "floatX") else dtype
        return UniformDraw(low, high, self._next_seed(), dtype)(self._like(size, "uniform"), self.step)

    def normal(self, size=None, avg=0.0, std=1.0, ndim=None, dtype=None):
        dtype = config.floatX if dtype in (None, "floatX") else dtype
        return NormalDraw(avg, std, self._next_seed(), dtype)(self._like(size, "normal"), self.step)


MRG_RandomStreams = RandomStreams
