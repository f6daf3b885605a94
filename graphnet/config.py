"""Global settings that Theano scripts read: ``graphnet.config.floatX``.

``floatX`` is the float dtype of the ``graphnet.tensor`` constructors
(``T.matrix``, ``T.vector``...) and of ``T.cast(x, 'floatX')``. It is read when a
variable is made, so set it before building the graph::

    graphnet.config.floatX = "float64"

Only ``"float32"`` and ``"float64"`` are accepted; anything else raises a
:class:`~graphnet.errors.DTypeError` at the assignment, not later in a kernel.
"""
import sys
import types

from graphnet.errors import DTypeError

FLOAT_DTYPES = ("float32", "float64")


def _checked_float(value):
    import numpy as np
    try:
        name = np.dtype(value).name
    except TypeError:
        name = None
    if name not in FLOAT_DTYPES:
        raise DTypeError(f"config.floatX must be one of {', '.join(FLOAT_DTYPES)}, got {value!r}")
    return name


class _ConfigModule(types.ModuleType):
    """This module, with ``floatX`` validated on assignment."""

    @property
    def floatX(self):  # noqa: N802  (Theano's name)
        return self.__dict__["_floatX"]

    @floatX.setter
    def floatX(self, value):  # noqa: N802
        self.__dict__["_floatX"] = _checked_float(value)


_floatX = "float32"
sys.modules[__name__].__class__ = _ConfigModule
