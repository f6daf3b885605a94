"""``theano.tensor``: graphnet's Theano idiom (``graphnet.tensor``), plus a clear error for what is missing."""
from graphnet.compat.theano._unsupported import missing_attribute
from graphnet.tensor import *  # noqa: F401,F403
from graphnet.compat.theano.tensor import nnet, shared_randomstreams  # noqa: F401,E402

__getattr__ = missing_attribute("theano.tensor")
