"""``theano.gradient``: ``grad``, ``disconnected_grad``, ``zero_grad``, ``consider_constant``."""
from graphnet.compat.theano._unsupported import missing_attribute
from graphnet.tensor import disconnected_grad, grad, zero_grad  # noqa: F401

consider_constant = disconnected_grad   # Theano's older spelling of the same op
__getattr__ = missing_attribute("theano.gradient")
