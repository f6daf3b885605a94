"""``Variable.dtype``: the dtype's name as a string, which also answers as a NumPy dtype.

Theano scripts compare dtypes as strings (``x.dtype == 'float32'``,
``y.dtype.startswith('int')``, ``'%s' % x.dtype``); graphnet's own code and
NumPy/Numba ask dtype questions (``.kind``, ``.itemsize``, ``np.dtype(d)``,
``np.empty(shape, d)``, ``FROM_DTYPE[d]``). :class:`DType` is both: a ``str``
whose value is the NumPy name, carrying the attributes of the matching
``numpy.dtype``.

Equality follows NumPy: a DType equals a string, a scalar type or a
``numpy.dtype`` that names the same dtype. Hashing is the string's, as it must
be: NumPy parses ``np.dtype(d)`` by looking the string up in its table of
names. So a dict or set keyed by plain strings finds a DType, and one keyed by
``numpy.dtype`` objects does not (Python cannot hash a value equal to both
alike): key such tables by ``d.numpy`` or ``np.dtype(d)``. Numba's own table
(``numba.np.numpy_support.FROM_DTYPE``, which ``numba.from_dtype`` and the CUDA
runtime read) gets an entry for each DType when the DType is made.
"""
from __future__ import annotations

import numpy as np

# The numpy.dtype attributes answered by delegation (none of them is a str method).
_DELEGATED = ("alignment", "base", "byteorder", "descr", "fields", "flags", "hasobject", "isalignedstruct",
              "isbuiltin", "isnative", "metadata", "names", "ndim", "newbyteorder", "num", "shape", "subdtype")


class DType(str):
    """A dtype as its name (``'float32'``), with ``numpy.dtype``'s attributes.

    ``DType(x)`` accepts anything ``np.dtype`` does; instances are interned, so
    ``DType('float32') is DType(np.float32)``.
    """

    _interned: dict = {}

    def __new__(cls, value):
        if type(value) is cls:
            return value
        as_numpy = np.dtype(value)
        found = cls._interned.get(as_numpy)
        if found is None:
            found = super().__new__(cls, as_numpy.name)
            # Plain instance attributes, read on hot paths of the compiler.
            found.numpy = as_numpy
            found.kind, found.itemsize, found.char = as_numpy.kind, as_numpy.itemsize, as_numpy.char
            found.type, found.str, found.name = as_numpy.type, as_numpy.str, as_numpy.name
            cls._interned[as_numpy] = found
            _register_with_numba(found)
        return found

    def __getnewargs__(self):
        return (str(self),)

    def __reduce__(self):
        # Rebuilt from its name, so unpickling interns it like any other DType.
        return (DType, (str(self),))

    def __getattr__(self, attr):
        if attr in _DELEGATED:
            return getattr(self.numpy, attr)
        raise AttributeError(f"dtype {str(self)!r} has no attribute {attr!r}")

    def __eq__(self, other):
        if type(other) is DType:
            return self is other
        if isinstance(other, (str, np.dtype, type)):
            try:
                return self.numpy == np.dtype(other)
            except TypeError:   # a string that names no dtype ('floatX', 'cpu')
                return False
        return NotImplemented

    def __ne__(self, other):
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = str.__hash__

    def __repr__(self):
        return repr(str(self))

    # NumPy reads this when a DType is passed where it expects a dtype-like.
    @property
    def dtype(self):
        return self.numpy


def _register_with_numba(dtype):
    """Let ``numba.from_dtype(d)`` find a DType: its table is a dict keyed by numpy.dtype."""
    from numba.np import numpy_support
    table = numpy_support.FROM_DTYPE
    if dtype.numpy in table:
        table[dtype] = table[dtype.numpy]
