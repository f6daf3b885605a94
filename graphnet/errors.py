"""The errors graphnet raises.

Every error is a :class:`GraphnetError`, so ``except gn.GraphnetError`` catches
all of them; the subclasses also derive from the matching builtin (``ValueError``,
``TypeError``, ``KeyError``) so code written against NumPy's conventions keeps
working.  Messages name the op or input, what was expected, and, for graph
nodes, the file and line of user code that built the node.
"""


class GraphnetError(Exception):
    """Base class of every error graphnet raises."""


class ShapeError(GraphnetError, ValueError):
    """Shapes do not agree: at graph-build time or for a fed array."""


class DTypeError(GraphnetError, TypeError):
    """A dtype is not accepted (an unsafe cast, an integer where a float is needed)."""


class FeedError(GraphnetError, ValueError):
    """A fed value is missing, unknown, or not what its placeholder declares."""


class GradientError(GraphnetError, ValueError):
    """A gradient was asked for that cannot be built (integer inputs, non-scalar cost)."""


class CompileError(GraphnetError, RuntimeError):
    """A compiler pass or the code generator failed on a node."""


class NumericsError(GraphnetError, FloatingPointError):
    """``check_numerics=True`` found NaN or Inf in the output of a node."""


class CheckpointError(GraphnetError, ValueError):
    """A checkpoint file is truncated, mismatched, or not a graphnet checkpoint."""


class CacheError(GraphnetError, RuntimeError):
    """The on-disk kernel cache is unusable (not writable, corrupted beyond repair)."""


class FeedShapeError(FeedError, ShapeError):
    """A fed array's shape does not fit its placeholder."""


class FeedDTypeError(FeedError, DTypeError):
    """A fed array's dtype cannot be cast safely to its placeholder's."""
