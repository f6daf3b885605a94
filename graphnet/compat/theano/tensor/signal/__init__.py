"""``theano.tensor.signal``: only ``pool``."""
from graphnet.compat.theano._unsupported import missing_attribute
from graphnet.compat.theano.tensor.signal import pool  # noqa: F401

__getattr__ = missing_attribute("theano.tensor.signal")
