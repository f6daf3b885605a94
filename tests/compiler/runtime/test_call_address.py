"""A compiled function called through its address from compiled code (``runtime/call_address.py``),
as a loop's two halves call the loop (``split_loop.both_halves``)."""
import numba
import numpy as np
import pytest

from graphnet.compiler.runtime.call_address import address_of, call_at


@numba.njit
def axpy(y, x, a):
    for i in range(y.shape[0]):
        y[i] += a * x[i]


@numba.njit
def twice(x):
    return 2 * x


@numba.njit(parallel=True)
def both(address, y0, x0, a0, y1, x1, a1):
    for half in numba.prange(2):
        if half == 0:
            call_at(address, (y0, x0, a0))
        else:
            call_at(address, (y1, x1, a1))


def test_two_halves_call_the_function_at_its_address_each_on_its_arguments():
    y, x = np.zeros(11), np.arange(11.0)
    axpy(y[:5], x[:5], 1.0)   # compiled for 'A'-layout views, as a loop's halves are
    y[:] = 0
    address = address_of(axpy, axpy.signatures[0])
    both(address, y[:5], x[:5], 2.0, y[5:], x[5:], 3.0)
    np.testing.assert_array_equal(y, np.r_[2 * x[:5], 3 * x[5:]])


def test_only_a_function_returning_none_is_called_by_address():
    twice(1.0)
    with pytest.raises(TypeError, match="return None"):
        address_of(twice, twice.signatures[0])
