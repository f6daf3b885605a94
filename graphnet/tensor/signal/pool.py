"""``theano.tensor.signal.pool``: ``pool.pool_2d(input, ws, ignore_border, stride, pad, mode)``.

The same op as ``gn.nn.pool_2d``. Theano's pre-0.9 keyword names ``ds``, ``st``
and ``padding`` are accepted, as Theano itself still accepted them.
"""
from __future__ import annotations

from graphnet.errors import GraphnetError
from graphnet.ops.pool import MODES, pool_2d as _pool_2d  # noqa: F401

__all__ = ["pool_2d", "MODES"]


def pool_2d(input, ws=None, ignore_border=None, stride=None, pad=(0, 0), mode="max", ds=None, st=None,
            padding=None):
    """Pool windows ``ws`` over the last two axes of ``input``; ``ignore_border`` defaults to True.

    Theano warned that its default would become ``True`` and it did: graphnet
    uses ``True`` when ``ignore_border`` is not given.
    """
    if ds is not None:
        if ws is not None:
            raise GraphnetError("pool_2d: give ws or its old name ds, not both")
        ws = ds
    if ws is None:
        raise GraphnetError("pool_2d: give the window size ws, e.g. ws=(2, 2)")
    if st is not None:
        if stride is not None:
            raise GraphnetError("pool_2d: give stride or its old name st, not both")
        stride = st
    if padding is not None:
        pad = padding
    return _pool_2d(input, ws, ignore_border=True if ignore_border is None else ignore_border, stride=stride,
                    pad=pad, mode=mode)
