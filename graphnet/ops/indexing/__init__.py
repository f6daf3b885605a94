"""Indexing: ``x[a:b]`` with symbolic bounds, ``x[rows, cols]`` with integer arrays,
their scatter-add gradients, ``arange``, and Theano's symbolic ``x.shape[i]``.

Two families, as in NumPy and Theano:

* **basic** (``Subtensor``): integers and slices, one entry per leading axis;
  the result is a view. Bounds may be Python ints (kept in the op) or symbolic
  integer scalars (inputs of the node), e.g. ``x[i * bs:(i + 1) * bs]``.
* **advanced** (``AdvancedSubtensor``): integer arrays (broadcast together, as
  NumPy) on consecutive axes, full slices ``:`` elsewhere; the result is a copy,
  e.g. ``log_probs[arange(n), labels]``.

Each gradient is a scatter-add into zeros (``IncSubtensor``,
``AdvancedIncSubtensor``); repeated indices accumulate.

Bounds are checked, never clipped: a slice must lie inside its axis after
Python's wrap of negative ints (``0 <= start <= stop <= n`` for a positive
step) and an index array must hold values in ``[0, n)``. A violation raises
:class:`OutOfBoundsError` naming the indexed variable and the bad index, before
anything is read: at build time when it is known then, else from
``infer_shape`` (which backends run before any kernel) and again in
``perform``.

Output shapes that depend on input *values* (a slice with symbolic bounds,
``arange(n)`` for a symbolic ``n``) cannot come from input shapes alone. Such
ops set ``infer_shape_needs_values = True``; backends then call
``infer_shape(node, shapes, values=arrays)``. Where a length is still known
statically (``x[i * bs:(i + 1) * bs]`` has ``bs`` rows) it is part of the
static type, and ``infer_shape`` returns it without values.

Modules: ``common`` (the error, static values), ``basic`` (Subtensor,
IncSubtensor), ``advanced`` (AdvancedSubtensor, AdvancedIncSubtensor,
CheckIndexBounds), ``creation`` (arange, alloc), ``frontend`` (``x[key]``,
``x.shape[i]``, ``dimshuffle``).
"""
from graphnet.ops.indexing.advanced import (  # noqa: F401
    AdvancedIncSubtensor, AdvancedSubtensor, CheckIndexBounds, check_index_array,
)
from graphnet.ops.indexing.basic import IncSubtensor, Subtensor, basic_key, resolve_entry  # noqa: F401
from graphnet.ops.indexing.common import SYMBOLIC, OutOfBoundsError, static_int  # noqa: F401
from graphnet.ops.indexing.creation import Alloc, ARange, AxisRange, alloc, arange  # noqa: F401
from graphnet.ops.indexing.frontend import ShapeTuple, dimshuffle, getitem, symbolic_dim  # noqa: F401
