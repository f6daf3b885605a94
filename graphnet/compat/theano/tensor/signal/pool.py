"""``theano.tensor.signal.pool``: ``pool_2d`` (graphnet's, with Theano's argument names)."""
from graphnet.compat.theano._unsupported import missing_attribute
from graphnet.tensor.signal.pool import *  # noqa: F401,F403

__getattr__ = missing_attribute("theano.tensor.signal.pool")
