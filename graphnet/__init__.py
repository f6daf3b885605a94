"""graphnet: declare a network as a symbolic graph, differentiate it symbolically,
compile it into fused Numba kernels, and run it on mini-batches.

    x = gn.placeholder("x", (None, 784))
    W = gn.shared(np.zeros((784, 10), "float32"), name="W")
    loss = gn.nn.cross_entropy(gn.dot(x, W), y)
    step = gn.function([x, y], loss, updates=[(W, W - 0.1 * gn.grad(loss, W))])
"""
__version__ = "0.1.0"

from graphnet import _moved

_moved.install()   # the flat layout's module paths (graphnet.train, graphnet.optim, ...) still import

from graphnet.errors import (  # noqa: F401
    CacheError, CheckpointError, CompileError, DTypeError, FeedError, GradientError, GraphnetError,
    NumericsError, ShapeError,
)
from graphnet.graph.ir import Constant, Placeholder, SharedVariable, Variable, as_variable  # noqa: F401
from graphnet.ops import (  # noqa: F401
    abs, argmax, cast, dot, elu, eq, exp, expand_dims, greater, greater_equal, leaky_relu, less, less_equal,
    log, log_softmax, max, maximum, maxout, mean, min, minimum, moments, neq, prelu, relu, reshape, sigmoid,
    sign, size_of, softmax, softplus, sqrt, squeeze, sum, tanh, transpose, var, where,
)
from graphnet.graph.autodiff import grad  # noqa: F401
from graphnet.ops.rounding import ceil, expm1, floor, log1p  # noqa: F401
from graphnet.ops.stop_gradient import stop_gradient  # noqa: F401
from graphnet.ops.scan import scan  # noqa: F401
from graphnet.function import Function, In, function  # noqa: F401
from graphnet.session import Session  # noqa: F401
from graphnet import nn  # noqa: F401
from graphnet.nn import checkpoint, data, init  # noqa: F401
from graphnet.viz import debugprint, function_to_dot, kernel_report, render, to_dot, to_networkx  # noqa: F401
from graphnet.compiler.runtime.threads import set_num_threads  # noqa: F401


def placeholder(name, shape, dtype="float32"):
    """A graph input fed on every call; ``None`` in ``shape`` is any size (the batch)."""
    return Placeholder(name, shape, dtype)


def shared(value, name=None, shape=None, borrow=False):
    """A variable whose value persists between calls (a parameter).

    The value is copied in (``borrow`` is accepted for Theano scripts and
    ignored: graphnet never aliases the caller's array). ``shape`` may declare
    ``None`` dimensions whose size ``set_value`` may later change.
    """
    return SharedVariable(value, name=name, shape=shape)


def constant(value, name=None, dtype=None):
    """A value fixed in the graph."""
    import numpy as np
    return Constant(np.asarray(value, dtype=dtype), name=name)


# The Theano idiom: ``graphnet.config.floatX``, ``import graphnet.tensor as T``, indexing helpers.
from graphnet import config  # noqa: E402,F401
from graphnet.ops.indexing import OutOfBoundsError, alloc, arange  # noqa: E402,F401
from graphnet.graph.gradcheck import check_grad  # noqa: E402,F401
