"""Counter-based random numbers: the same dropout mask on every backend.

A draw is a pure function of ``(seed, stream, index)``:

- ``seed`` is the user's seed (an integer in ``[0, 2**64)``);
- ``stream`` is a counter that changes per use, e.g. the training step, or the
  step combined with the dropout node's id, so each step draws a fresh mask;
- ``index`` is the element's flat C-order index in the tensor.

There is no generator state, so the value of an element does not depend on
which thread computes it, in what order, or on how many threads there are; the
backward pass regenerates a dropout mask from the same three numbers instead of
storing it.

The hash is SplitMix64 (Steele, Lea and Flood, 2014): ``stream_key`` hashes the
seed, then picks the ``stream``-th output of a SplitMix64 generator started
there; element ``index`` is the ``index``-th output of a SplitMix64 generator
started at that key.  SplitMix64 passes BigCrush, costs a few integer
multiplies per draw, and needs nothing but 64-bit unsigned arithmetic, which
NumPy, Numba CPU and CUDA all wrap around the same way.

Which form each backend uses:

- **reference (NumPy)**: :func:`uniform01_array` and :func:`keep_mask_array`,
  which run the scalar functions below on ``uint64`` index arrays (NumPy
  broadcasts every operation in them);
- **CPU (Numba)** and **CUDA (numba.cuda)**: the code generator pastes
  :func:`scalar_source` into each generated kernel module, under the decorator
  of its target (``@numba.njit(cache=True)`` or ``@cuda.jit(device=True)``),
  so the kernels inline the very same text and the module's cache key covers it;
- **Python and tests**: the scalar functions themselves on NumPy ``uint64``
  scalars, or the compiled ``*_nb`` versions.

Every integer operation in the scalar functions is between ``np.uint64``
values: in Numba, mixing ``uint64`` with a signed integer promotes to
``float64`` and would silently lose bits.  Called from Python on NumPy
*scalars*, NumPy reports the intended wrap-around as an "overflow encountered"
RuntimeWarning; run such calls under ``np.errstate(over="ignore")`` (the array
helpers do).
"""

import inspect

import numba
import numpy as np
from numba.extending import register_jitable

from graphnet.errors import GraphnetError

# register_jitable keeps each function a plain Python function and also lets
# compiled code (njit or cuda.jit) call it, so the scalar functions can call
# one another in every form.  scalar_source() drops these decorator lines.


@register_jitable
def splitmix64(x):
    """The SplitMix64 output for generator state ``x`` (before its increment)."""
    z = np.uint64(x) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@register_jitable
def stream_key(seed, stream):
    """The 64-bit key of one (seed, stream) pair; distinct streams give distinct keys."""
    base = splitmix64(np.uint64(seed))
    return splitmix64(base + np.uint64(stream) * np.uint64(0x9E3779B97F4A7C15))


@register_jitable
def random_bits(seed, stream, index):
    """64 random bits for element ``index`` of ``(seed, stream)``."""
    key = stream_key(seed, stream)
    return splitmix64(key + np.uint64(index) * np.uint64(0x9E3779B97F4A7C15))


@register_jitable
def uniform01(seed, stream, index):
    """A float64 in [0, 1) from the top 53 random bits: a multiple of 2**-53."""
    bits = random_bits(seed, stream, index) >> np.uint64(11)
    return np.float64(bits) * np.float64(1.1102230246251565e-16)  # 2**-53


@register_jitable
def uniform01_f32(seed, stream, index):
    """A float32 in [0, 1) from the top 24 random bits: a multiple of 2**-24."""
    bits = random_bits(seed, stream, index) >> np.uint64(40)
    return np.float32(bits) * np.float32(5.960464477539063e-08)  # 2**-24


@register_jitable
def keep_mask(seed, stream, index, keep_prob):
    """Whether dropout keeps element ``index``: true with probability ``keep_prob``.

    The 24-bit uniform is exact in float64, and ``keep_prob`` is compared as a
    float64 everywhere, so every backend takes the same decision; pass
    ``keep_prob`` as a float64 (a Python float literal in generated code).
    """
    return np.float64(uniform01_f32(seed, stream, index)) < np.float64(keep_prob)


SCALAR_FUNCTIONS = (splitmix64, stream_key, random_bits, uniform01, uniform01_f32, keep_mask)
"""The scalar functions, callees first, in the order :func:`scalar_source` emits them."""


def scalar_source(decorator="@numba.njit(cache=True)"):
    """The Python source of :data:`SCALAR_FUNCTIONS`, each under ``decorator``.

    Generated kernel modules paste this text; it needs ``import numpy as np``
    (and whatever ``decorator`` names) at the top of the module.  For CUDA pass
    ``decorator="@cuda.jit(device=True)"``; an empty string gives plain Python.
    """
    chunks = []
    for function in SCALAR_FUNCTIONS:
        lines = inspect.getsource(function).splitlines()
        body = [line for line in lines if not line.startswith("@")]
        if decorator:
            body.insert(0, decorator)
        chunks.append("\n".join(body) + "\n")
    return "\n\n".join(chunks)


# Compiled versions for Python callers and tests.  Kernels do not call these:
# they inline the pasted scalar_source() so a kernel's cache key covers the RNG.
splitmix64_nb = numba.njit(cache=True)(splitmix64)
uniform01_nb = numba.njit(cache=True)(uniform01)
uniform01_f32_nb = numba.njit(cache=True)(uniform01_f32)
keep_mask_nb = numba.njit(cache=True)(keep_mask)


def _as_uint64(value, name):
    if isinstance(value, (np.unsignedinteger, np.bool_)):
        return np.uint64(value)
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise GraphnetError(f"rng: {name} must be an integer, got {value!r}") from None
    if not 0 <= value < 2**64:
        raise GraphnetError(f"rng: {name} must lie in [0, 2**64), got {value}")
    return np.uint64(value)


def _flat_indices(shape):
    size = int(np.prod(shape, dtype=np.int64))
    return np.arange(size, dtype=np.uint64).reshape(shape)


def uniform01_array(seed, stream, shape, dtype=np.float64):
    """Uniforms in [0, 1) for every element of an array of ``shape`` (an int or a tuple).

    Element ``i`` (flat C-order) equals ``uniform01(seed, stream, i)`` for float64,
    or ``uniform01_f32(seed, stream, i)`` for float32: bitwise, as in compiled kernels.
    """
    seed, stream = _as_uint64(seed, "seed"), _as_uint64(stream, "stream")
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        draw = uniform01
    elif dtype == np.float32:
        draw = uniform01_f32
    else:
        raise GraphnetError(f"rng: uniform01_array makes float32 or float64, not {dtype}")
    with np.errstate(over="ignore"):
        return np.asarray(draw(seed, stream, _flat_indices(shape)), dtype=dtype)


def keep_mask_array(seed, stream, shape, keep_prob):
    """The dropout keep mask (bool) for every element of an array of ``shape``."""
    seed, stream = _as_uint64(seed, "seed"), _as_uint64(stream, "stream")
    with np.errstate(over="ignore"):
        return np.asarray(keep_mask(seed, stream, _flat_indices(shape), float(keep_prob)))
