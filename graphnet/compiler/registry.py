"""Registration: how a backend renders and runs each kind of planned kernel.

A backend keeps one :class:`Lowerings` table per thing it dispatches on: the
plan's kernel classes (``LoopKernel``, ``GemmKernel``, ...), op classes (the
row-wise templates, CUDA's views). An entry is registered next to the code
it names, and found by walking the key's class hierarchy, so a subclass
inherits its base's lowering unless it registers its own. This is the one
dispatch mechanism of the back end: there is no ``if kind == ...`` ladder, and
adding a kernel kind is a new module plus its registrations (see
docs/architecture.md). PyTensor's Numba linker does the same with
``numba_funcify.register(OpClass)``.
"""
from __future__ import annotations

from graphnet.errors import CompileError


class Lowerings:
    """A table {class: entry}, looked up along a class's method resolution order."""

    def __init__(self, what):
        self.what = what          # for messages: "cpu kernel lowering", "cpu row-wise template"
        self._table = {}

    def register(self, *classes, entry=None):
        """``@table.register(A, B)`` on a function, or ``table.register(A, entry=value)``;
        a key may be a tuple of classes, ``register((A, B), entry=value)``."""
        def add(value):
            for cls in classes:
                if cls in self._table:
                    raise CompileError(f"{self.what}: {key_name(cls)} is registered twice")
                self._table[cls] = value
            return value
        return add if entry is None else add(entry)

    def find(self, cls):
        """The entry for ``cls`` or its nearest registered base, or None. A tuple of classes
        (a joined row-wise kernel's op classes) is looked up as it is."""
        if isinstance(cls, tuple):
            return self._table.get(cls)
        for base in cls.__mro__:
            if base in self._table:
                return self._table[base]
        return None

    def __getitem__(self, cls):
        entry = self.find(cls)
        if entry is None:
            raise CompileError(f"{self.what}: nothing is registered for {key_name(cls)} "
                               f"(registered: {', '.join(sorted(key_name(c) for c in self._table))})")
        return entry

    def __contains__(self, cls):
        return self.find(cls) is not None


def key_name(key):
    """``Softmax``, or ``(SoftmaxCrossEntropy, SoftmaxCrossEntropyGrad)`` for a tuple key."""
    if isinstance(key, tuple):
        return "(" + ", ".join(c.__name__ for c in key) + ")"
    return key.__name__
