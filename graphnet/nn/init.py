"""Parameter initializers (the lectures' rules of thumb, as functions).

Biases start at 0.  Weights start small and random, never all equal: equal
weights give every unit of a layer the same gradient, so they stay equal
forever (the symmetry problem).  The scale matters too: too small and the
activations of a deep net collapse to 0, too large and tanh units saturate.

* Glorot/Xavier: ``U[-b, b]`` with ``b = sqrt(6 / (fan_in + fan_out))`` keeps
  the variance of activations and gradients about constant through tanh layers.
* He/Kaiming: ``N(0, 2 / fan_in)``; the factor 2 makes up for ReLU zeroing half
  of its inputs.

Every initializer is called as ``init(shape, rng=None, dtype="float32")`` and
returns a new ``np.ndarray``.  Those with parameters are small classes:
``normal(std=0.1)`` builds the initializer, ``normal(std=0.1)(shape)`` draws.
``rng`` is None (fresh entropy), an int seed, or an ``np.random.Generator``.
graphnet computes ``a = h W + b``, so a dense weight has shape (n_in, n_out);
convolution filters have shape (out_channels, in_channels, rows, cols).
"""

from __future__ import annotations

import numbers

import numpy as np

from graphnet.errors import DTypeError, GraphnetError, ShapeError

__all__ = [
    "compute_fans", "zeros", "ones", "constant", "normal", "uniform",
    "glorot_uniform", "glorot_normal", "he_normal", "he_uniform", "orthogonal", "get",
    "Constant", "Normal", "Uniform", "Orthogonal",
]


# --------------------------------------------------------------------------- helpers

def _as_shape(shape) -> tuple[int, ...]:
    """Return ``shape`` as a tuple of non-negative ints or raise ShapeError."""
    dims = (shape,) if isinstance(shape, numbers.Integral) else shape
    try:
        dims = tuple(dims)
    except TypeError:
        raise ShapeError(f"shape must be an int or a tuple of ints, got {shape!r}") from None
    if not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0
               for d in dims):
        raise ShapeError(f"shape must contain non-negative ints, got {shape!r}")
    return tuple(int(d) for d in dims)


def _as_rng(rng) -> np.random.Generator:
    """Turn None, an int seed or a Generator into a Generator."""
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise GraphnetError(
        f"rng must be None, an int seed or a np.random.Generator, got {type(rng).__name__}")


def _dtype(dtype, floating: bool) -> np.dtype:
    """Return ``dtype`` as a NumPy dtype, floating if ``floating``, or raise DTypeError."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise DTypeError(f"dtype must be a NumPy dtype, got {dtype!r}") from None
    allowed = "f" if floating else "biuf"
    if dt.kind not in allowed:
        what = "a floating dtype such as 'float32'" if floating else "a numeric dtype"
        raise DTypeError(f"dtype must be {what} for this initializer, got {dt}")
    return dt


def _number(value, name, positive=False) -> float:
    """Check a hyper-parameter; a shape passed by mistake lands here, so say so."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or (positive and value <= 0):
        need = "a positive number" if positive else "a finite number"
        raise GraphnetError(
            f"{name} must be {need}, got {value!r} (initializers with parameters are "
            f"built first, then called: normal(std=0.1)(shape))")
    return float(value)


def compute_fans(shape) -> tuple[int, int]:
    """Return ``(fan_in, fan_out)`` for a parameter of ``shape``.

    * 1-D (n,): a bias or a per-unit scale; fan_in = fan_out = n.
    * 2-D (n_in, n_out): a dense weight of ``a = h W + b``.
    * 3-D (n_in, n_out, pieces): a maxout weight; each piece is a dense layer
      of its own, so the fans are n_in and n_out.
    * 4-D (out_channels, in_channels, rows, cols): convolution filters (OIHW,
      Theano's layout). Each output pixel sums in_channels * rows * cols inputs,
      and each input pixel reaches out_channels * rows * cols outputs, so
      fan_in = in_channels * rows * cols and fan_out = out_channels * rows * cols
      (Theano's tutorial and PyTorch compute them the same way).
    """
    dims = _as_shape(shape)
    if len(dims) == 1:
        return dims[0], dims[0]
    if len(dims) in (2, 3):
        return dims[0], dims[1]
    if len(dims) == 4:
        taps = dims[2] * dims[3]
        return dims[1] * taps, dims[0] * taps
    raise ShapeError(
        f"compute_fans supports 1-D, 2-D (n_in, n_out), 3-D maxout (n_in, n_out, pieces) and 4-D "
        f"convolution filters (out_channels, in_channels, rows, cols), got {dims}")


def _fans_positive(shape, who) -> tuple[tuple[int, ...], int, int]:
    """Return ``(shape, fan_in, fan_out)``, refusing shapes with a zero fan."""
    dims = _as_shape(shape)
    fan_in, fan_out = compute_fans(dims)
    if fan_in == 0 or fan_in + fan_out == 0:
        raise ShapeError(f"{who} needs a non-zero fan_in, got shape {dims}")
    return dims, fan_in, fan_out


# --------------------------------------------------------------------------- constants

def zeros(shape, rng=None, dtype="float32") -> np.ndarray:
    """All zeros: the usual bias initializer.  ``rng`` is accepted and ignored."""
    return np.zeros(_as_shape(shape), dtype=_dtype(dtype, floating=False))


def ones(shape, rng=None, dtype="float32") -> np.ndarray:
    """All ones: e.g. the batch-norm scale gamma.  ``rng`` is accepted and ignored."""
    return np.ones(_as_shape(shape), dtype=_dtype(dtype, floating=False))


class Constant:
    """Every entry equal to ``value`` (fine for biases, never for weights: symmetry)."""

    def __init__(self, value=0.0):
        self.value = _number(value, "value")

    def __call__(self, shape, rng=None, dtype="float32") -> np.ndarray:
        """Return a new array of ``shape`` filled with the value (``rng`` is ignored)."""
        return np.full(_as_shape(shape), self.value, dtype=_dtype(dtype, floating=False))

    def __repr__(self):
        return f"constant(value={self.value!r})"


# --------------------------------------------------------------------------- fixed-scale random

class Normal:
    """N(mean, std**2) entries: the lectures' "small random numbers" (std 0.01)."""

    def __init__(self, std=0.01, mean=0.0):
        self.std = _number(std, "std", positive=True)
        self.mean = _number(mean, "mean")

    def __call__(self, shape, rng=None, dtype="float32") -> np.ndarray:
        """Draw a new array of ``shape`` in ``dtype`` using ``rng``."""
        dt = _dtype(dtype, floating=True)
        return _as_rng(rng).normal(self.mean, self.std, _as_shape(shape)).astype(dt)

    def __repr__(self):
        return f"normal(std={self.std!r}, mean={self.mean!r})"


class Uniform:
    """U[-scale, scale] entries."""

    def __init__(self, scale=0.05):
        self.scale = _number(scale, "scale", positive=True)

    def __call__(self, shape, rng=None, dtype="float32") -> np.ndarray:
        """Draw a new array of ``shape`` in ``dtype`` using ``rng``."""
        dt = _dtype(dtype, floating=True)
        return _as_rng(rng).uniform(-self.scale, self.scale, _as_shape(shape)).astype(dt)

    def __repr__(self):
        return f"uniform(scale={self.scale!r})"


# --------------------------------------------------------------------------- fan-scaled random

def glorot_uniform(shape, rng=None, dtype="float32") -> np.ndarray:
    """Glorot/Xavier uniform: U[-b, b], b = sqrt(6 / (fan_in + fan_out)); for tanh layers."""
    dims, fan_in, fan_out = _fans_positive(shape, "glorot_uniform")
    bound = np.sqrt(6.0 / (fan_in + fan_out))
    return Uniform(bound)(dims, rng, dtype)


def glorot_normal(shape, rng=None, dtype="float32") -> np.ndarray:
    """Glorot/Xavier normal: N(0, 2 / (fan_in + fan_out)), the same variance as glorot_uniform."""
    dims, fan_in, fan_out = _fans_positive(shape, "glorot_normal")
    return Normal(np.sqrt(2.0 / (fan_in + fan_out)))(dims, rng, dtype)


def he_normal(shape, rng=None, dtype="float32") -> np.ndarray:
    """He/Kaiming normal: N(0, 2 / fan_in); for ReLU layers."""
    dims, fan_in, _ = _fans_positive(shape, "he_normal")
    return Normal(np.sqrt(2.0 / fan_in))(dims, rng, dtype)


def he_uniform(shape, rng=None, dtype="float32") -> np.ndarray:
    """He/Kaiming uniform: U[-b, b], b = sqrt(6 / fan_in), the same variance as he_normal."""
    dims, fan_in, _ = _fans_positive(shape, "he_uniform")
    return Uniform(np.sqrt(6.0 / fan_in))(dims, rng, dtype)


class Orthogonal:
    """A (semi-)orthogonal matrix times ``gain``: all singular values equal ``gain``.

    A 3-D maxout weight (n_in, n_out, pieces) is made orthogonal as the
    (n_in, n_out * pieces) matrix of all its pieces side by side.
    """

    def __init__(self, gain=1.0):
        self.gain = _number(gain, "gain", positive=True)

    def __call__(self, shape, rng=None, dtype="float32") -> np.ndarray:
        """Draw a new array of ``shape`` in ``dtype`` using ``rng``."""
        dims = _as_shape(shape)
        if len(dims) not in (2, 3):
            raise ShapeError(f"orthogonal needs a 2-D or 3-D maxout shape, got {dims}")
        dt = _dtype(dtype, floating=True)
        rows, cols = dims[0], int(np.prod(dims[1:]))
        a = _as_rng(rng).standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        # QR's signs are arbitrary; fixing them by diag(R) makes q uniformly
        # distributed over orthogonal matrices (Mezzadri 2007).
        q *= np.where(np.diag(r) < 0, -1.0, 1.0)
        if rows < cols:
            q = q.T
        return (self.gain * q).reshape(dims).astype(dt)

    def __repr__(self):
        return f"orthogonal(gain={self.gain!r})"


# Lower-case names, so every initializer reads the same at the call site:
# init.normal(std=0.1) next to init.he_normal.
constant = Constant
normal = Normal
uniform = Uniform
orthogonal = Orthogonal


# --------------------------------------------------------------------------- lookup by name

_BY_NAME = {
    "zeros": zeros,
    "ones": ones,
    "constant": Constant,
    "normal": Normal,
    "uniform": Uniform,
    "glorot_uniform": glorot_uniform,
    "xavier_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "xavier_normal": glorot_normal,
    "he_normal": he_normal,
    "kaiming_normal": he_normal,
    "he_uniform": he_uniform,
    "kaiming_uniform": he_uniform,
    "orthogonal": Orthogonal,
}


def get(name_or_callable):
    """Return the initializer for a name such as ``"glorot_uniform"`` or ``"he_normal"``.

    A callable is returned unchanged, so layer code can accept either.  Names
    of parameterized initializers (``"normal"``, ``"uniform"``, ``"constant"``,
    ``"orthogonal"``) give an instance with the default parameters.
    """
    # A parameterized class given bare (init.normal) would draw with the shape
    # as its std, so build it with its defaults instead.
    if any(name_or_callable is cls for cls in (Constant, Normal, Uniform, Orthogonal)):
        return name_or_callable()
    if callable(name_or_callable):
        return name_or_callable
    if isinstance(name_or_callable, str):
        found = _BY_NAME.get(name_or_callable.strip().lower())
        if found is not None:
            return found() if isinstance(found, type) else found
    raise GraphnetError(
        f"unknown initializer {name_or_callable!r}; valid names are: "
        + ", ".join(sorted(_BY_NAME)))
