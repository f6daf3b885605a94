"""scan on the CUDA backend: the loop runs on the host (its reference loop) and gives the
same values and gradients as NumPy, between device kernels before and after it."""
import numpy as np

import graphnet as gn

RNG = np.random.default_rng(19)


def test_an_elman_rnn_and_its_gradient_through_the_host_loop(matches_reference):
    x, h0 = gn.placeholder("x", (3, 2, 2)), gn.placeholder("h0", (2, 3))
    wx = gn.shared(RNG.standard_normal((2, 3)).astype("float32"), name="Wx")
    wh = gn.shared((0.5 * RNG.standard_normal((3, 3))).astype("float32"), name="Wh")
    hs, _ = gn.scan(lambda x_t, h: gn.tanh(gn.dot(x_t, wx) + gn.dot(h, wh)), sequences=x * 2, outputs_info=h0,
                    name="elman")
    cost = gn.sum(hs * hs)
    fn = matches_reference([hs, cost] + gn.grad(cost, [x, wh]),
                           {x: RNG.standard_normal((3, 2, 2)).astype("float32"),
                            h0: RNG.standard_normal((2, 3)).astype("float32")}, rtol=1e-4, atol=1e-5)
    loops = [k for k in fn.kernels if "scan" in k.ops]
    assert len(loops) == 2 and all(k.device == "host" for k in loops), "forward and backward loop, on the host"
