"""Random well-typed graphs for differential fuzzing, as replayable recipes.

A :class:`Recipe` is a straight-line program: graph inputs (placeholders with
``None`` batch dimensions, shared variables), then steps that each apply one
graphnet op to earlier values, then the fetched outputs and, optionally, a
random scalar cost whose gradients are fetched too and used as SGD updates of
the shared variables. :func:`recipes` is the hypothesis strategy; ``build``
turns a recipe into graph variables, and ``repr(recipe)`` prints it as the
graphnet code a person would write, which is what a failing example shows.

Well-typed by construction, numerically tame by construction: every value
carries an interval that bounds it, and ops with a restricted domain (log,
sqrt, division, pow) get an argument that the interval proves is inside it
(wrapped as ``x * x + 0.5`` or ``tanh(x)`` otherwise). Magnitudes stay small,
so differences between backends are rounding, not cancellation, and the
tolerances of the differential test can stay tight.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

import graphnet as gn
import graphnet.tensor as T
from graphnet import ops
from graphnet.errors import GraphnetError
from graphnet.graph import graph_inputs
from graphnet.ops.indexing import arange
from graphnet.ops.elementwise import DropoutScale
from graphnet.ops.nn import ModeSelect
from graphnet.ops.reduce import SizeOf

FLOATS = ("float32", "float64")
LARGEST = 1e3        # values beyond this bound are squashed with tanh before further use


# ------------------------------------------------------------------ the recipe
@dataclass
class Input:
    kind: str              # "placeholder" | "shared"
    dtype: str
    static: tuple          # static shape (None: known at run time)
    runtime: tuple         # the shape fed
    values: str = "normal"  # "normal" | "integers" | "positive" | "labels:<classes>" | "bool"


@dataclass
class Step:
    op: str
    args: tuple            # indices of earlier steps' values ("input" steps make the graph inputs)
    params: tuple = ()


@dataclass
class Recipe:
    inputs: list
    steps: list
    outputs: list          # indices of fetched values
    cost: int = None       # index of the float value whose sum (times weights) is the cost
    cost_weights: int = 0  # seed of the cost's constant weights (0: plain sum)
    wrt: list = field(default_factory=list)  # input indices differentiated
    sgd: bool = False      # apply W <- W - 0.1 * dW to every differentiated shared input
    assign: list = field(default_factory=list)  # (shared input index, value index): plain updates
    training: bool = False
    data_seed: int = 0
    shapes: list = field(default_factory=list, repr=False)  # run-time shape of every value

    def __repr__(self):
        lines = []
        for k, step in enumerate(self.steps):
            if step.op == "input":
                inp = self.inputs[step.params[0]]
                if inp.kind == "placeholder":
                    lines.append(f"v{k} = gn.placeholder('v{k}', {inp.static}, '{inp.dtype}')"
                                 f"  # fed {inp.runtime}, {inp.values}")
                else:
                    lines.append(f"v{k} = gn.shared(<{inp.dtype} {inp.runtime}, {inp.values}>, name='v{k}')")
                continue
            args = ", ".join(f"v{a}" for a in step.args)
            params = ", ".join(repr(p) for p in step.params)
            lines.append(f"v{k} = {step.op}({args}{', ' if args and params else ''}{params})")
        lines.append(f"outputs = [{', '.join(f'v{o}' for o in self.outputs)}]")
        if self.cost is not None:
            weights = f" * weights(seed={self.cost_weights})" if self.cost_weights else ""
            lines.append(f"cost = gn.sum(v{self.cost}{weights}); "
                         f"grads = gn.grad(cost, [{', '.join(f'v{w}' for w in self.wrt)}])")
            if self.sgd:
                lines.append("updates = [(W, W - 0.1 * dW) for every shared W among them]")
        for target, value in self.assign:
            lines.append(f"updates += [(v{target}, v{value})]")
        lines.append(f"training={self.training}, data_seed={self.data_seed}")
        return "Recipe:\n    " + "\n    ".join(lines)


# ------------------------------------------------------------------- the ops
def _dropout(x, step, keep_prob, seed):
    return DropoutScale(keep_prob, seed)(x, step)


#: op name -> how to apply it to variables (and the step's params)
APPLY = {
    "gn.add": ops.add, "gn.sub": ops.sub, "gn.mul": ops.mul, "gn.true_div": ops.true_div,
    "gn.maximum": ops.maximum, "gn.minimum": ops.minimum, "gn.pow": lambda a, e: ops.pow(a, e),
    "gn.neg": ops.neg, "gn.abs": ops.abs, "gn.sign": ops.sign, "gn.exp": ops.exp, "gn.log": ops.log,
    "gn.sqrt": ops.sqrt, "gn.sigmoid": ops.sigmoid, "gn.tanh": ops.tanh, "gn.softplus": ops.softplus,
    "gn.relu": ops.relu, "gn.leaky_relu": ops.leaky_relu, "gn.elu": ops.elu,
    "gn.less": ops.less, "gn.less_equal": ops.less_equal, "gn.greater": ops.greater,
    "gn.greater_equal": ops.greater_equal, "gn.eq": ops.eq, "gn.neq": ops.neq,
    "gn.where": ops.where, "gn.cast": ops.cast, "ops.second": ops.second,
    "ops.zeros_like": ops.zeros_like, "ops.ones_like": ops.ones_like,
    "gn.sum": lambda x, axis, keepdims: ops.sum(x, axis, keepdims),
    "gn.max": lambda x, axis, keepdims: ops.max(x, axis, keepdims),
    "gn.min": lambda x, axis, keepdims: ops.min(x, axis, keepdims),
    "gn.mean": lambda x, axis, keepdims: ops.mean(x, axis, keepdims),
    "gn.var": lambda x, axis, keepdims: ops.var(x, axis, keepdims),
    "gn.moments[0]": lambda x, axis, keepdims: ops.moments(x, axis, keepdims)[0],
    "gn.argmax": lambda x, axis, keepdims: ops.argmax(x, axis, keepdims),
    "gn.size_of": lambda x, axis: ops.size_of(x, axis),
    "gn.dot": ops.dot, "gn.softmax": ops.softmax, "gn.log_softmax": ops.log_softmax,
    "ops.softmax_cross_entropy": ops.softmax_cross_entropy,
    "gn.transpose": ops.transpose, "gn.reshape": ops.reshape, "gn.expand_dims": ops.expand_dims,
    "gn.squeeze": ops.squeeze, "ops.sum_to": lambda g, shape: ops.sum_to(g, shape),
    "gn.prelu": ops.prelu, "gn.maxout": ops.maxout, "ops.mode_select": ops.mode_select,
    "DropoutScale": _dropout, "gn.constant": lambda value, dtype: gn.constant(value, dtype=dtype),
    "x[key]": lambda x, *rest: x[_key(rest)],
    "T.inc_subtensor": lambda x, y, *rest: T.inc_subtensor(x[_key(rest)], y),
    "T.set_subtensor": lambda x, y, *rest: T.set_subtensor(x[_key(rest)], y),
    "gn.alloc": lambda value, *rest: gn.alloc(value, *_key(rest)),
    "gn.arange": lambda n, start: arange(start, n),
    "T.nnet.nll": lambda z, y: ops.neg(ops.log(ops.softmax(z))[arange(ops.size_of(y, 0)), y]),
}


def _key(rest):
    """An index key from a step's trailing variables and its pattern (its last param).

    The pattern holds ints, slices, None and the marker ``ARG``, which takes the
    next variable: a symbolic bound ``x[:n]``, an index array ``x[idx]`` or a
    symbolic dimension of ``alloc``. Keeping variables out of the params keeps
    recipes replayable (``build`` rebuilds them in float64).
    """
    *variables, pattern = rest
    variables = iter(variables)

    def fill(entry):
        if entry == ARG:
            return next(variables)
        if isinstance(entry, slice):
            return slice(*(next(variables) if part == ARG else part
                           for part in (entry.start, entry.stop, entry.step)))
        return entry
    return tuple(fill(entry) for entry in pattern)


#: the marker of a variable in an index pattern (see ``_key``)
ARG = "ARG"
# Basic and integer-array indexing are one front end; two names let the fuzzer count both.
APPLY["x[idx]"], APPLY["T.inc_subtensor[idx]"] = APPLY["x[key]"], APPLY["T.inc_subtensor"]


@dataclass
class Built:
    placeholders: list     # fed in this order
    values: list           # every value of the recipe, by index
    outputs: list          # the recipe's outputs, then (cost and gradients) if it has a cost
    updates: list


def build(recipe, float_dtype=None):
    """The graph of ``recipe`` as a :class:`Built`.

    ``float_dtype`` rebuilds every float input and constant in that dtype (the
    float64 twin of a float32 graph), keeping the structure.
    """
    def dtype_of(dtype):
        return float_dtype if float_dtype and dtype in FLOATS else dtype

    values, placeholders = [], []
    for k, step in enumerate(recipe.steps):
        if step.op == "input":
            inp = recipe.inputs[step.params[0]]
            if inp.kind == "placeholder":
                var = gn.placeholder(f"v{k}", inp.static, dtype_of(inp.dtype))
                placeholders.append(var)
            else:
                var = gn.shared(np.zeros(inp.runtime, dtype_of(inp.dtype)), name=f"v{k}", shape=inp.static)
            var.recipe_input = inp
            values.append(var)
            continue
        params = step.params
        if step.op in ("gn.constant", "gn.cast"):
            params = params[:-1] + (dtype_of(params[-1]),)
        values.append(APPLY[step.op](*[values[a] for a in step.args], *params))
    outputs = [values[o] for o in recipe.outputs]
    updates = []
    if recipe.cost is not None:
        target = values[recipe.cost]
        if recipe.cost_weights:
            shape = recipe.shapes[recipe.cost]
            weights = np.random.default_rng(recipe.cost_weights).uniform(0.5, 1.5, shape)
            target = ops.mul(target, gn.constant(weights.astype(target.dtype)))
        cost = ops.sum(target)
        wrt = [values[w] for w in recipe.wrt]
        grads = gn.grad(cost, wrt)
        outputs += [cost] + grads
        if recipe.sgd:
            updates = [(w, w - 0.1 * g) for w, g in zip(wrt, grads) if isinstance(w, gn.SharedVariable)]
    updates += [(values[target], values[value]) for target, value in recipe.assign]
    return Built(placeholders, values, outputs, updates)


def _infer(var, shapes):
    """The run-time shape of ``var`` given ``shapes`` of graph inputs, by the ops' own shape rules."""
    if var in shapes:
        return shapes[var]
    if var.owner is None:
        shapes[var] = var.data.shape if isinstance(var, gn.Constant) else None
        return shapes[var]
    node = var.owner
    in_shapes = [_infer(inp, shapes) for inp in node.inputs]
    if isinstance(node.op, ModeSelect):
        shapes[var] = in_shapes[0]
        return shapes[var]
    if getattr(node.op, "infer_shape_needs_values", False):
        stand_ins = [_stand_in(inp, shapes) for inp in node.inputs]
        out_shapes = node.op.infer_shape(node, in_shapes, values=stand_ins)
    else:
        out_shapes = node.op.infer_shape(node, in_shapes)
    for out, shape in zip(node.outputs, out_shapes):
        shapes[out] = tuple(shape)
    return shapes[var]


def _stand_in(var, shapes):
    """A value of ``var`` good enough for a value-dependent ``infer_shape``: the true value
    of sizes and constants (and of small integer arithmetic on them), zeros otherwise
    (data and index arrays, whose values do not change a shape; zero is a valid index)."""
    if isinstance(var, gn.Constant):
        return var.data
    node = var.owner
    if node is not None and isinstance(node.op, SizeOf):
        return np.int64(np.prod([shapes[node.inputs[0]][a] for a in node.op.axis]))
    if node is not None and var.ndim == 0 and var.dtype.kind in "iu":
        inputs = [_stand_in(inp, shapes) for inp in node.inputs]
        return node.op.perform(inputs)[node.outputs.index(var)]
    return np.zeros(_infer(var, shapes), var.dtype)  # (an op's inner variable may not be inferred yet)


def input_values(recipe, built):
    """{input variable: array} for every placeholder and shared input, drawn from ``data_seed``."""
    rng = np.random.default_rng(recipe.data_seed)
    inputs = [v for v in built.values if hasattr(v, "recipe_input")]
    return {var: make_values(rng, var.recipe_input, var.dtype) for var in inputs}


def make_values(rng, spec, dtype):
    shape = spec.runtime
    if spec.values.startswith("labels:"):
        return rng.integers(0, int(spec.values.split(":")[1]), shape).astype(dtype)
    if spec.values == "bool":
        return rng.random(shape) < 0.5
    if spec.values == "integers":
        return rng.integers(-3, 4, shape).astype(dtype)
    if spec.values == "special":
        # Mostly ordinary values, some NaN, +-Inf, +-0 and huge ones: how backends propagate them.
        values = rng.uniform(-2.0, 2.0, shape)
        specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30])
        mask = rng.random(shape) < 0.3
        values[mask] = rng.choice(specials, size=int(np.count_nonzero(mask)))
        return np.asarray(values, dtype=dtype)
    if spec.values == "positive":
        return rng.uniform(0.5, 2.0, shape).astype(dtype)
    return rng.uniform(-2.0, 2.0, shape).astype(dtype)


# ------------------------------------------------------------- the strategy
class _Pool:
    """The values drawn so far: variable, run-time shape, interval bound."""

    def __init__(self, recipe):
        self.recipe = recipe
        self.vars, self.shapes, self.bounds = [], [], []

    def add(self, var, shape, bound):
        self.vars.append(var)
        self.shapes.append(tuple(shape))
        self.bounds.append(bound)
        return len(self.vars) - 1

    def apply(self, op, args, params=(), bound=None):
        """Apply ``op``; record the step; return its index (or None if ill-typed at run time)."""
        if any(a is None for a in args):
            return None
        try:
            var = APPLY[op](*[self.vars[a] for a in args], *params)
            shape = _infer(var, {v: s for v, s in zip(self.vars, self.shapes)})
        except GraphnetError:
            return None
        if bound is None:
            bound = bound_of(op, [self.bounds[a] for a in args], params, [self.shapes[a] for a in args], shape)
        self.recipe.steps.append(Step(op, tuple(args), tuple(params)))
        return self.add(var, shape, bound)

    def is_float(self, k):
        return self.vars[k].dtype.kind == "f"

    def numeric(self, k):
        return self.vars[k].dtype.kind in "iuf"


def _mag(b):
    m = max(abs(b[0]), abs(b[1]))
    return math.inf if math.isnan(m) or math.isnan(b[0]) or math.isnan(b[1]) else m


def bound_of(op, bounds, params, in_shapes, out_shape):
    """An interval holding every value of ``op``'s output (see the module docstring)."""
    b = bounds[0] if bounds else (0, 0)
    n_in = max(1, int(np.prod(in_shapes[0]))) if in_shapes else 1
    n_out = max(1, int(np.prod(out_shape)))
    if op == "gn.add":
        return (b[0] + bounds[1][0], b[1] + bounds[1][1])
    if op == "gn.sub":
        return (b[0] - bounds[1][1], b[1] - bounds[1][0])
    if op in ("gn.mul", "gn.prelu"):
        o = bounds[1]
        corners = [b[0] * o[0], b[0] * o[1], b[1] * o[0], b[1] * o[1]]
        lo, hi = min(corners), max(corners)
        return (min(lo, b[0]), max(hi, b[1])) if op == "gn.prelu" else (lo, hi)
    if op == "gn.true_div":
        m = _mag(b) / min(abs(bounds[1][0]), abs(bounds[1][1]))
        return (-m, m)
    if op == "gn.pow":
        e = params[0]
        corners = [b[0] ** e, b[1] ** e]
        return (min(corners), max(corners))
    if op == "gn.neg":
        return (-b[1], -b[0])
    if op == "gn.abs":
        return (0, _mag(b))
    if op in ("gn.sign", "gn.tanh"):
        return (-1, 1)
    if op == "gn.exp":
        return (math.exp(b[0]), math.exp(b[1]))
    if op == "gn.log":
        return (math.log(b[0]), math.log(b[1]))
    if op == "gn.sqrt":
        return (math.sqrt(b[0]), math.sqrt(b[1]))
    if op in ("gn.sigmoid", "gn.softmax", "gn.less", "gn.less_equal", "gn.greater", "gn.greater_equal",
              "gn.eq", "gn.neq"):
        return (0, 1)
    if op == "gn.softplus":
        return (0, max(b[1], 0) + 1)
    if op in ("gn.relu",):
        return (max(b[0], 0), max(b[1], 0))
    if op in ("gn.leaky_relu", "gn.elu"):
        return (min(b[0], -1), max(b[1], 0))
    if op in ("gn.maximum", "gn.minimum", "ops.mode_select"):
        return (min(b[0], bounds[1][0]), max(b[1], bounds[1][1]))
    if op == "gn.where":
        return (min(bounds[1][0], bounds[2][0]), max(bounds[1][1], bounds[2][1]))
    if op == "gn.cast":
        return (min(b[0], 0), max(b[1], 0))
    if op == "ops.second":
        return bounds[1]
    if op in ("gn.transpose", "gn.reshape", "gn.expand_dims", "gn.squeeze", "gn.max", "gn.min", "gn.mean",
              "gn.moments[0]", "gn.maxout"):
        return b
    if op == "ops.zeros_like":
        return (0, 0)
    if op == "ops.ones_like":
        return (1, 1)
    if op in ("gn.sum", "ops.sum_to"):
        k = n_in // n_out
        return (min(b[0] * k, b[0]), max(b[1] * k, b[1]))
    if op == "gn.var":
        return (0, (b[1] - b[0]) ** 2)
    if op in ("gn.argmax", "gn.size_of"):
        return (0, n_in)
    if op == "gn.dot":
        k = in_shapes[0][-1]
        m = k * _mag(b) * _mag(bounds[1])
        return (-m, m)
    if op == "gn.log_softmax":
        return (-(b[1] - b[0]) - math.log(max(in_shapes[0][-1], 1)) - 1, 0)
    if op == "ops.softmax_cross_entropy":
        return (0, (b[1] - b[0]) + math.log(max(in_shapes[0][-1], 1)) + 1)
    if op == "DropoutScale":
        return (min(b[0] / params[0], 0), max(b[1] / params[0], 0))
    if op in ("x[key]", "x[idx]", "gn.alloc"):
        return b
    if op == "T.set_subtensor":
        return (min(b[0], bounds[1][0]), max(b[1], bounds[1][1]))
    if op == "gn.arange":
        return (0, b[1])
    if op == "T.nnet.nll":
        return (0, (b[1] - b[0]) + math.log(max(in_shapes[0][-1], 1)) + 1)
    raise AssertionError(f"no bound rule for {op}")


UNARY_FLOAT = ["gn.exp", "gn.log", "gn.sqrt", "gn.sigmoid", "gn.tanh", "gn.softplus", "gn.relu",
               "gn.leaky_relu", "gn.elu", "gn.neg", "gn.abs", "gn.sign", "gn.pow"]
BINARY = ["gn.add", "gn.sub", "gn.mul", "gn.true_div", "gn.maximum", "gn.minimum"]
COMPARE = ["gn.less", "gn.less_equal", "gn.greater", "gn.greater_equal", "gn.eq", "gn.neq"]
REDUCE = ["gn.sum", "gn.max", "gn.min", "gn.mean", "gn.var", "gn.moments[0]", "gn.argmax"]
SHAPE = ["gn.transpose", "gn.reshape", "gn.expand_dims", "gn.squeeze", "ops.sum_to"]
OTHER = ["gn.dot", "gn.softmax", "gn.log_softmax", "ops.softmax_cross_entropy", "gn.where", "gn.cast",
         "ops.second", "ops.zeros_like", "ops.ones_like", "gn.prelu", "gn.maxout", "ops.mode_select",
         "DropoutScale", "gn.size_of"]
INDEX = ["x[key]", "x[idx]", "T.inc_subtensor", "T.inc_subtensor[idx]", "T.set_subtensor", "gn.alloc",
         "gn.arange", "T.nnet.nll"]
#: every op a recipe may use; the test asserts the fuzzer reaches them all
ALL_OPS = UNARY_FLOAT + BINARY + COMPARE + REDUCE + SHAPE + OTHER + INDEX
KIND_WEIGHTS = [("unary", 5), ("binary", 6), ("compare", 1), ("reduce", 4), ("shape", 3), ("other", 4),
                ("index", 4)]


@st.composite
def recipes(draw, max_steps=10):
    """A random :class:`Recipe` (see the module docstring)."""
    recipe = Recipe([], [], [], data_seed=draw(st.integers(0, 2**32 - 1)))
    pool = _Pool(recipe)
    float_dtype = draw(st.sampled_from(FLOATS))
    rank = draw(st.sampled_from([2, 0, 1, 2, 3, 3]))
    domain = tuple(draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank)))

    def new_input(dtype=None, shape=None, values="normal", kind=None, static=None):
        """A placeholder or shared input of a broadcastable sub-shape of ``domain`` (or ``shape``)."""
        if shape is None:
            keep = draw(st.integers(0, len(domain)))
            shape = tuple(d if draw(st.integers(0, 3)) else 1 for d in domain[len(domain) - keep:])
        if static is None:
            static = tuple(None if d != 1 and draw(st.integers(0, 3)) == 0 else d for d in shape)
        kind = kind or draw(st.sampled_from(["placeholder", "placeholder", "shared"]))
        if kind == "shared":
            static = shape  # shared values have a fixed shape here
        dtype = dtype or float_dtype
        k = len(pool.vars)
        recipe.steps.append(Step("input", (), (len(recipe.inputs),)))
        recipe.inputs.append(Input(kind, dtype, static, shape, values))
        var = (gn.placeholder(f"v{k}", static, dtype) if kind == "placeholder"
               else gn.shared(np.zeros(shape, dtype), name=f"v{k}", shape=static))
        var.recipe_input = recipe.inputs[-1]
        bound = {"normal": (-2, 2), "integers": (-3, 3), "positive": (0.5, 2), "bool": (0, 1),
                 "special": (-math.inf, math.inf)}.get(values)
        if bound is None:  # "labels:<classes>"
            bound = (0, int(values.split(":")[1]) - 1)
        return pool.add(var, shape, bound)

    for _ in range(draw(st.integers(1, 3))):
        new_input(values=draw(st.sampled_from(["normal", "normal", "positive", "integers", "special"])))
    if draw(st.integers(0, 4)) == 0:
        new_input(dtype=draw(st.sampled_from(["int32", "int64", "bool", "float32", "float64"])),
                  values="integers")

    def pick(where=lambda k: True, recent=True):
        candidates = [k for k in range(len(pool.vars)) if where(k)]
        if not candidates:
            return None
        if recent and draw(st.booleans()):
            return candidates[-1]   # chains on the newest value: what the fuser fuses
        return draw(st.sampled_from(candidates))

    def tame(k):
        """``k``, squashed with tanh if its bound is large (keeps later ops well-conditioned)."""
        if _mag(pool.bounds[k]) > LARGEST and pool.is_float(k):
            return pool.apply("gn.tanh", (k,))
        return k

    def positive(k, lowest=0.1):
        """``k`` if it is provably >= lowest, else ``k * k + 0.5``."""
        if pool.bounds[k][0] >= lowest:
            return k
        top = _mag(pool.bounds[k]) ** 2
        sq = pool.apply("gn.mul", (k, k), bound=(0, top))
        return pool.apply("gn.add", (sq, const(0.5)), bound=(0.5, top + 0.5))

    def const(value):
        # A 0-d float constant of the graph's dtype, as an input-less step.
        return pool.apply("gn.constant", (), (value, float_dtype), bound=(value, value))

    def partner(k, numeric_only=True):
        """A value that broadcasts with ``k`` at build time and at run time, or a fresh input that does."""
        def fits(j):
            if numeric_only and not pool.numeric(j):
                return False
            try:
                node = ops.add(pool.vars[k], pool.vars[j]) if pool.numeric(j) and pool.numeric(k) else None
                if node is not None:
                    _infer(node, {pool.vars[k]: pool.shapes[k], pool.vars[j]: pool.shapes[j]})
                return node is not None
            except GraphnetError:
                return False
        j = pick(fits)
        if j is None or draw(st.integers(0, 3)) == 0:
            j = broadcasting_input(pool.shapes[k], pool.vars[k].type.shape)
        return j

    def broadcasting_input(shape, static_shape):
        """A fresh input whose shape broadcasts to ``shape``: trailing axes, some of them 1."""
        keep = draw(st.integers(0, len(shape)))
        sub = tuple(d if draw(st.integers(0, 2)) else 1 for d in shape[len(shape) - keep:])
        static_k = static_shape[len(shape) - keep:]
        static = tuple(None if s is None and d != 1 and draw(st.booleans()) else d
                       for s, d in zip(static_k, sub))
        return new_input(shape=sub, static=static)

    for _ in range(draw(st.integers(3, max_steps))):
        kind = draw(st.sampled_from([k for k, w in KIND_WEIGHTS for _ in range(w)]))
        if kind == "unary":
            op = draw(st.sampled_from(UNARY_FLOAT))
            k = pick(pool.numeric)
            if op in ("gn.exp",):
                k = tame(k)
                if pool.bounds[k][1] > 5:
                    k = pool.apply("gn.tanh", (k,))
            elif op in ("gn.log", "gn.sqrt"):
                k = positive(tame(k))
            elif op == "gn.pow":
                if not pool.is_float(k):
                    continue
                k = positive(tame(k))
                pool.apply(op, (k,), (draw(st.sampled_from([2.0, 3.0, 0.5, -1.0, 1.5])),))
                continue
            elif op in ("gn.leaky_relu", "gn.elu"):
                alpha = draw(st.sampled_from([0.01, 0.2, 1.0]))
                pool.apply(op, (k,), (alpha,))
                continue
            pool.apply(op, (k,))
        elif kind in ("binary", "compare"):
            op = draw(st.sampled_from(BINARY if kind == "binary" else COMPARE))
            k = tame(pick(pool.numeric))
            j = tame(partner(k))
            if draw(st.booleans()):
                k, j = j, k
            if op == "gn.true_div":
                j = positive(j, lowest=0.25)
            pool.apply(op, (k, j))
        elif kind == "reduce":
            op = draw(st.sampled_from(REDUCE))
            k = pick(lambda k: pool.numeric(k) and pool.vars[k].ndim > 0) if op != "gn.sum" else pick(
                pool.numeric)
            if k is None:
                continue
            ndim = pool.vars[k].ndim
            if op == "gn.argmax":
                axis = draw(st.integers(-ndim, ndim - 1))
            elif ndim == 0 or draw(st.integers(0, 4)) == 0:
                axis = None
            else:
                axes = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
                axis = tuple(axes) if len(axes) > 1 or draw(st.booleans()) else axes[0]
            if op in ("gn.max", "gn.min", "gn.argmax") and 0 in pool.shapes[k]:
                continue
            pool.apply(op, (k,), (axis, draw(st.booleans())))
        elif kind == "shape":
            op = draw(st.sampled_from(SHAPE))
            k = pick()
            var, shape = pool.vars[k], pool.shapes[k]
            if op == "gn.transpose":
                pool.apply(op, (k,), (tuple(draw(st.permutations(range(var.ndim)))),))
            elif op == "gn.reshape":
                target = _factor(draw, int(np.prod(shape)))
                if None in var.type.shape or draw(st.booleans()):
                    target = list(target)
                    target[draw(st.integers(0, len(target) - 1))] = -1
                if 0 in shape and -1 in target:
                    continue
                pool.apply(op, (k,), (tuple(target),))
            elif op == "gn.expand_dims":
                if var.ndim >= 4:
                    continue
                pool.apply(op, (k,), (draw(st.integers(-(var.ndim + 1), var.ndim)),))
            elif op == "gn.squeeze":
                ones = [a for a, d in enumerate(var.type.shape) if d == 1]
                if not ones:
                    continue
                pool.apply(op, (k,), (tuple(draw(st.lists(st.sampled_from(ones), min_size=1, unique=True))),))
            else:  # sum_to: undo a broadcast, as gradients do
                if var.ndim == 0 or not pool.numeric(k):
                    continue
                keep = draw(st.integers(0, var.ndim))
                target = tuple(d if draw(st.booleans()) else 1 for d in var.type.shape[var.ndim - keep:])
                if None in target:
                    continue
                pool.apply(op, (k,), (target,))
        elif kind == "index":
            _index(draw, pool, draw(st.sampled_from(INDEX)), new_input, tame, pick, broadcasting_input, float_dtype)
        else:
            op = draw(st.sampled_from(OTHER))
            _other(draw, pool, op, new_input, tame, pick, partner, float_dtype)

    # Outputs: the newest value and a few others; a cost over a float value.
    n = len(pool.vars)
    stepped = [k for k, step in enumerate(recipe.steps) if step.op not in ("input", "gn.constant")] or [n - 1]
    # Fetch the values nothing else reads, so no step is dead code; in one graph of
    # three fetch every value, so none is hidden behind a later ones_like or compare
    # (fetched intermediates also make the fuser keep them in memory).
    read = {a for step in recipe.steps for a in step.args}
    leaves = [k for k in stepped if k not in read]
    fetch_all = draw(st.integers(0, 2)) == 0
    recipe.outputs = sorted({stepped[-1], *leaves, *(stepped if fetch_all else
                                                      draw(st.lists(st.sampled_from(stepped), max_size=1)))})
    floats = [k for k in stepped if pool.is_float(k)]
    differentiable = [k for k, step in enumerate(recipe.steps)
                      if step.op == "input" and recipe.inputs[step.params[0]].dtype in FLOATS]
    if floats and differentiable and draw(st.integers(0, 2)):
        recipe.cost = draw(st.sampled_from(floats))
        recipe.cost_weights = draw(st.sampled_from([0, draw(st.integers(1, 2**16))]))
        recipe.wrt = draw(st.lists(st.sampled_from(differentiable), min_size=1, unique=True))
        recipe.sgd = draw(st.booleans())
    # Plain updates: a shared input takes a computed value of its shape (views of
    # other shared inputs included), whether or not the graph reads it.
    updated = set(recipe.wrt) if recipe.sgd else set()
    for k, step in enumerate(recipe.steps):
        if step.op != "input" or recipe.inputs[step.params[0]].kind != "shared" or k in updated:
            continue
        target = pool.vars[k]
        fits = [j for j in range(len(pool.vars)) if j != k and pool.shapes[j] == pool.shapes[k]
                and pool.vars[j].type.shape == target.type.shape and pool.vars[j].dtype == target.dtype]
        if fits and draw(st.integers(0, 2)) == 0:
            recipe.assign.append((k, draw(st.sampled_from(fits))))
            updated.add(k)
    recipe.training = draw(st.booleans())
    recipe.shapes = list(pool.shapes)
    return recipe


def _other(draw, pool, op, new_input, tame, pick, partner, float_dtype):
    if op == "gn.dot":
        k = pick(lambda k: pool.is_float(k) and pool.vars[k].ndim in (1, 2))
        if k is None:
            return
        k = tame(k)
        inner = pool.shapes[k][-1]
        inner_static = pool.vars[k].type.shape[-1]
        if inner_static is None:
            return
        out = draw(st.integers(1, 4))
        w_shape = draw(st.sampled_from([(inner, out), (inner,)]))
        w = new_input(shape=w_shape, static=w_shape, kind="shared")
        args = (k, w)
        return pool.apply(op, args)
    if op in ("gn.softmax", "gn.log_softmax"):
        k = pick(lambda k: pool.is_float(k) and pool.vars[k].ndim > 0)
        if k is None:
            return
        return pool.apply(op, (tame(k),), (draw(st.integers(-pool.vars[k].ndim, pool.vars[k].ndim - 1)),))
    if op == "ops.softmax_cross_entropy":
        k = pick(lambda k: pool.is_float(k) and pool.vars[k].ndim == 2 and pool.shapes[k][1] > 0)
        if k is None:
            return
        rows, classes = pool.shapes[k]
        static = (pool.vars[k].type.shape[0],) if draw(st.booleans()) else (None,)
        labels = new_input(dtype=draw(st.sampled_from(["int64", "int32"])), shape=(rows,), static=static,
                           values=f"labels:{classes}", kind="placeholder")
        return pool.apply(op, (tame(k), labels))
    if op == "gn.where":
        c = pick(lambda k: pool.vars[k].dtype.kind == "b")
        if c is None:
            k = pick(pool.numeric)
            c = pool.apply("gn.greater", (k, partner(k)))
            if c is None:
                return
        a = partner(c)
        b = partner(a)
        return pool.apply(op, (c, tame(a), tame(b)))
    if op == "gn.cast":
        k = pick()
        dtype = draw(st.sampled_from(["float32", "float64", "int64", "int32", "bool"]))
        if pool.is_float(k) and dtype not in FLOATS:
            # Truncating casts of computed floats flip at integers; cast values that are integers.
            return None
        return pool.apply(op, (k,), (dtype,))
    if op in ("ops.second", "ops.mode_select"):
        k = pick(pool.numeric)
        j = partner(k)
        if op == "ops.mode_select":
            if pool.vars[j].dtype != pool.vars[k].dtype or pool.vars[j].type.shape != pool.vars[k].type.shape:
                j = pool.apply("gn.mul", (k, j))
                if j is None or pool.vars[j].dtype != pool.vars[k].dtype or pool.vars[j].type.shape != pool.vars[k].type.shape:
                    return None
                return pool.apply(op, (k, j), bound=(min(pool.bounds[k][0], pool.bounds[j][0]),
                                                      max(pool.bounds[k][1], pool.bounds[j][1])))
            return pool.apply(op, (k, j))
        return pool.apply(op, (k, j), bound=pool.bounds[j])
    if op in ("ops.zeros_like", "ops.ones_like"):
        return pool.apply(op, (pick(pool.numeric),))
    if op == "gn.prelu":
        k = pick(lambda k: pool.is_float(k) and pool.vars[k].ndim > 0)
        if k is None or pool.vars[k].type.shape[-1] is None:
            return
        alpha = new_input(shape=(pool.shapes[k][-1],), static=(pool.vars[k].type.shape[-1],), kind="shared",
                          values="positive")
        return pool.apply(op, (k, alpha))
    if op == "gn.maxout":
        k = pick(lambda k: pool.is_float(k) and pool.vars[k].ndim > 0 and pool.vars[k].type.shape[-1]
                 and pool.vars[k].type.shape[-1] % 2 == 0 and None not in pool.vars[k].type.shape[:-1])
        if k is None:
            return
        return pool.apply(op, (k,), (2,))
    if op == "DropoutScale":
        k = pick(pool.is_float)
        if k is None:
            return
        step = draw(st.integers(0, 5))
        s = pool.apply("gn.constant", (), (step, "int64"), bound=(step, step))
        return pool.apply(op, (k, s), (draw(st.sampled_from([0.5, 0.8])), draw(st.integers(0, 1000))))
    if op == "gn.size_of":
        k = pick(lambda k: pool.vars[k].ndim > 0)
        if k is None:
            return
        s = pool.apply(op, (k,), (draw(st.integers(0, pool.vars[k].ndim - 1)),))
        if s is None:
            return
        m = pick(pool.is_float)
        if m is not None:
            pool.apply("gn.mul", (m, pool.apply("gn.cast", (s,), (str(pool.vars[m].dtype),))))
    return None


def _factor(draw, size):
    """A random shape of ``size`` elements with 1 to 3 axes."""
    dims = []
    rest = size
    for _ in range(draw(st.integers(0, 2))):
        divisors = [d for d in range(1, rest + 1) if rest % d == 0] or [1]
        d = draw(st.sampled_from(divisors))
        dims.append(d)
        rest //= d if d else 1
    dims.append(rest)
    return tuple(dims)


# ------------------------------------------------------------------ indexing
def _index(draw, pool, op, new_input, tame, pick, broadcasting_input, float_dtype):
    """One indexing step: slices (static and symbolic bounds), integer-array gathers,
    their increments and assignments, ``alloc``, ``arange`` and Theano's NLL idiom."""
    def int_constant(value):
        return pool.apply("gn.constant", (), (value, "int64"), bound=(value, value))

    def index_arrays(k, pattern):
        """Integer index placeholders (or constants) for the ``ARG`` axes of ``pattern``, in range."""
        shape = draw(st.sampled_from([(draw(st.integers(1, 4)),), (draw(st.integers(1, 3)), 2)]))
        args = []
        for axis, entry in enumerate(pattern):
            if entry != ARG:
                continue
            size = pool.shapes[k][axis]
            if draw(st.integers(0, 3)) == 0:
                values = np.random.default_rng(draw(st.integers(0, 999))).integers(0, size, shape).tolist()
                args.append(pool.apply("gn.constant", (), (values, "int64"), bound=(0, size - 1)))
            else:
                static = shape if draw(st.booleans()) else (None,) + shape[1:]
                args.append(new_input(dtype=draw(st.sampled_from(["int64", "int32"])), shape=shape, static=static,
                                      values=f"labels:{size}", kind="placeholder"))
        return args, int(np.prod(shape))

    def basic_pattern(k, newaxis=True):
        """A NumPy basic index of ``k``: ints, slices (some bounded by a symbolic size), None
        (not for ``inc_subtensor``, whose first argument must be a plain indexing)."""
        var, shape = pool.vars[k], pool.shapes[k]
        pattern, args, axis = [], [], 0
        for _ in range(draw(st.integers(1, max(var.ndim, 1)))):
            if axis >= var.ndim:
                break
            d = shape[axis]
            choice = draw(st.sampled_from(["full", "index", "slice", "slice", "symbolic", "newaxis"]))
            if choice == "newaxis" and newaxis and var.ndim < 4:
                pattern.append(None)
                continue
            if choice == "index" and d > 0:
                pattern.append(draw(st.integers(-d, d - 1)))
            elif choice == "slice":
                part = st.one_of(st.none(), st.integers(-d - 1, d + 1))
                pattern.append(slice(draw(part), draw(part), draw(st.sampled_from([None, 1, 2, -1, -2]))))
            elif choice == "symbolic":
                # x[:size - c]: a stop known only at run time
                size = pool.apply("gn.size_of", (k,), (axis,))
                stop = pool.apply("gn.sub", (size, int_constant(draw(st.integers(0, 2)))))
                if stop is None:
                    return None, None
                args.append(stop)
                pattern.append(slice(draw(st.sampled_from([None, 0, 1])), ARG, None))
            else:
                pattern.append(slice(None))
            axis += 1
        return tuple(pattern), args

    def advanced_pattern(k):
        ndim = pool.vars[k].ndim
        patterns = [(ARG,)] + ([(slice(None), ARG), (ARG, ARG)] if ndim >= 2 else [])
        pattern = draw(st.sampled_from(patterns))
        if any(pool.shapes[k][axis] == 0 for axis, e in enumerate(pattern) if e == ARG):
            return None, None, 0
        args, repeats = index_arrays(k, pattern)
        return pattern, args, repeats

    if op in ("x[key]", "x[idx]"):
        k = pick(lambda k: pool.vars[k].ndim > 0)
        if k is None:
            return None
        if op == "x[key]":
            pattern, args = basic_pattern(k)
        else:
            pattern, args, _ = advanced_pattern(k)
        if pattern is None or None in args:
            return None
        return pool.apply(op, (k, *args), (pattern,))
    if op in ("T.inc_subtensor", "T.inc_subtensor[idx]", "T.set_subtensor"):
        k = pick(lambda k: pool.is_float(k) and pool.vars[k].ndim > 0)
        if k is None:
            return None
        if op == "T.inc_subtensor[idx]":
            pattern, args, repeats = advanced_pattern(k)
        else:
            (pattern, args), repeats = basic_pattern(k, newaxis=False), 1
            if pattern is not None and all(entry == slice(None) for entry in pattern):
                pattern = (0,) + pattern[1:] if pool.shapes[k][0] else pattern
        if pattern is None or None in args:
            return None
        try:
            target = APPLY["x[key]"](pool.vars[k], *[pool.vars[a] for a in args], pattern)
            target_shape = _infer(target, {v: s for v, s in zip(pool.vars, pool.shapes)})
        except GraphnetError:
            return None
        y = tame(broadcasting_input(target_shape, target.type.shape))
        bx, by = pool.bounds[k], pool.bounds[y]
        bound = ((min(bx[0], by[0]), max(bx[1], by[1])) if op == "T.set_subtensor" else
                 (bx[0] + repeats * min(by[0], 0), bx[1] + repeats * max(by[1], 0)))
        return pool.apply(op, (k, y, *args), (pattern,), bound=bound)
    if op == "gn.alloc":
        value = pick(lambda k: pool.numeric(k) and pool.vars[k].ndim == 0)
        if value is None:
            k = pick(pool.is_float)
            value = pool.apply("gn.mean", (k,), (None, False)) if k is not None else None
        if value is None:
            return None
        pattern, args = [], []
        for _ in range(draw(st.integers(1, 2))):
            sized = pick(lambda k: pool.vars[k].ndim > 0 and pool.shapes[k][0] > 0)
            if sized is not None and draw(st.booleans()):
                args.append(pool.apply("gn.size_of", (sized,), (0,)))
                pattern.append(ARG)
            else:
                pattern.append(draw(st.integers(1, 4)))
        if None in args:
            return None
        return pool.apply(op, (value, *args), (tuple(pattern),))
    if op == "gn.arange":
        k = pick(lambda k: pool.vars[k].ndim > 0)
        if k is None:
            return None
        n = pool.apply("gn.size_of", (k,), (draw(st.integers(0, pool.vars[k].ndim - 1)),))
        r = pool.apply(op, (n,), (draw(st.sampled_from([0, 0, 1])),), bound=(0, max(pool.shapes[k])))
        return pool.apply("gn.cast", (r,), (float_dtype,)) if r is not None else None
    if op == "T.nnet.nll":
        z = pick(lambda k: pool.is_float(k) and pool.vars[k].ndim == 2 and 0 not in pool.shapes[k])
        if z is None:
            return None
        if _mag(pool.bounds[z]) > 20:  # log(softmax) unstabilized must stay finite in the plain reference
            z = pool.apply("gn.tanh", (z,))
        rows, classes = pool.shapes[z]
        static = (pool.vars[z].type.shape[0],) if draw(st.booleans()) else (None,)
        labels = new_input(dtype=draw(st.sampled_from(["int64", "int32"])), shape=(rows,), static=static,
                           values=f"labels:{classes}", kind="placeholder")
        return pool.apply(op, (z, labels))
    raise AssertionError(f"no recipe rule for {op}")
