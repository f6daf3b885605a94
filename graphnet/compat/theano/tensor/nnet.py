"""``theano.tensor.nnet``: graphnet's neural-network functions under Theano's names."""
from graphnet.compat.theano._unsupported import missing_attribute
from graphnet.tensor.nnet import *  # noqa: F401,F403

__getattr__ = missing_attribute("theano.tensor.nnet")
