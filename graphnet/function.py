"""``gn.function``: check what the user asked for, compile it once, run it on arrays.

The front end is the same for every backend: it validates inputs, outputs and
updates, resolves the training/evaluation mode, hands the FunctionGraph to a
backend, and on every call checks the fed arrays before any kernel runs and
applies updates only after every output was computed, so a failed call leaves
every shared variable as it was. Calls are serialized (a lock per function and
per shared variable), so several threads may call compiled functions at once:
see docs/reliability.md.
"""
from __future__ import annotations

import threading
import weakref

import numpy as np

from graphnet import ops
from graphnet.compiler.rewrite.mode import specialize_mode
from graphnet.errors import DTypeError, FeedDTypeError, FeedError, FeedShapeError, GraphnetError, ShapeError
from graphnet.graph.fgraph import FunctionGraph
from graphnet.graph.ir import Constant, Placeholder, SharedVariable, Variable, as_variable, shape_str

BACKENDS = ("reference", "cpu", "cuda")


def function(inputs, outputs, updates=None, backend="cpu", training=False, fuse=True, givens=None,
             allow_input_downcast=False, check_numerics=False, disable_passes=(), name=None,
             no_default_updates=False):
    """Compile a callable that maps arrays for ``inputs`` to arrays of ``outputs``.

    Outputs are computed before the updates; then all updates are applied at
    once. ``training`` selects the training form of dropout and batch norm and
    applies their state updates. ``fuse=False`` (cpu backend) compiles one
    kernel per op: the unfused baseline. ``givens`` ({variable: replacement})
    substitutes variables before compiling. Fed arrays must cast safely to the
    placeholder's dtype (``allow_input_downcast=True`` accepts float64 for a
    float32 placeholder). An input may be an :class:`In`, which gives it a
    default value and a keyword name. Shared variables marked
    ``update_in_every_function`` (random streams) get their default update in
    every function unless ``no_default_updates`` is True or lists them.
    """
    return Function(inputs, outputs, updates, backend=backend, training=training, fuse=fuse, givens=givens,
                    allow_input_downcast=allow_input_downcast, check_numerics=check_numerics,
                    disable_passes=disable_passes, name=name, no_default_updates=no_default_updates)


class In:
    """A function input with a keyword name and a default value: Theano's ``theano.In``.

    ``In(lr, value=0.1)`` lets the call omit ``lr``; ``name`` (default: the
    placeholder's name) is the keyword that feeds it: ``fn(index=3, lr=0.01)``.
    """

    def __init__(self, variable, name=None, value=None, **unsupported):
        given = sorted(k for k, v in unsupported.items() if v not in (None, False))
        if given:
            raise GraphnetError(f"In: argument(s) {', '.join(given)} are not supported (only variable, name "
                                "and value)")
        if not isinstance(variable, Variable):
            raise FeedError(f"In: expected a placeholder, got {type(variable).__name__} {variable!r}")
        if name is not None and (not isinstance(name, str) or not name):
            raise FeedError(f"In: name must be a non-empty string, got {name!r}")
        self.variable, self.name, self.value = variable, name or variable.name, value

    def __repr__(self):
        return f"In({self.variable.describe()}, name={self.name!r}, value={self.value!r})"


class Function:
    """A compiled graph; call it with one array per input."""

    def __init__(self, inputs, outputs, updates=None, backend="cpu", training=False, fuse=True, givens=None,
                 allow_input_downcast=False, check_numerics=False, disable_passes=(), name=None,
                 no_default_updates=False):
        if backend not in BACKENDS:
            raise GraphnetError(f"function: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.backend = backend
        self.training = bool(training)
        self.allow_input_downcast = allow_input_downcast
        self.name = name or "function"
        inputs = [inputs] if isinstance(inputs, (Variable, In)) else list(inputs)
        self.inputs = _check_inputs([i.variable if isinstance(i, In) else i for i in inputs])
        # Keyword names and defaults: an In's, else the placeholder's name and no default.
        self.input_names = [i.name for i in inputs]
        self.defaults = {i.variable: i.value for i in inputs if isinstance(i, In) and i.value is not None}
        self._single_output = not isinstance(outputs, (list, tuple))
        out_list = [outputs] if self._single_output else list(outputs)
        self.outputs = [_check_output(o, i) for i, o in enumerate(out_list)]
        self.updates = _check_updates(updates)
        fgraph = FunctionGraph(tuple(self.inputs), tuple(self.outputs), tuple(self.updates))
        if givens:
            fgraph = fgraph.replace(_check_givens(givens))
        fgraph = add_every_function_updates(fgraph, no_default_updates)
        fgraph = specialize_mode(fgraph, self.training)
        _check_feeds_suffice(fgraph, self.inputs)
        self.fgraph = fgraph
        options = {"fuse": fuse, "check_numerics": check_numerics, "disable_passes": tuple(disable_passes),
                   "name": self.name}
        self.program = _backend_module(backend).build(fgraph, options)
        # The graph as compiled (after the backend's passes), which kernels refer to.
        self.fgraph = getattr(self.program, "fgraph", fgraph)
        self._lock = threading.RLock()
        self._state_locks = state_locks(self.fgraph)
        self._locks = [self._lock] + self._state_locks
        # What a feed must be to go straight through (the common case): an array of
        # exactly the placeholder's dtype, C-contiguous, of a shape it accepts.
        self._exact_feeds = write_exact_feeds(self.inputs)
        self._updated = [shared for shared, _ in self.fgraph.updates]

    # --- introspection, delegated to the backend's program
    @property
    def kernels(self):
        return getattr(self.program, "kernels", [])

    @property
    def refusals(self):
        """(producer, consumer node, reason) for adjacent nodes the compiler did not fuse."""
        return getattr(self.program, "refusals", [])

    def to_dot(self, title=None):
        """Graphviz DOT of the compiled plan: one cluster per kernel (see ``gn.render``)."""
        from graphnet.viz import function_to_dot
        return function_to_dot(self, title=title)

    def report(self, input_shapes=None):
        """A table of kernels: ops fused, bytes moved and saved, and why neighbours did not fuse."""
        from graphnet.viz import kernel_report
        return kernel_report(self, input_shapes=input_shapes)

    def __getattr__(self, attr):
        # report(), to_dot() and the like live on the compiled program.
        if attr != "program" and "program" in self.__dict__ and hasattr(self.program, attr):
            return getattr(self.program, attr)
        raise AttributeError(attr)

    # --- calling
    def __call__(self, *args, **kwargs):
        """Run on the given arrays; safe to call from several threads.

        A call holds this function's lock and the lock of every shared variable
        it reads or updates: a compiled program reuses its preallocated buffers
        on every call and updates parameters in place, so calls run one at a
        time: two calls of one function never overlap, nor do two functions that
        share a shared variable (a training step and an evaluation of the same
        weights). Shared-variable locks are taken in one global order (by id):
        no deadlock.
        """
        feeds = None if kwargs else self._exact_feeds(args)
        if feeds is None:
            feeds = self._bind(args, kwargs)
        locks = self._locks
        for lock in locks:   # acquired in order, without a context manager per lock (a hot path)
            lock.acquire()
        try:
            return self._run(feeds)
        finally:
            for lock in reversed(locks):
                lock.release()

    def _run(self, feeds):
        outputs, new_values = self.program.run(feeds)
        if getattr(self.program, "owns_updates", False):
            # Fresh arrays of the variables' dtypes, of shapes the program checked before it
            # ran, or the variables' own arrays written in place: nothing to check, nothing to copy.
            for shared, value in zip(self._updated, new_values):
                shared._value = value
                shared.version += 1
            return outputs[0] if self._single_output else outputs
        # Validate every update before committing any: all or nothing.
        # (A value written in place is the variable's own array: nothing to check.)
        checked = [(shared, value if value is shared._value else shared._validated(value, copy=False))
                   for shared, value in zip(self._updated, new_values)]
        for shared, value in checked:
            if value is not shared._value:
                # A view could alias another variable's buffer; a shared value owns its memory.
                shared._value = value if value.flags.owndata and value.flags.writeable else value.copy()
            shared.version += 1
        if not getattr(self.program, "owns_outputs", False):
            outputs = [np.array(o, copy=True) for o in outputs]
        return outputs[0] if self._single_output else outputs

    def _bind(self, args, kwargs):
        if len(args) > len(self.inputs):
            raise FeedError(f"{self.name}: takes {len(self.inputs)} inputs "
                            f"({', '.join(p.describe() for p in self.inputs)}), got {len(args)}")
        values = dict(zip(self.inputs, args))
        by_name = dict(zip(self.input_names, self.inputs))
        for key, value in kwargs.items():
            if key not in by_name:
                raise FeedError(f"{self.name}: unknown input {key!r}; inputs are {', '.join(by_name)}")
            if by_name[key] in values:
                raise FeedError(f"{self.name}: input {key!r} given twice")
            values[by_name[key]] = value
        for p, value in self.defaults.items():
            values.setdefault(p, value)
        missing = [p.describe() for p in self.inputs if p not in values]
        if missing:
            raise FeedError(f"{self.name}: missing input(s) {', '.join(missing)}")
        return {p: coerce_feed(p, v, self.allow_input_downcast) for p, v in values.items()}


def write_exact_feeds(inputs):
    """``exact(args)``: {placeholder: array} when every argument already is what ``coerce_feed``
    would make of it (an array of exactly the placeholder's dtype, C-contiguous, of a shape it
    accepts), else None. Generated, one line per input: it runs on every call."""
    names = {"ndarray": np.ndarray}
    lines = [f"    if len(args) != {len(inputs)}:", "        return None"]
    arrays = [f"a{k}" for k in range(len(inputs))]
    if inputs:
        lines.append(f"    {', '.join(arrays)}, = args")
    for k, p in enumerate(inputs):
        a, names[f"d{k}"], names[f"p{k}"] = arrays[k], p.dtype.numpy, p
        dims = "".join(f" or {a}.shape[{axis}] != {d}" for axis, d in enumerate(p.shape) if d is not None)
        lines += [f"    if type({a}) is not ndarray or ({a}.dtype is not d{k} and {a}.dtype != d{k}) "
                  f"or not {a}.flags.c_contiguous or {a}.ndim != {len(p.shape)}{dims}:", "        return None"]
    lines.append("    return {" + ", ".join(f"p{k}: {a}" for k, a in enumerate(arrays)) + "}")
    exec(compile("def exact(args):\n" + "\n".join(lines) + "\n", "<graphnet feeds>", "exec"), names)  # noqa: S102
    return names["exact"]


_shared_locks = weakref.WeakKeyDictionary()
_shared_locks_guard = threading.Lock()


def state_locks(fgraph):
    """The locks of the shared variables ``fgraph`` reads or updates, in a global order."""
    shared = {v for v in fgraph.variables() if isinstance(v, SharedVariable)}
    shared.update(s for s, _ in fgraph.updates)
    with _shared_locks_guard:
        return [_shared_locks.setdefault(v, threading.RLock()) for v in sorted(shared, key=lambda v: v.id)]


def coerce_feed(placeholder, value, allow_downcast=False):
    """The fed value as a C-contiguous array of the placeholder's dtype, or a FeedError.

    Policy: casts NumPy calls "safe" are accepted (int32 -> int64, float32 ->
    float64); Python lists and scalars take the placeholder's dtype if their
    values fit; an integer array narrower than its values is refused; a float
    array for an integer placeholder (labels with NaN) is refused; float64 ->
    float32 only with ``allow_input_downcast=True``.
    """
    where = f"input {placeholder.describe()}"
    if isinstance(value, Variable):
        raise FeedError(f"{where}: fed the symbolic variable {value.describe()} (built at {value.source}); "
                        "feeds are arrays of values. To compute this input from another graph, "
                        f"compile with givens={{{placeholder.describe()}: {value.describe()}}}")
    is_array = isinstance(value, np.ndarray)
    try:
        arr = np.asarray(value)
    except Exception as exc:  # noqa: BLE001
        raise FeedError(f"{where}: cannot convert {type(value).__name__} to an array ({exc})") from exc
    want = placeholder.dtype
    if arr.dtype.kind not in "biuf":
        raise FeedDTypeError(f"{where}: expected {want} values, got an array of dtype {arr.dtype}")
    if arr.dtype != want:
        arr = _cast_feed(arr, want, where, lenient=not is_array or allow_downcast)
    if not placeholder.type.accepts_shape(arr.shape):
        raise FeedShapeError(f"{where}: expected shape {shape_str(placeholder.shape)}, got {arr.shape}")
    return np.asarray(arr, order="C")  # (ascontiguousarray would make 0-d feeds 1-d)


def _cast_feed(arr, want, where, lenient):
    if np.can_cast(arr.dtype, want, casting="safe"):
        return arr.astype(want)
    if want.kind in "iub" and arr.dtype.kind in "iub":
        info = np.iinfo(want) if want.kind != "b" else None
        if info is not None and (arr.size == 0 or (arr.min() >= info.min and arr.max() <= info.max)):
            return arr.astype(want)
        raise FeedDTypeError(f"{where}: values of dtype {arr.dtype} do not fit in {want}")
    if want.kind in "iub" and arr.dtype.kind == "f":
        nan = " (it holds NaN)" if np.isnan(arr).any() else ""
        raise FeedDTypeError(f"{where}: expected {want} (integer) values, got {arr.dtype}{nan}; "
                             "labels and indices must be integers")
    if lenient:
        return arr.astype(want)
    raise FeedDTypeError(f"{where}: expected {want}, got {arr.dtype}; cast with .astype({want.name!r}) "
                         "or compile with allow_input_downcast=True")


def _backend_module(backend):
    if backend == "reference":
        from graphnet.compiler.runtime import reference
        return reference
    if backend == "cpu":
        from graphnet.compiler import pipeline
        return pipeline
    from graphnet.compiler.runtime import cuda
    return cuda


def _check_inputs(inputs):
    if isinstance(inputs, Variable):
        inputs = [inputs]
    inputs = list(inputs)
    for i, p in enumerate(inputs):
        if not isinstance(p, Variable) or p.owner is not None or isinstance(p, (SharedVariable, Constant)):
            what = f"{p.describe()}, built at {p.source}" if isinstance(p, Variable) else repr(p)
            raise FeedError(f"function: input {i} ({what}) is not a placeholder; inputs are the "
                            "placeholders fed on each call (shared variables and constants are not fed)")
    names = [p.name for p in inputs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if len(set(map(id, inputs))) != len(inputs) or dupes:
        raise FeedError(f"function: input(s) {', '.join(dupes)} listed twice")
    return inputs


def _check_output(out, index):
    if not isinstance(out, Variable):
        raise GraphnetError(f"function: output {index} is a {type(out).__name__}, not a graph variable")
    return out


def _check_updates(updates):
    if updates is None:
        return []
    pairs = list(updates.items()) if isinstance(updates, dict) else list(updates)
    checked, seen = [], set()
    for pair in pairs:
        try:
            shared, expr = pair
        except (TypeError, ValueError):
            raise GraphnetError(f"function: an update must be a (shared variable, expression) pair, got {pair!r}") from None
        if not isinstance(shared, SharedVariable):
            raise GraphnetError(f"function: update target {getattr(shared, 'describe', lambda: repr(shared))()} "
                                "is not a shared variable")
        if shared in seen:
            raise GraphnetError(f"function: shared variable {shared.describe()} is updated twice")
        seen.add(shared)
        expr = as_variable(expr, like=shared)
        if expr.ndim != shared.ndim or any(a is not None and b is not None and a != b
                                           for a, b in zip(expr.shape, shared.shape)):
            raise ShapeError(f"function: the update of {shared.describe()} has shape {shape_str(expr.shape)}, "
                             f"expected {shape_str(shared.shape)} (update built at {expr.source})")
        if expr.dtype != shared.dtype:
            if expr.dtype.kind == "f" and shared.dtype.kind in "iub":
                raise DTypeError(f"function: the update of {shared.describe()} is {expr.dtype}, "
                                 f"which cannot be stored in {shared.dtype}")
            expr = ops.cast(expr, shared.dtype)
        checked.append((shared, expr))
    return checked


def _check_givens(givens):
    pairs = list(givens.items()) if isinstance(givens, dict) else list(givens)
    mapping = {}
    for old, new in pairs:
        if not isinstance(old, Variable):
            raise GraphnetError(f"givens: keys must be graph variables, got {old!r}")
        new = as_variable(new, like=old)
        if new.ndim != old.ndim or any(a is not None and b is not None and a != b
                                       for a, b in zip(old.shape, new.shape)):
            raise ShapeError(f"givens: {old.describe()} {shape_str(old.shape)} cannot be replaced by "
                             f"{new.describe()} {shape_str(new.shape)}")
        if new.dtype != old.dtype:
            new = ops.cast(new, old.dtype)
        mapping[old] = new
    return mapping


def add_every_function_updates(fgraph, skip=False):
    """Add the default update of each shared variable marked ``update_in_every_function``.

    Theano's rule for random streams: every function that draws advances the
    stream, so each call sees fresh numbers. ``skip`` is ``no_default_updates``:
    True for none, or the shared variables to leave out. An explicit update wins.
    """
    if skip is True:
        return fgraph
    excluded = set(skip or ()) | {shared for shared, _ in fgraph.updates}
    extra, pending = [], list(fgraph.roots)
    while pending:
        found = [v for v in FunctionGraph((), tuple(pending)).variables()
                 if isinstance(v, SharedVariable) and v.update_in_every_function
                 and v.default_update is not None and v not in excluded]
        pending = []
        for shared in found:
            excluded.add(shared)
            extra.append((shared, shared.default_update))
            pending.append(shared.default_update)
    if not extra:
        return fgraph
    return FunctionGraph(fgraph.inputs, fgraph.outputs, fgraph.updates + tuple(extra), dict(fgraph.notes))


def _check_feeds_suffice(fgraph, inputs):
    fed = set(inputs)
    needed = [v for v in fgraph.variables() if isinstance(v, Placeholder) and v not in fed]
    if needed:
        named = ", ".join(f"{v.describe()} (built at {v.source})" for v in needed)
        raise FeedError(f"function: the outputs depend on placeholder(s) {named} that are not among "
                        "the inputs; feed them too (Session.run: add them to feed_dict)")
