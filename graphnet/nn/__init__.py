"""Network building blocks: losses, regularizers, dropout, batch norm (and layers)."""
from graphnet.nn.functional import batch_norm, cross_entropy, dropout, l2, normalize  # noqa: F401
from graphnet.nn.layers import (  # noqa: F401
    ACTIVATIONS, Activation, BatchNorm, Classifier, Dense, Dropout, Layer, Sequential, activate, mlp,
)
