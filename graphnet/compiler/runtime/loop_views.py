"""The NumPy steps of a loop body written as lines of its compiled loop (``compiled_loop.py``).

Outside a loop a view (``z[:, :H]``, a reshape) is a NumPy step: free, it makes
no copy. Inside a loop compiled as one Numba function there is no Python to run
it, so each view op registers here the line that makes the same view in
``njit`` code: a basic index with constant bounds becomes the same slice of the
array (a strided view, as NumPy's), a reshape of a contiguous value a reshape.
Basic-index accumulation (``IncSubtensor``, the gradient of a slice) is not a
view: it copies its input into an array allocated once per body frame and adds
into the slice there.

An op without an entry (a random draw, an advanced index, a symbolic bound)
cannot be written into the loop: the loop then runs on the host
(``graphnet.ops.scan.run_loop``), which calls the body program per step.
"""
from __future__ import annotations

from graphnet.compiler.registry import Lowerings
from graphnet.ops.indexing import IncSubtensor, Subtensor, basic_key
from graphnet.ops.join import Concatenate
from graphnet.ops.shape import Reshape, ReshapeLike, Transpose

#: op class -> ``write(node, loop)`` appending the node's lines to ``loop`` (a ``LoopSource``)
LOOP_VIEWS = Lowerings("compiled loop view")


class NotInLoop(Exception):
    """The body holds something the compiled loop cannot express; the message says what."""


def key_text(entries):
    """Constant basic-index entries as Python's index syntax (Numba wraps negatives as NumPy)."""
    parts = []
    for entry in entries:
        if entry[0] == "index":
            parts.append(str(entry[1]))
            continue
        _, start, stop, step = entry
        text = f"{'' if start is None else start}:{'' if stop is None else stop}"
        parts.append(text + (f":{step}" if step not in (None, 1) else ""))
    return ", ".join(parts)


def _constant_key(node):
    if node.op.n_symbolic:
        raise NotInLoop(f"{node.op} has symbolic bounds (checked per call on the host)")
    return key_text(node.op.entries)


@LOOP_VIEWS.register(Subtensor)
def write_subtensor(node, loop):
    key = _constant_key(node)
    loop.define(node.outputs[0], f"{loop.value(node.inputs[0])}[{key}]", strided=True, node=node)


@LOOP_VIEWS.register(IncSubtensor)
def write_inc_subtensor(node, loop):
    key = _constant_key(node)
    x, y = node.inputs[0], node.inputs[1]
    if not loop.shape(node.outputs[0]):
        raise NotInLoop(f"{node.op} on a 0-d value")
    out, shape = loop.scratch(node.outputs[0]), loop.shape(node.outputs[0])
    loop.copy(out, loop.value(x), len(shape))
    target = subtensor_shape(node.op.entries, shape)
    if not target:
        raise NotInLoop(f"{node.op} adds into one element (Numba indexes it as a scalar)")
    if loop.shape(y) == target:
        loop.copy(f"{out}[{key}]", loop.value(y), len(target), node, add=True)
    else:   # y broadcasts into the slice: Numba's array arithmetic does that
        loop.line(f"{out}[{key}] += {loop.value(y)}", node)
    loop.define(node.outputs[0], out)


def subtensor_shape(entries, shape):
    """The shape of ``x[entries]`` for ``x`` of ``shape`` (constant entries)."""
    return basic_key(entries, shape, [])[1]


def _write_reshape(node, loop):
    source = node.inputs[0]
    if loop.is_strided(source):
        raise NotInLoop(f"{node.op} of a strided view (NumPy would copy it; Numba refuses)")
    shape = loop.shape(node.outputs[0])
    if not shape:
        raise NotInLoop(f"{node.op} to a 0-d value")
    dims = "".join(f"{loop.integer(d)}, " for d in shape)
    loop.define(node.outputs[0], f"{loop.value(source)}.reshape(({dims}))", node=node)


LOOP_VIEWS.register(Reshape, ReshapeLike, entry=_write_reshape)


@LOOP_VIEWS.register(Transpose)
def write_transpose(node, loop):
    perm = tuple(int(p) for p in node.op.perm)
    if perm == tuple(range(len(perm))):
        loop.define(node.outputs[0], loop.value(node.inputs[0]), strided=loop.is_strided(node.inputs[0]))
        return
    text = f"np.transpose({loop.value(node.inputs[0])}, {perm!r})"
    loop.define(node.outputs[0], text, strided=True, node=node)



@LOOP_VIEWS.register(Concatenate)
def write_concatenate(node, loop):
    """Each piece copied into its part of an array allocated once per body frame."""
    out_var = node.outputs[0]
    if any(v.dtype != out_var.dtype for v in node.inputs):
        raise NotInLoop(f"{node.op} of mixed dtypes")
    out, axis, start = loop.scratch(out_var), node.op.axis, 0
    for piece in node.inputs:
        stop = start + loop.shape(piece)[axis]
        key = ":, " * axis + f"{loop.integer(start)}:{loop.integer(stop)}"
        loop.copy(f"{out}[{key}]", loop.value(piece), len(loop.shape(piece)), node)
        start = stop
    loop.define(out_var, out)
