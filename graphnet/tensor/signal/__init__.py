"""``theano.tensor.signal``: only ``pool`` (``from graphnet.tensor.signal import pool``)."""
from graphnet.tensor.signal import pool  # noqa: F401
