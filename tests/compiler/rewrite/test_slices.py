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


def test_a_backward_loop_that_no_longer_reads_the_saved_pre_activation_drops_it_and_the_forward_stack():
    from graphnet.ops.scan import Scan
    seq, h0, c0 = gn.placeholder("seq", (4, 2, 3)), gn.placeholder("h0", (2, 4)), gn.placeholder("c0", (2, 4))
    w = gn.shared((0.4 * RNG.standard_normal((3, 16))).astype("float32"), name="W")
    u = gn.shared((0.4 * RNG.standard_normal((4, 16))).astype("float32"), name="U")

    def step(x_t, h, c):
        z = gn.dot(x_t, w) + gn.dot(h, u)
        i, f, o, g = gn.sigmoid(z[:, :4]), gn.sigmoid(z[:, 4:8]), gn.sigmoid(z[:, 8:12]), gn.tanh(z[:, 12:])
        c_new = f * c + i * g
        return [o * gn.tanh(c_new), c_new]

    (hs, _), _ = gn.scan(step, sequences=seq, outputs_info=[h0, c0], name="lstm")
    grads = gn.grad(gn.sum(hs ** 2), [w, u])
    feed = [RNG.standard_normal(s).astype("float32") for s in ((4, 2, 3), (2, 4), (2, 4))]

    def loops(fn):
        return [n.op for n in fn.fgraph.nodes() if isinstance(n.op, Scan)]

    pruned = gn.function([seq, h0, c0], grads)
    kept = gn.function([seq, h0, c0], grads, disable_passes=["prune_loop_inputs"])
    (forward, backward), (forward_kept, backward_kept) = loops(pruned), loops(kept)
    assert backward.n_seqs < backward_kept.n_seqs, "the saved z is no longer read"
    assert forward.n_stacked == forward_kept.n_stacked - 1, "so the forward loop no longer stacks it"
    want = gn.function([seq, h0, c0], grads, backend="reference")(*feed)
    for got in (pruned(*feed), kept(*feed)):
        for g, w_ in zip(got, want):
            np.testing.assert_allclose(g, w_, rtol=1e-4, atol=1e-5)
