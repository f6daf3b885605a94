"""The graph IR: types, variables, apply nodes and the Op base class.

A graph is a bipartite DAG. A :class:`Variable` is a typed value; an
:class:`Apply` node applies an :class:`Op` to input variables and owns its
output variables. Placeholders, shared variables and constants are variables
without an owner. Nothing here computes: backends and passes read the graph.
"""
from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from graphnet.errors import DTypeError, GraphnetError, ShapeError
from graphnet.graph.dtype import DType

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # graphnet/


class _IdCounter:
    """Hands out increasing ids: a variable's id orders it after its inputs."""

    def __init__(self):
        self.value = 0

    def take(self):
        self.value += 1
        return self.value - 1


_ids = _IdCounter()


# --------------------------------------------------------------------------- types
@dataclass(frozen=True)
class TensorType:
    """dtype plus static shape; a ``None`` dimension is known only at run time.

    ``dtype`` is a :class:`~graphnet.graph.dtype.DType`: the name as a string
    (what Theano scripts compare against) that also answers as a NumPy dtype.
    """

    dtype: DType
    shape: tuple

    def __post_init__(self):
        object.__setattr__(self, "dtype", DType(self.dtype))
        object.__setattr__(self, "shape", tuple(None if d is None else int(d) for d in self.shape))

    @property
    def ndim(self):
        return len(self.shape)

    def accepts_shape(self, shape):
        """True if a concrete ``shape`` fits this (possibly partial) static shape."""
        return len(shape) == self.ndim and all(s is None or s == d for s, d in zip(self.shape, shape))

    def __str__(self):
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype.name}[{dims}]"


def shape_str(shape):
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def broadcast_shapes(*shapes, op_name="elementwise", node_hint=""):
    """NumPy broadcasting over static shapes with ``None`` (unknown) dims.

    A dimension broadcasts only where it is statically 1; an unknown dimension
    is assumed not to be 1 (the executor checks this at run time), so gradients
    know statically which axes to sum over.
    """
    ndim = max(len(s) for s in shapes)
    padded = [(1,) * (ndim - len(s)) + tuple(s) for s in shapes]
    out = []
    for axis, dims in enumerate(zip(*padded)):
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            listed = " and ".join(shape_str(s) for s in shapes)
            raise ShapeError(f"{op_name}: shapes {listed} do not broadcast (axis {axis}: "
                             f"{' vs '.join(str(d) for d in sorted(known))}){node_hint}")
        if known:
            out.append(known.pop())
        elif any(d is None for d in dims):
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


# ------------------------------------------------------------------ source lines
def user_source_line():
    """``"file.py:LINE"`` of the innermost stack frame outside the graphnet package.

    Recorded on every node so errors can point at the user's line of code.
    """
    frame = sys._getframe(1)
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if not filename.startswith(_PACKAGE_DIR + os.sep):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"



# ------------------------------------------------------------------- provenance
class _ProvenanceStack(threading.local):
    def __init__(self):
        self.frames = [(None, "forward")]   # (source or None for the user's line, role)


_PROVENANCE = _ProvenanceStack()


@contextmanager
def provenance(source=None, role=None):
    """Every variable made inside carries ``source`` (default: the user's line,
    found on the stack) and ``role`` ("forward" or "backward").

    ``grad`` builds its nodes under ``provenance(role="backward")``; a rewrite
    builds a replacement under :func:`provenance_of` the node it replaces, so
    errors still name the user's line and viewers still tell backward from
    forward. (PyTensor's ``copy_stack_trace`` plays this part.)
    """
    outer_source, outer_role = _PROVENANCE.frames[-1]
    _PROVENANCE.frames.append((source if source is not None else outer_source, role or outer_role))
    try:
        yield
    finally:
        _PROVENANCE.frames.pop()


def provenance_of(node):
    """:func:`provenance` of what ``node`` was: its source line and its role."""
    return provenance(node.source, node.outputs[0].role)


def copy_provenance(old, new):
    """``new`` takes ``old``'s name, source, role and structural-zero mark (it replaces it)."""
    new.name, new.source, new.role = old.name, old.source, old.role
    new.structural_zero = old.structural_zero


# ------------------------------------------------------------------- variables
class Variable:
    """A typed symbolic value: the output of an Apply node, or a graph input.

    Arithmetic operators build new nodes (see ``graphnet.ops``). ``.shape`` is the
    static shape (``None`` for dims known only at run time); ``gn.shape_of``
    gives a symbolic size.
    """

    # Keep NumPy from treating variables as arrays in ``ndarray * var``.
    __array_priority__ = 1000
    __array_ufunc__ = None

    def __init__(self, type, owner=None, index=0, name=None):
        self.type = type
        self.owner = owner
        self.index = index
        self.name = name
        self.id = _ids.take()
        source, self.role = _PROVENANCE.frames[-1]
        # "backward" for what grad built (see provenance), so viewers can tell it apart.
        self.source = source if source is not None else user_source_line()
        # True for zeros that stand for "no gradient" (see ops.elementwise.gradient_zeros).
        self.structural_zero = False

    # --- type shortcuts
    @property
    def dtype(self):
        return self.type.dtype

    @property
    def ndim(self):
        return self.type.ndim

    @property
    def T(self):
        from graphnet.ops import shape as shape_ops
        return shape_ops.transpose(self)

    def describe(self):
        """A short human name: ``W``, ``add#17`` or ``placeholder x``."""
        if self.name:
            return self.name
        if self.owner is not None:
            return f"{self.owner.op.name}#{self.id}"
        return f"{type(self).__name__.lower()}#{self.id}"

    def __repr__(self):
        return f"<{type(self).__name__} {self.describe()}: {self.type}>"

    # Variables are graph nodes: identity, not value, decides equality. The
    # comparison operators below build nodes, so __eq__ stays object identity
    # and ``gn.eq`` builds the elementwise comparison.
    __hash__ = object.__hash__

    def __bool__(self):
        # Theano 1.0's rule: a variable is truthy (``if not W:`` tests for None), except
        # a comparison, whose truth is unknown until the graph runs; refusing it is what
        # stops ``a < b < c`` (Python's ``(a < b) and (b < c)``) from silently dropping a test.
        if self.owner is not None and self.owner.op.is_comparison:
            raise GraphnetError(
                f"the truth value of the comparison {self.describe()} (built at {self.source}) is unknown "
                "until the graph runs; use gn.where(...) (T.switch) for a symbolic condition")
        return True

    def __len__(self):
        raise GraphnetError(f"len() of symbolic variable {self.describe()} is unknown; use .shape")

    def __iter__(self):
        raise GraphnetError(f"symbolic variable {self.describe()} is not iterable")

    # --- Theano-style front end (graphnet.ops.indexing, graphnet.tensor) -----------
    # ``x.shape`` is the static shape, a tuple of ints and None; in user code
    # ``x.shape[i]`` of a None dimension is the symbolic size ``gn.size_of(x, i)``
    # (package code keeps reading None: see ShapeTuple). ``x[key]`` builds basic
    # or integer-array indexing; the methods mirror NumPy's ndarray methods.
    @property
    def shape(self):
        from graphnet.ops.indexing import ShapeTuple
        return ShapeTuple(self.type.shape, self)

    def __getitem__(self, key):
        from graphnet.ops.indexing import getitem
        return getitem(self, key)

    def sum(self, axis=None, keepdims=False):
        from graphnet import ops
        return ops.sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        from graphnet import ops
        return ops.mean(self, axis, keepdims)

    def max(self, axis=None, keepdims=False):
        from graphnet import ops
        return ops.max(self, axis, keepdims)

    def min(self, axis=None, keepdims=False):
        from graphnet import ops
        return ops.min(self, axis, keepdims)

    def argmax(self, axis=None, keepdims=False):
        """As ``ndarray.argmax``: ``axis=None`` is the index into the flattened array."""
        from graphnet import ops
        if axis is None:
            return ops.argmax(ops.reshape(self, (-1,)), 0, keepdims)
        return ops.argmax(self, axis, keepdims)

    def astype(self, dtype):
        from graphnet import ops
        return ops.cast(self, dtype)

    def reshape(self, *shape):
        from graphnet import ops
        return ops.reshape(self, shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape)

    def flatten(self, ndim=1):
        """As Theano's: keep ``ndim - 1`` leading axes, collapse the rest (``flatten(2)``: a matrix)."""
        from graphnet import ops
        return ops.flatten(self, ndim)

    def dimshuffle(self, *pattern):
        from graphnet.ops.indexing import dimshuffle
        return dimshuffle(self, *pattern)
    # --- end of the Theano-style front end ---------------------------------------


def _arith(name, reflected=False):
    def method(self, other):
        from graphnet import ops
        fn = getattr(ops, name)
        return fn(other, self) if reflected else fn(self, other)
    method.__name__ = name
    return method


for _dunder, _fn in [("add", "add"), ("sub", "sub"), ("mul", "mul"), ("truediv", "true_div"),
                     ("pow", "pow"), ("matmul", "dot"), ("mod", "mod"), ("floordiv", "floor_div")]:
    setattr(Variable, f"__{_dunder}__", _arith(_fn))
    setattr(Variable, f"__r{_dunder}__", _arith(_fn, reflected=True))
for _dunder, _fn in [("lt", "less"), ("le", "less_equal"), ("gt", "greater"), ("ge", "greater_equal")]:
    setattr(Variable, f"__{_dunder}__", _arith(_fn))
Variable.__neg__ = lambda self: __import__("graphnet.ops", fromlist=["neg"]).neg(self)
Variable.__abs__ = lambda self: __import__("graphnet.ops", fromlist=["abs"]).abs(self)


class Placeholder(Variable):
    """A graph input fed at run time: ``gn.placeholder("x", (None, 784))``."""

    def __init__(self, name, shape, dtype="float32"):
        if not isinstance(name, str) or not name:
            raise GraphnetError(f"placeholder: name must be a non-empty string, got {name!r}")
        shape = _check_shape_spec(shape, f"placeholder {name!r}")
        super().__init__(TensorType(_check_dtype(dtype, f"placeholder {name!r}"), shape), name=name)


class Constant(Variable):
    """A value fixed when the graph is built."""

    def __init__(self, value, name=None):
        data = np.array(value)
        if data.dtype.kind not in "biuf":
            raise DTypeError(f"constant: values must be numeric or bool, got dtype {data.dtype}")
        data.setflags(write=False)
        self.data = data
        super().__init__(TensorType(data.dtype, data.shape), name=name)

    def describe(self):
        if self.name:
            return self.name
        return f"{self.data.item():g}" if self.data.size == 1 and self.data.dtype.kind == "f" else (
            str(self.data.item()) if self.data.size == 1 else f"constant#{self.id}")


class SharedVariable(Variable):
    """A variable whose value persists between calls: parameters, running statistics.

    ``default_update``, if set, is an expression applied as an update whenever a
    training-mode function reads this variable (batch-norm running statistics,
    the dropout step counter) unless the user gives an explicit update.
    With ``update_in_every_function = True`` it is applied by every function
    that reads the variable, training or not, as Theano does: the state of a
    ``RandomStreams``, so each call draws fresh numbers.
    """

    #: a class default, so shared variables pickled before it existed still load
    update_in_every_function = False

    def __init__(self, value, name=None, shape=None):
        data = np.array(value)  # always a private copy: the caller's array is not aliased
        if data.dtype.kind not in "biuf":
            raise DTypeError(f"shared {name!r}: values must be numeric or bool, got dtype {data.dtype}")
        static_shape = data.shape if shape is None else _check_shape_spec(shape, f"shared {name!r}")
        super().__init__(TensorType(data.dtype, static_shape), name=name)
        if not self.type.accepts_shape(data.shape):
            raise ShapeError(f"shared {self.describe()}: value of shape {data.shape} does not fit "
                             f"declared shape {shape_str(static_shape)}")
        self._value = np.array(data, order="C")  # (ascontiguousarray would make 0-d values 1-d)
        self.default_update = None
        self.version = 0  # bumped on every change, so caches of the value can tell

    def get_value(self, copy=True, borrow=None):
        """The current value: a copy unless ``copy=False`` (or Theano's ``borrow=True``)."""
        if borrow is not None:
            copy = not borrow
        return self._value.copy() if copy else self._value

    def set_value(self, value):
        """Replace the value; the dtype must cast safely and the shape must fit."""
        self._value = self._validated(value)
        self.version += 1

    def _validated(self, value, copy=True):
        """``value`` checked against this variable's dtype and shape, as a C array."""
        try:
            value = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise ShapeError(f"shared {self.describe()}: cannot make an array of the new value ({exc})") from None
        if value.dtype != self.dtype:
            if not np.can_cast(value.dtype, self.dtype, casting="same_kind") or (
                    value.dtype.kind == "f" and self.dtype.kind in "iub"):
                raise DTypeError(f"shared {self.describe()}: cannot store dtype {value.dtype} "
                                 f"in a {self.dtype} variable")
        if not self.type.accepts_shape(value.shape):
            raise ShapeError(f"shared {self.describe()}: new value has shape {value.shape}, "
                             f"expected {shape_str(self.shape)}")
        return np.array(value, dtype=self.dtype, order="C", copy=True if copy else None)


def _check_dtype(dtype, what):
    try:
        dtype = np.dtype(dtype)
    except TypeError as exc:
        raise DTypeError(f"{what}: {dtype!r} is not a dtype") from exc
    if dtype.kind not in "biuf":
        raise DTypeError(f"{what}: dtype must be numeric or bool, got {dtype}")
    return dtype


def _check_shape_spec(shape, what):
    if isinstance(shape, int):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError as exc:
        raise ShapeError(f"{what}: shape must be a tuple of ints or None, got {shape!r}") from exc
    for d in shape:
        if d is not None and (not isinstance(d, (int, np.integer)) or d < 0):
            raise ShapeError(f"{what}: shape must be a tuple of non-negative ints or None, got {shape!r}")
    return shape


# ----------------------------------------------------------------- apply and op
class Apply:
    """One application of an op to inputs, owning its outputs."""

    def __init__(self, op, inputs, output_types, output_names=None):
        self.op = op
        self.inputs = list(inputs)
        names = output_names or [None] * len(output_types)
        self.outputs = [Variable(t, owner=self, index=i, name=n)
                        for i, (t, n) in enumerate(zip(output_types, names))]
        self.source = self.outputs[0].source if self.outputs else user_source_line()

    def describe(self):
        return f"{self.op} at {self.source}"

    def __repr__(self):
        return f"<Apply {self.op}({', '.join(v.describe() for v in self.inputs)})>"


class Op:
    """Base class of every operation.

    The contract (see docs/architecture.md):

    * ``make_node(*inputs) -> Apply``: checks inputs and infers output types.
    * ``perform(inputs) -> list of arrays``: the NumPy reference, the oracle.
    * ``infer_shape(node, shapes) -> list of shapes``: run-time shapes, checked.
    * ``grad(inputs, outputs, output_grads) -> list``: symbolic input gradients,
      ``None`` for an input that is not differentiable.
    * ``__props__``: the parameters that, with the class, define equality and
      hashing, so CSE can merge equal nodes and codegen can share kernels.
    """

    __props__ = ()
    #: the op's category for the compiler: "elementwise", "reduce", "blas", "rowwise", "view", "opaque"
    kind = "opaque"
    #: True for comparisons, whose outputs refuse ``bool()`` (see ``Variable.__bool__``)
    is_comparison = False

    # Capabilities the compiler reads, declared here with their defaults.
    #: the scalar expression reads the element's flat index (dropout's counter):
    #: such a node is never constant-folded or evaluated once per shape
    uses_element_index = False
    #: ``infer_shape`` needs small input values too (a slice with symbolic bounds,
    #: ``arange(n)``) and is called with ``values=``
    infer_shape_needs_values = False
    #: the output's value depends only on the inputs' shapes (``x.shape[0]``), never their values
    reads_only_shapes = False
    #: positions of inputs whose values :meth:`check_values` validates before the
    #: op runs (cross-entropy's labels); fed ones are checked before any kernel
    checked_inputs = ()
    #: a row-wise op: the input whose (rows, columns) its kernel iterates over
    row_input = 0
    #: position of an input whose run-time shape is always the output's (cross-entropy's
    #: labels), or None: an op reading only that output's shape reads the input instead,
    #: so it need not wait for this node (``canonicalize``)
    same_shape_input = None
    #: positions of inputs the op reads for their shape only, never their values, where
    #: others' values count (``second``'s first); with ``reads_only_shapes``, every input
    shape_only_inputs = ()

    @property
    def name(self):
        return type(self).__name__.lower()

    def shape_source(self, node):
        """Position of an input of ``node`` whose run-time shape is always its output's, or None
        (``same_shape_input`` unless an op knows better per node)."""
        return self.same_shape_input

    def shape_value_inputs(self, node):
        """Positions of the inputs whose *values* decide ``node``'s output shapes (a slice's
        symbolic bounds, ``arange``'s bounds): a compiled program keys its frames on them
        wherever the static type leaves a length open. Default: every input, for an op that
        sets ``infer_shape_needs_values``; an op whose values only get *checked* (index
        arrays: the output's shape is theirs) returns ``()``."""
        return tuple(range(len(node.inputs))) if self.infer_shape_needs_values else ()

    def _props(self):
        return tuple(getattr(self, p) for p in self.__props__)

    def __eq__(self, other):
        return type(self) is type(other) and self._props() == other._props()

    def __hash__(self):
        return hash((type(self), self._props()))

    def __str__(self):
        if not self.__props__:
            return self.name
        params = ", ".join(f"{p}={getattr(self, p)!r}" for p in self.__props__)
        return f"{self.name}{{{params}}}"

    def __call__(self, *inputs):
        node = self.make_node(*inputs)
        return node.outputs[0] if len(node.outputs) == 1 else node.outputs

    def make_node(self, *inputs):
        raise NotImplementedError

    def perform(self, inputs):
        raise NotImplementedError(f"{self.name} has no reference implementation")

    def infer_shape(self, node, shapes):
        """Output shapes from the run-time input ``shapes``; raises ShapeError on a mismatch.

        Every backend calls this before running a node, so a bad shape is
        reported with the node's source line instead of failing inside a kernel.
        """
        raise NotImplementedError(f"{self.name} has no shape inference")

    def grad(self, inputs, outputs, output_grads):
        raise GraphnetError(f"{self.name} has no gradient")

    def check_values(self, node, values, shapes):
        """Raise a graphnet error, naming the input and ``node``'s line, when the values of
        :attr:`checked_inputs` are out of range. ``values``: {input position: array} of
        the checked inputs; ``shapes``: the run-time shapes of all of ``node``'s inputs.
        Every backend calls this, so every backend gives the same message."""

    def rowwise_applies(self, node):
        """For a row-wise op: whether its row kernel computes ``node`` (else NumPy runs it)."""
        return False

    def in_float64(self):
        """For an op holding an inner graph (scan's body): a copy computing it in float64, the form
        the gradient check differentiates; other ops are widened through their ``dtype`` parameter."""
        return self

    def error_hint(self):
        """`` (built at file.py:LINE)`` for the node being made."""
        return f" (built at {user_source_line()})"


def as_variable(value, like=None):
    """Wrap a Python number or array as a Constant; Variables pass through.

    Python scalars are weakly typed, as in NumPy 2: ``0.1 * x`` keeps ``x``'s
    float dtype, ``2 * i`` keeps an integer dtype.
    """
    if isinstance(value, Variable):
        return value
    if isinstance(value, (bool, int, float, np.number, np.bool_)) and not isinstance(value, np.ndarray):
        target = like.dtype if like is not None else None
        if isinstance(value, (bool, np.bool_)):
            dtype = np.bool_
        elif isinstance(value, (int, np.integer)):
            dtype = target if target is not None and target.kind in "iuf" else np.int64
        else:
            dtype = target if target is not None and target.kind == "f" else np.float32
        if isinstance(value, np.number) and like is None:
            dtype = value.dtype
        return Constant(np.asarray(value, dtype=dtype))
    if isinstance(value, (np.ndarray, list, tuple)):
        return Constant(np.asarray(value))
    raise GraphnetError(f"cannot use {type(value).__name__} {value!r} in a graph; expected a "
                        "graphnet variable, a number or a NumPy array")


# ------------------------------------------------------------------ traversal
def ancestors_toposort(outputs):
    """Apply nodes needed for ``outputs``, inputs before consumers (iterative DFS)."""
    order, seen = [], set()
    stack = [(v, False) for v in reversed(list(outputs))]
    while stack:
        var, expanded = stack.pop()
        node = var.owner if isinstance(var, Variable) else var
        if node is None or (id(node) in seen and not expanded):
            continue
        if expanded:
            if id(node) not in seen:
                seen.add(id(node))
                order.append(node)
            continue
        stack.append((node, True))
        for inp in reversed(node.inputs):
            if inp.owner is not None and id(inp.owner) not in seen:
                stack.append((inp, False))
    return order


def graph_inputs(outputs):
    """Variables without an owner (placeholders, shared, constants) reachable from outputs."""
    found, seen = [], set()
    for out in outputs:
        if out.owner is None and id(out) not in seen:
            seen.add(id(out))
            found.append(out)
    for node in ancestors_toposort(outputs):
        for inp in node.inputs:
            if inp.owner is None and id(inp) not in seen:
                seen.add(id(inp))
                found.append(inp)
    return found


def clone_replace(outputs, replace):
    """Rebuild ``outputs`` with variables substituted by ``replace`` {old: new}.

    Nodes whose inputs did not change are reused, not copied. A replacement may
    itself read replaced variables if they are its ancestors (``mode_select``
    resolving to a branch that holds another ``mode_select``).
    """
    mapping = {old: new for old, new in replace.items() if old.owner is None}

    def resolve(var):
        return mapping.get(var, var)

    for node in ancestors_toposort(outputs):
        if any(o in replace for o in node.outputs):
            for out in node.outputs:
                if out in replace:
                    mapping[out] = resolve(replace[out])
            continue
        new_inputs = [resolve(v) for v in node.inputs]
        if all(a is b for a, b in zip(new_inputs, node.inputs)):
            continue
        with provenance_of(node):
            new_node = node.op.make_node(*new_inputs)
        for old, new in zip(node.outputs, new_node.outputs):
            copy_provenance(old, new)
            mapping[old] = new
    return [resolve(v) for v in outputs]
