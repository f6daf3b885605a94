"""An MNIST-format stand-in made from the embedded 8x8 digits: ``mnist.pkl.gz``'s layout, offline.

The Theano tutorials load ``mnist.pkl.gz``: a gzipped pickle of ``(train, valid,
test)``, each ``(X, y)`` with ``X`` float32 ``(n, 784)`` in [0, 1] and ``y``
integer labels. This writes the same layout from scikit-learn's 1,797 digits,
each 8x8 image upsampled to 28x28 (bilinear, ``scipy.ndimage.zoom``), split
1,197 / 300 / 300 after a fixed shuffle::

    python scripts/make_mnist_standin.py OUT.pkl.gz
"""
from __future__ import annotations

import gzip
import pickle
import sys

import numpy as np

SPLIT = (1197, 300, 300)


def mnist_standin(seed=0):
    """``(train, valid, test)`` tuples of float32 ``(n, 784)`` images in [0, 1] and int64 labels."""
    from scipy.ndimage import zoom

    from graphnet.nn.data import load_digits
    X8, y = load_digits(dtype="float64")
    images = zoom(X8.reshape(-1, 8, 8), (1, 28 / 8, 28 / 8), order=1)
    X = np.clip(images, 0.0, 1.0).reshape(len(X8), 784).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(X))
    X, y = X[order], y[order]
    cuts = np.cumsum(SPLIT)[:-1]
    return tuple((xs, ys) for xs, ys in zip(np.split(X, cuts), np.split(y, cuts)))


def write_mnist_standin(path, seed=0):
    """Write the stand-in to ``path`` as the tutorials expect it (gzipped pickle, protocol 2)."""
    with gzip.open(path, "wb") as handle:
        pickle.dump(mnist_standin(seed), handle, protocol=2)
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(write_mnist_standin(sys.argv[1]))
