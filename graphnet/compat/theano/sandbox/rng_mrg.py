"""``theano.sandbox.rng_mrg``: ``MRG_RandomStreams``, the same counter-based streams as ``RandomStreams``."""
from graphnet.compat.theano._unsupported import missing_attribute
from graphnet.tensor.shared_randomstreams import MRG_RandomStreams  # noqa: F401

__getattr__ = missing_attribute("theano.sandbox.rng_mrg")
