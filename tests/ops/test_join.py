"""``T.concatenate`` and ``T.stack`` against NumPy, with gradients that split the output gradient back."""
import numpy as np
import pytest

import graphnet as gn
import graphnet.tensor as T

A = np.arange(6, dtype=np.float32).reshape(2, 3)
B = -np.arange(9, dtype=np.float32).reshape(3, 3)
a, b = T.matrix("a"), T.matrix("b")


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_concatenate_matches_numpy_along_a_runtime_sized_axis(backend):
    got = gn.function([a, b], T.concatenate([a, b], axis=0), backend=backend)(A, B)
    np.testing.assert_array_equal(got, np.concatenate([A, B], axis=0))


def test_concatenate_along_the_last_axis_and_with_a_static_size():
    w = gn.shared(np.ones((2, 2), np.float32), name="w")
    joined = T.concatenate([a, w], axis=-1)
    np.testing.assert_array_equal(gn.function([a], joined, backend="reference")(A),
                                  np.concatenate([A, np.ones((2, 2))], axis=1))


def test_stack_matches_numpy_in_both_spellings():
    c = T.matrix("c")
    new, old = gn.function([a, c], [T.stack([a, c], axis=1), T.stack(a, c)], backend="reference")(A, A + 1)
    np.testing.assert_array_equal(new, np.stack([A, A + 1], axis=1))
    np.testing.assert_array_equal(old, np.stack([A, A + 1]))


def test_the_gradient_of_each_input_is_its_slice_of_the_output_gradient():
    weights = np.arange(15, dtype=np.float32).reshape(5, 3)
    cost = T.sum(T.concatenate([a, b], axis=0) * weights)
    ga, gb = gn.function([a, b], T.grad(cost, [a, b]), backend="reference")(A, B)
    np.testing.assert_array_equal(ga, weights[:2])
    np.testing.assert_array_equal(gb, weights[2:])


def test_mismatched_sizes_off_the_axis_are_refused_with_both_shapes():
    with pytest.raises(gn.ShapeError, match=r"along axis 1 .*\(2, 3\).*\(2, 4\)"):
        T.concatenate([gn.placeholder("p", (2, 3)), gn.placeholder("q", (2, 4))], axis=0)
