"""``theano`` for ``python -m graphnet theano SCRIPT.py``: Theano's top-level names on graphnet.

``theano.function``, ``theano.shared``, ``theano.In``, ``theano.grad``, ``theano.scan`` (and
``map``, ``reduce``, ``foldl``, ``foldr``),
``theano.config``, and the submodules ``tensor`` (with ``nnet`` and
``shared_randomstreams``), ``sandbox.rng_mrg``, ``gradient`` and ``printing``.
A name that is not here raises :class:`UnsupportedTheanoFeature`, naming it
and the script's line. Where graphnet differs from Theano on purpose, see
docs/porting-from-theano.md.
"""
from __future__ import annotations

import os

import graphnet as _gn
from graphnet.compat.theano import gradient, ifelse, printing, sandbox, tensor  # noqa: F401
from graphnet.compat.theano._unsupported import UnsupportedTheanoFeature, missing_attribute
from graphnet.function import In

__version__ = f"graphnet-{_gn.__version__}"
Param = In   # Theano's old name for In
grad = tensor.grad
scan = _gn.scan
from graphnet.ops.scan import foldl, foldr, scan_map as map, scan_reduce as reduce  # noqa: E402,F401,A001
pp = printing.pp

#: The backend theano.function compiles for: ``--backend`` of the command, or GRAPHNET_THEANO_BACKEND.
BACKEND = os.environ.get("GRAPHNET_THEANO_BACKEND", "cpu")
_MODES = {None: None, "FAST_RUN": None, "FAST_COMPILE": "reference", "DebugMode": "reference", "DEBUG_MODE": "reference"}


def function(inputs, outputs=None, mode=None, updates=None, givens=None, no_default_updates=False,
             accept_inplace=False, name=None, rebuild_strict=True, allow_input_downcast=None, profile=None,
             on_unused_input=None):
    """``theano.function`` as ``graphnet.function``: ``mode='FAST_COMPILE'`` runs the reference backend."""
    if not isinstance(mode, (str, type(None))) or mode not in _MODES:
        raise UnsupportedTheanoFeature(f"theano.function(mode={mode!r})",
                                       hint="modes FAST_RUN, FAST_COMPILE and DebugMode are understood")
    if profile:
        raise UnsupportedTheanoFeature("theano.function(profile=...)", hint="use fn.report() for kernel timings")
    return _gn.function(list(inputs), [] if outputs is None else outputs, updates=updates, givens=givens,
                        backend=_MODES[mode] or BACKEND, allow_input_downcast=bool(allow_input_downcast),
                        name=name, no_default_updates=no_default_updates)


def shared(value, name=None, strict=False, allow_downcast=None, borrow=False, **kwargs):
    """``theano.shared``: the value is copied in (``borrow`` is accepted and ignored)."""
    if kwargs:
        raise UnsupportedTheanoFeature(f"theano.shared({', '.join(sorted(kwargs))}=...)")
    return _gn.shared(value, name=name)


class _Config:
    """``theano.config``: ``floatX`` is graphnet's; the other flags scripts read have fixed values."""

    _fixed = {"device": "cpu", "mode": "FAST_RUN", "optimizer": "fast_run", "compute_test_value": "off",
              "warn_float64": "ignore", "exception_verbosity": "low", "cxx": "", "openmp": False,
              "profile": False, "blas__ldflags": "", "on_unused_input": "raise"}

    def __init__(self):
        object.__setattr__(self, "_values", dict(self._fixed))

    @property
    def floatX(self):  # noqa: N802
        return _gn.config.floatX

    def __getattr__(self, flag):
        if flag.startswith("__"):
            raise AttributeError(flag)
        try:
            return self._values[flag]
        except KeyError:
            raise UnsupportedTheanoFeature(f"theano.config.{flag}") from None

    def __setattr__(self, flag, value):
        if flag == "floatX":
            _gn.config.floatX = value
        elif flag in self._values:
            self._values[flag] = value
        else:
            raise UnsupportedTheanoFeature(f"theano.config.{flag}")


config = _Config()
__getattr__ = missing_attribute("theano")
