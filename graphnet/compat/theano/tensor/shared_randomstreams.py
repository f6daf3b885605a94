"""``theano.tensor.shared_randomstreams``: ``RandomStreams`` on graphnet's counter-based RNG."""
from graphnet.compat.theano._unsupported import missing_attribute
from graphnet.tensor.shared_randomstreams import RandomStreams  # noqa: F401

__getattr__ = missing_attribute("theano.tensor.shared_randomstreams")
