"""join_slice_gradients: the summed gradients of slices that tile an axis become one concatenate."""
import numpy as np

import graphnet as gn
from graphnet.ops.indexing import IncSubtensor
from graphnet.ops.join import Concatenate

RNG = np.random.default_rng(23)


def ops_of(fn):
    return {type(node.op) for node in fn.fgraph.nodes()}


def gate_cost(z, bounds):
    pieces = [z[:, lo:hi] for lo, hi in bounds]
    return sum(gn.sum(gn.tanh(p) * (k + 1)) for k, p in enumerate(pieces))


def test_four_gate_gradients_become_one_concatenate_with_the_same_values():
    z = gn.placeholder("z", (3, 8))
    grad = gn.grad(gate_cost(z, [(0, 2), (2, 4), (4, 6), (6, None)]), z)
    fn = gn.function([z], grad)
    assert Concatenate in ops_of(fn) and IncSubtensor not in ops_of(fn)
    value = RNG.standard_normal((3, 8)).astype("float32")
    want = (1 - np.tanh(value) ** 2) * np.repeat([1, 2, 3, 4], 2)
    np.testing.assert_allclose(fn(value), want, rtol=1e-5, atol=1e-6)
    off = gn.function([z], grad, disable_passes=["join_slice_gradients"])
    assert IncSubtensor in ops_of(off)
    np.testing.assert_allclose(off(value), want, rtol=1e-5, atol=1e-6)


def test_slices_that_leave_a_gap_or_overlap_keep_the_sum():
    z = gn.placeholder("z", (3, 8))
    value = RNG.standard_normal((3, 8)).astype("float32")
    for bounds in ([(0, 2), (4, 8)], [(0, 5), (4, 8)]):
        fn = gn.function([z], gn.grad(gate_cost(z, bounds), z))
        assert Concatenate not in ops_of(fn) and IncSubtensor in ops_of(fn)
        want = np.zeros((3, 8), "float32")
        for k, (lo, hi) in enumerate(bounds):
            want[:, lo:hi] += (1 - np.tanh(value[:, lo:hi]) ** 2) * (k + 1)
        np.testing.assert_allclose(fn(value), want, rtol=1e-5, atol=1e-6)
