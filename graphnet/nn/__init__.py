"""Network building blocks: losses, regularizers, dropout, batch norm, convolution, pooling (and layers)."""
from graphnet.nn.functional import (  # noqa: F401
    batch_norm, conv2d, cross_entropy, dropout, l2, normalize, pool_2d,
)
from graphnet.nn.layers import (  # noqa: F401
    ACTIVATIONS, Activation, BatchNorm, Classifier, Conv2D, Dense, Dropout, Flatten, Layer, MaxPool2D, Reshape,
    Sequential, activate, mlp,
)
