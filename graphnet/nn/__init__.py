"""Network building blocks: losses, regularizers, dropout, batch norm (and layers)."""
from graphnet.nn.functional import batch_norm, cross_entropy, dropout, l2, normalize  # noqa: F401
