"""The one error a Theano script gets for a feature graphnet does not provide.

``UnsupportedTheanoFeature`` names the Theano feature and the script line that
used it; ``python -m graphnet theano`` prints it as one line. The compat
modules raise it from a module ``__getattr__`` (``theano.clone``), and the import hook
raises it for a submodule that does not exist (``theano.sparse``).
"""
from __future__ import annotations

import os
import sys

from graphnet.errors import GraphnetError

_GRAPHNET_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: Features known to be missing, with where they are planned.
PLANNED = {
    "theano.tensor.nnet.conv2d": "convolutions are planned (issue 20)",
    "theano.tensor.nnet.conv": "convolutions are planned (issue 20)",
    "theano.tensor.signal": "pooling is planned (issue 20)",
    "theano.tensor.signal.pool": "pooling is planned (issue 20)",
    "theano.tensor.signal.pool.pool_2d": "pooling is planned (issue 20)",
}


class UnsupportedTheanoFeature(GraphnetError, AttributeError):
    """A Theano name that graphnet's stand-in does not provide (also an AttributeError, as Theano's would be)."""

    def __init__(self, feature, where=None, hint=None):
        self.feature = feature
        self.where = where or script_line()
        self.hint = hint or PLANNED.get(feature, "see docs/porting-from-theano.md for what is supported")
        super().__init__(f"{self.where}: {feature} is not supported by graphnet's Theano stand-in ({self.hint})")


def script_line():
    """``file.py:LINE`` of the innermost frame of user code (outside graphnet and importlib)."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith("<") and not os.path.abspath(filename).startswith(_GRAPHNET_DIR + os.sep):
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


def missing_attribute(module_name):
    """A module-level ``__getattr__`` that raises UnsupportedTheanoFeature for ``module_name.attr``."""

    def __getattr__(attr):
        if attr.startswith("__"):   # __path__, __wrapped__ ... probed by tools: a plain AttributeError
            raise AttributeError(attr)
        raise UnsupportedTheanoFeature(f"{module_name}.{attr}")

    return __getattr__
