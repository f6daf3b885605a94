"""The data toolbox of the lectures: a small data set, splits, preprocessing, mini-batches.

Everything here is plain NumPy and runs before any graph is built.  The rule the
lectures insist on is that preprocessing statistics (mean, std, PCA basis) come
from the TRAINING split only and are then applied unchanged to validation and
test data, so ``fit`` and ``transform`` are kept apart.
"""

from __future__ import annotations

import os
from typing import Iterator, NamedTuple

import numpy as np

from graphnet.errors import DTypeError, GraphnetError, ShapeError

__all__ = [
    "load_digits", "Splits", "split", "Standardizer", "PCA",
    "minibatches", "synthetic_classification",
]


# --------------------------------------------------------------------------- checks

def _float_dtype(dtype, name="dtype") -> np.dtype:
    """Return ``dtype`` as a NumPy floating dtype or raise DTypeError."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise DTypeError(f"{name} must be a NumPy floating dtype, got {dtype!r}") from exc
    if dt.kind != "f":
        raise DTypeError(f"{name} must be a floating dtype such as 'float32', got {dt}")
    return dt


def _as_matrix(X, name="X") -> np.ndarray:
    """Return ``X`` as a 2-D numeric array (examples, features) or raise."""
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise DTypeError(f"{name} must hold numbers, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ShapeError(f"{name} must be 2-D (examples, features), got shape {X.shape}")
    return X


def _check_labels(X, y, xname="X", yname="y") -> np.ndarray:
    """Return ``y`` as a 1-D array with one label per row of ``X`` or raise ShapeError."""
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ShapeError(
            f"{yname} must be 1-D with one label per row of {xname} "
            f"({X.shape[0]} rows), got shape {y.shape}")
    return y


def _positive_int(value, name) -> int:
    """Return ``value`` as an int >= 1 or raise naming the argument."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise GraphnetError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _result_dtype(X: np.ndarray) -> np.dtype:
    """The dtype transforms return for input ``X``."""
    # Float input keeps its dtype (float32 stays float32); integer or bool input
    # (raw pixel counts) becomes float64, since the output is no longer integral.
    return X.dtype if X.dtype.kind == "f" else np.dtype(np.float64)


# --------------------------------------------------------------------------- data sets

#: The digits, shipped inside graphnet (45 kB) so that the main job runs on a plain install.
DIGITS_PATH = os.path.join(os.path.dirname(__file__), "digits.npz")


def load_digits(dtype="float32") -> tuple[np.ndarray, np.ndarray]:
    """Load the 8x8 handwritten digits that ship inside graphnet.

    Returns ``(X, y)``: ``X`` of shape (1797, 64) with pixel values scaled from
    0..16 to [0, 1], in ``dtype``; ``y`` of shape (1797,), int64 labels 0..9.
    The data are the test set of the UCI "Optical Recognition of Handwritten
    Digits" (E. Alpaydin and C. Kaynak, 1998; CC BY 4.0), the same copy as
    scikit-learn's ``load_digits``, stored as uint8 in ``digits.npz`` next to
    this module: nothing is downloaded and scikit-learn is not needed.
    """
    dt = _float_dtype(dtype)
    with np.load(DIGITS_PATH, allow_pickle=False) as arrays:
        images, labels = arrays["images"], arrays["labels"]
    X = (images.astype(np.float64) / 16.0).astype(dt)
    y = labels.astype(np.int64)
    return X, y


def synthetic_classification(n_samples, n_features, n_classes, seed=0,
                             separation=2.0, dtype="float32"):
    """Gaussian blobs for tests: one unit-variance blob per class.

    Class centres are drawn from N(0, separation**2) per dimension, so a larger
    ``separation`` makes the classes easier to tell apart.  Classes are balanced
    (sizes differ by at most one) and the rows are shuffled.  Returns ``(X, y)``
    with ``X`` of shape (n_samples, n_features) in ``dtype`` and ``y`` int64.
    """
    n_samples = _positive_int(n_samples, "n_samples")
    n_features = _positive_int(n_features, "n_features")
    n_classes = _positive_int(n_classes, "n_classes")
    if not np.isfinite(separation) or separation < 0:
        raise GraphnetError(f"separation must be a finite number >= 0, got {separation!r}")
    dt = _float_dtype(dtype)
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, separation, size=(n_classes, n_features))
    y = rng.permutation(np.arange(n_samples) % n_classes).astype(np.int64)
    X = centres[y] + rng.standard_normal((n_samples, n_features))
    return X.astype(dt), y


# --------------------------------------------------------------------------- splits

class Splits(NamedTuple):
    """Train, validation and test sets, each an ``(X, y)`` pair."""

    train: tuple[np.ndarray, np.ndarray]
    valid: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]


def _cut(indices: np.ndarray, fractions: np.ndarray) -> list[np.ndarray]:
    """Split ``indices`` into consecutive parts of the given fractions."""
    # Cutting at rounded cumulative boundaries makes the parts add up to
    # exactly len(indices), whatever the rounding of each part.
    bounds = np.rint(np.cumsum(fractions)[:-1] * len(indices)).astype(int)
    return np.split(indices, bounds)


def split(X, y, fractions=(0.7, 0.15, 0.15), seed=0, stratify=True) -> Splits:
    """Shuffle and split ``(X, y)`` into train, validation and test sets.

    ``fractions`` are three non-negative numbers summing to 1.  The same
    ``seed`` always gives the same split.  With ``stratify=True`` each class is
    split separately, so every part keeps the class proportions of ``y`` (part
    sizes can then differ from the targets by up to one example per class).
    """
    X = np.asarray(X)
    if X.ndim < 1:
        raise ShapeError(f"X must have an examples axis, got a scalar of shape {X.shape}")
    y = _check_labels(X, y)
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.shape != (3,) or np.any(fr < 0) or not np.isclose(fr.sum(), 1.0):
        raise GraphnetError(
            f"fractions must be three numbers >= 0 summing to 1 (train, valid, test), "
            f"got {fractions!r}")
    rng = np.random.default_rng(seed)
    if stratify:
        parts = [[], [], []]
        for label in np.unique(y):
            members = rng.permutation(np.flatnonzero(y == label))
            for part, chunk in zip(parts, _cut(members, fr)):
                part.append(chunk)
        # Shuffle again so the classes are not grouped in blocks.
        index_sets = [rng.permutation(np.concatenate(p)) for p in parts]
    else:
        index_sets = _cut(rng.permutation(len(y)), fr)
    return Splits(*[(X[idx], y[idx]) for idx in index_sets])


# --------------------------------------------------------------------------- preprocessing

class Standardizer:
    """Per-dimension standardization: subtract the training mean, divide by the training std.

    ``fit`` on the training data only; then ``transform`` validation and test
    data with those same statistics.  A dimension that is constant in the
    training data (a border pixel that is always 0) gets std 1, so it is
    centred but not divided by zero.  Float input keeps its dtype.
    """

    def __init__(self):
        self.mean_ = None
        self.std_ = None

    def fit(self, X) -> "Standardizer":
        """Compute the mean and std of every column of ``X`` (examples, features)."""
        X = _as_matrix(X)
        if X.shape[0] < 1:
            raise ShapeError("X must contain at least one example to fit a Standardizer")
        X64 = X.astype(np.float64)
        mean = X64.mean(axis=0)
        std = X64.std(axis=0)
        # A constant column can still show a std of a few ulps from rounding in
        # the mean, so "zero" is judged relative to the column's magnitude.
        constant = std <= 1e-12 * np.maximum(1.0, np.abs(mean))
        std[constant] = 1.0
        self.mean_, self.std_ = mean, std
        return self

    def _check_fitted(self, X, name="X") -> np.ndarray:
        """Raise unless fitted and ``X`` has the fitted number of columns; return ``X`` as an array."""
        if self.mean_ is None:
            raise GraphnetError("this Standardizer is not fitted yet: call fit(X_train) first")
        X = _as_matrix(X, name)
        if X.shape[1] != self.mean_.shape[0]:
            raise ShapeError(
                f"{name} has {X.shape[1]} features but the Standardizer was fitted "
                f"on {self.mean_.shape[0]}")
        return X

    def transform(self, X) -> np.ndarray:
        """Return ``(X - mean) / std`` with the fitted training statistics."""
        X = self._check_fitted(X)
        return ((X - self.mean_) / self.std_).astype(_result_dtype(X))

    def fit_transform(self, X) -> np.ndarray:
        """Fit on ``X`` and return it standardized."""
        return self.fit(X).transform(X)

    def inverse_transform(self, Z) -> np.ndarray:
        """Undo ``transform``: return ``Z * std + mean``."""
        Z = self._check_fitted(Z, "Z")
        return (Z * self.std_ + self.mean_).astype(_result_dtype(Z))


class PCA:
    """Principal component analysis by SVD of the centred training data (CS231n).

    ``transform`` projects onto the top ``n_components`` directions, which
    decorrelates the data; with ``whiten=True`` each projected dimension is also
    divided by ``sqrt(eigenvalue + eps)`` so the covariance becomes (nearly)
    the identity.  ``eps`` keeps near-zero eigenvalues from blowing up noise.
    Eigenvalues use the ``n - 1`` denominator, matching ``np.cov``.
    """

    def __init__(self, n_components=None, whiten=False, eps=1e-5):
        if n_components is not None:
            n_components = _positive_int(n_components, "n_components")
        if not np.isfinite(eps) or eps < 0:
            raise GraphnetError(f"eps must be a finite number >= 0, got {eps!r}")
        self.n_components = n_components
        self.whiten = bool(whiten)
        self.eps = float(eps)
        self.mean_ = None

    def fit(self, X) -> "PCA":
        """Find the principal directions of ``X`` (examples, features)."""
        X = _as_matrix(X)
        n, d = X.shape
        if n < 2:
            raise ShapeError(f"PCA needs at least 2 examples to estimate a covariance, got {n}")
        k = min(n, d) if self.n_components is None else self.n_components
        if k > min(n, d):
            raise GraphnetError(
                f"n_components={k} exceeds min(examples, features) = {min(n, d)} for X of shape {X.shape}")
        X64 = X.astype(np.float64)
        mean = X64.mean(axis=0)
        _, s, vt = np.linalg.svd(X64 - mean, full_matrices=False)
        # SVD fixes each direction only up to sign; make the largest entry of
        # every component positive so repeated fits give the same basis.
        signs = np.sign(vt[np.arange(len(vt)), np.argmax(np.abs(vt), axis=1)])
        vt *= np.where(signs == 0, 1.0, signs)[:, None]
        variance = s ** 2 / (n - 1)
        total = variance.sum()
        self.mean_ = mean
        self.components_ = vt[:k]
        self.explained_variance_ = variance[:k]
        self.explained_variance_ratio_ = variance[:k] / total if total > 0 else np.zeros(k)
        return self

    def _scale(self) -> np.ndarray:
        """Per-component divisor of whitening: ``sqrt(eigenvalue + eps)``."""
        return np.sqrt(self.explained_variance_ + self.eps)

    def _check_fitted(self, X, name, width) -> np.ndarray:
        """Raise unless fitted and ``X`` has the fitted number of columns; return ``X`` as an array."""
        if self.mean_ is None:
            raise GraphnetError("this PCA is not fitted yet: call fit(X_train) first")
        X = _as_matrix(X, name)
        if X.shape[1] != width:
            raise ShapeError(f"{name} must have {width} columns for this PCA, got shape {X.shape}")
        return X

    def transform(self, X) -> np.ndarray:
        """Project ``X`` onto the principal components (and whiten if asked)."""
        X = self._check_fitted(X, "X", self.mean_.shape[0])
        Z = (X - self.mean_) @ self.components_.T
        if self.whiten:
            Z = Z / self._scale()
        return Z.astype(_result_dtype(X))

    def fit_transform(self, X) -> np.ndarray:
        """Fit on ``X`` and return its projection."""
        return self.fit(X).transform(X)

    def inverse_transform(self, Z) -> np.ndarray:
        """Map projections back to the input space (exact when all components are kept)."""
        Z = self._check_fitted(Z, "Z", self.components_.shape[0])
        out_dtype = _result_dtype(Z)
        if self.whiten:
            Z = Z * self._scale()
        return (Z @ self.components_ + self.mean_).astype(out_dtype)


# --------------------------------------------------------------------------- mini-batches

def minibatches(X, y, batch_size, shuffle=True, seed=None, drop_last=False
                ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Yield ``(X_batch, y_batch)`` pairs covering every example once (one epoch).

    With ``shuffle=True`` the order is a random permutation drawn from
    ``np.random.default_rng(seed)``, so a fixed ``seed`` repeats the epoch
    exactly.  The last batch is smaller when ``batch_size`` does not divide the
    number of examples, unless ``drop_last=True`` drops it.  ``y`` may be None
    (unlabelled data, e.g. for an autoencoder); then ``y_batch`` is None.
    """
    # Validate now, not at the first next(): a generator body would defer the error.
    X = np.asarray(X)
    if X.ndim < 1:
        raise ShapeError(f"X must have an examples axis, got a scalar of shape {X.shape}")
    if y is not None:
        y = _check_labels(X, y)
    batch_size = _positive_int(batch_size, "batch_size")
    n = X.shape[0]
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    return _iterate_batches(X, y, order, batch_size, drop_last)


def _iterate_batches(X, y, order, batch_size, drop_last):
    """The generator behind :func:`minibatches` (arguments already checked)."""
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        if drop_last and len(idx) < batch_size:
            return
        yield X[idx], (None if y is None else y[idx])
