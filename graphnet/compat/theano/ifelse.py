"""``theano.ifelse.ifelse``: a symbolic condition choosing between two values, as ``T.switch``.

Theano evaluates only the chosen branch; graphnet computes both (``T.switch``),
which gives the same values.
"""
from graphnet.compat.theano._unsupported import missing_attribute
from graphnet.tensor import switch


def ifelse(condition, then_branch, else_branch, name=None):
    if isinstance(then_branch, (list, tuple)):
        return [switch(condition, a, b) for a, b in zip(then_branch, else_branch)]
    return switch(condition, then_branch, else_branch)


__getattr__ = missing_attribute("theano.ifelse")
