"""The RBM tutorial's CD-k and PCD-k updates, a Gibbs chain sampled with scan and random streams,
against a NumPy implementation drawing the same random numbers.

The model is written as the Deep Learning Tutorials' ``rbm.py`` writes it (``T.dot``,
``theano_rng.binomial(size=h1_mean.shape, n=1, p=h1_mean)``, ``scan`` over
``gibbs_hvh`` with ``outputs_info=[None] * 5 + [chain_start]``, ``consider_constant``),
in a few lines of our own. graphnet's random numbers are a pure function of
(draw seed, step, element): draw ``j`` of a stream has seed ``RandomStreams(s)._next_seed()``
called ``j + 1`` times, and every step of a loop draws at the stream's step plus
the loop's step, which is how the NumPy oracle reproduces each draw.
"""
import numpy as np
import pytest

import graphnet as gn
import graphnet.tensor as T
from graphnet.ops import rng
from graphnet.tensor.shared_randomstreams import RandomStreams

N_VIS, N_HID, BATCH, SEED = 6, 4, 3, 1234


class RBM:
    def __init__(self, W, hbias, vbias, theano_rng):
        self.W, self.hbias, self.vbias, self.theano_rng = W, hbias, vbias, theano_rng
        self.input = T.matrix("input")
        self.params = [W, hbias, vbias]

    def free_energy(self, v):
        wx_b = T.dot(v, self.W) + self.hbias
        return -T.sum(T.log(1 + T.exp(wx_b)), axis=1) - T.dot(v, self.vbias)

    def sample_h_given_v(self, v):
        mean = T.nnet.sigmoid(T.dot(v, self.W) + self.hbias)
        return mean, self.theano_rng.binomial(size=mean.shape, n=1, p=mean, dtype="float32")

    def sample_v_given_h(self, h):
        mean = T.nnet.sigmoid(T.dot(h, self.W.T) + self.vbias)
        return mean, self.theano_rng.binomial(size=mean.shape, n=1, p=mean, dtype="float32")

    def gibbs_hvh(self, h):
        v_mean, v_sample = self.sample_v_given_h(h)
        h_mean, h_sample = self.sample_h_given_v(v_sample)
        return [v_mean, v_sample, h_mean, h_sample]

    def get_cost_updates(self, lr, k, persistent=None):
        _, ph_sample = self.sample_h_given_v(self.input)
        chain_start = ph_sample if persistent is None else persistent
        (nv_means, nv_samples, nh_means, nh_samples), updates = gn.scan(
            self.gibbs_hvh, outputs_info=[None, None, None, chain_start], n_steps=k, name="gibbs_hvh")
        chain_end = nv_samples[-1]
        cost = T.mean(self.free_energy(self.input)) - T.mean(self.free_energy(chain_end))
        gparams = T.grad(cost, self.params, consider_constant=[chain_end])
        for gparam, param in zip(gparams, self.params):
            updates[param] = param - gparam * T.cast(lr, dtype="float32")
        if persistent is not None:
            updates[persistent] = nh_samples[-1]
        return cost, updates


def numpy_cd(x, w, hb, vb, lr, k, step, persistent=None):
    """One CD-k (PCD-k with ``persistent``) update in NumPy, drawing as graphnet does."""
    seeds = RandomStreams(SEED)
    draw_seeds = [seeds._next_seed() for _ in range(3)]   # the outer h draw, then the loop's v and h draws

    def bernoulli(seed, at, p):
        u = rng.uniform01_array(seed, at, p.shape, np.float32).astype(np.float64)
        return (u < p.astype(np.float64)).astype(np.float32)

    def sigmoid(z):
        return (1 / (1 + np.exp(-z))).astype(np.float32)

    h = bernoulli(draw_seeds[0], step, sigmoid(x @ w + hb)) if persistent is None else persistent
    for i in range(k):
        v = bernoulli(draw_seeds[1], step + i, sigmoid(h @ w.T + vb))
        h_mean = sigmoid(v @ w + hb)
        h = bernoulli(draw_seeds[2], step + i, h_mean)
    # d(mean F(x) - mean F(v)): F(v) = -sum softplus(v W + hb) - v vb
    n = len(x)
    px, pv = sigmoid(x @ w + hb), sigmoid(v @ w + hb)
    gw = -(x.T @ px - v.T @ pv) / n
    ghb = -(px.sum(0) - pv.sum(0)) / n
    gvb = -(x.sum(0) - v.sum(0)) / n
    return w - lr * gw, hb - lr * ghb, vb - lr * gvb, h


def make_rbm():
    init = np.random.default_rng(3)
    W = gn.shared((0.5 * init.standard_normal((N_VIS, N_HID))).astype("float32"), name="W")
    hbias = gn.shared(np.zeros(N_HID, "float32"), name="hbias")
    vbias = gn.shared((0.1 * init.standard_normal(N_VIS)).astype("float32"), name="vbias")
    return RBM(W, hbias, vbias, RandomStreams(SEED))


@pytest.mark.parametrize("persistent", [False, True], ids=["cd", "pcd"])
def test_an_rbm_cd_k_update_matches_numpy_given_the_same_random_numbers(backend, persistent):
    rbm = make_rbm()
    x = (np.random.default_rng(5).random((BATCH, N_VIS)) < 0.5).astype("float32")
    chain = gn.shared(np.zeros((BATCH, N_HID), "float32"), name="persistent_chain") if persistent else None
    cost, updates = rbm.get_cost_updates(lr=0.1, k=3, persistent=chain)
    step_counter = rbm.theano_rng.step
    assert step_counter in updates, "the loop's random stream comes back in the updates"
    train = gn.function([rbm.input], cost, updates=updates, backend=backend)
    w, hb, vb = (p.get_value() for p in rbm.params)
    state = np.zeros((BATCH, N_HID), "float32") if persistent else None
    for call in range(2):   # the second call draws at the steps the first one advanced to
        step = int(step_counter.get_value())
        w, hb, vb, h = numpy_cd(x, w, hb, vb, 0.1, 3, step, state)
        train(x)
        for param, want in zip(rbm.params, (w, hb, vb)):
            np.testing.assert_allclose(param.get_value(), want, rtol=1e-5, atol=1e-6)
        if persistent:
            state = h
            np.testing.assert_array_equal(chain.get_value(), h)
    assert step_counter.get_value() == 6, "each call advances the stream by the loop's 3 steps"
