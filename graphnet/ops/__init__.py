"""Every op constructor, one namespace: ``from graphnet import ops``."""
from graphnet.ops.elementwise import (  # noqa: F401
    abs, add, cast, elu, eq, exp, greater, greater_equal, leaky_relu, less, less_equal, log, maximum,
    minimum, mul, neg, neq, ones_like, pow, relu, second, sigmoid, sign, softplus, sqrt, sub, tanh,
    true_div, where, zeros_like,
)
from graphnet.ops.join import concatenate, stack  # noqa: F401
from graphnet.ops.conv import conv2d  # noqa: F401
from graphnet.ops.linalg import dot  # noqa: F401
from graphnet.ops.rounding import (  # noqa: F401
    ceil, expm1, floor, floor_div, log1p, mod, round_half_away_from_zero, round_half_to_even,
)
from graphnet.ops.stop_gradient import stop_gradient  # noqa: F401
from graphnet.ops.nn import log_softmax, mode_select, softmax, softmax_cross_entropy  # noqa: F401
from graphnet.ops.pool import pool_2d  # noqa: F401
from graphnet.ops.reduce import argmax, max, mean, min, moments, size_of, sum, var  # noqa: F401
from graphnet.ops.shape import expand_dims, flatten, reshape, squeeze, sum_to, transpose  # noqa: F401
from graphnet.graph.ir import as_variable


def prelu(x, alpha):
    """Parametric ReLU: ``x`` above zero, ``alpha * x`` below, ``alpha`` learned per feature."""
    x = as_variable(x)
    return where(greater(x, 0), x, mul(alpha, x))


def maxout(x, pieces):
    """Max over ``pieces`` consecutive linear pieces of the last axis: (..., F*k) -> (..., F)."""
    from graphnet.errors import ShapeError
    x = as_variable(x)
    features = x.shape[-1]
    if features is None or features % pieces:
        raise ShapeError(f"maxout: the last axis ({features}) must be a known multiple of pieces={pieces}")
    grouped = reshape(x, tuple(-1 if d is None else d for d in x.shape[:-1]) + (features // pieces, pieces))
    return max(grouped, axis=-1)
