"""``theano.sandbox``: only ``rng_mrg`` is provided."""
from graphnet.compat.theano._unsupported import missing_attribute
from graphnet.compat.theano.sandbox import rng_mrg  # noqa: F401

__getattr__ = missing_attribute("theano.sandbox")
