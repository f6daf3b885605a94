"""Views rename device arrays; what has no kernel runs on the host and says so."""
import numpy as np

import graphnet as gn

RNG = np.random.default_rng(4)


def test_reshapes_are_free_views(matches_reference):
    x = gn.placeholder("x", (4, 6))
    outputs = [gn.reshape(x, (2, 12)) * 2, gn.expand_dims(gn.sum(x, axis=1), 1) + x, gn.squeeze(gn.expand_dims(x, 0), 0)]
    fn = matches_reference(outputs, {x: RNG.standard_normal((4, 6)).astype("float32")})
    assert all(k.device == "gpu" for k in fn.kernels)


def test_a_transpose_read_elementwise_is_materialized(matches_reference):
    x = gn.placeholder("x", (3, 5))
    fn = matches_reference([gn.exp(x.T) + 1], {x: RNG.standard_normal((3, 5)).astype("float32")})
    assert "transpose" in [k.kind for k in fn.kernels]


def test_higher_dimensional_transposes_fall_back_to_the_host(matches_reference):
    x = gn.placeholder("x", (2, 3, 4))
    fn = matches_reference([gn.transpose(x, (2, 0, 1)) * 3], {x: RNG.standard_normal((2, 3, 4)).astype("float32")})
    assert [k.device for k in fn.kernels] == ["host", "gpu"]


def test_unfused_kernels_give_the_same_results(matches_reference):
    x = gn.placeholder("x", (None, 4))
    W, b = gn.shared(RNG.standard_normal((4, 3)).astype("float32"), name="W"), gn.shared(np.ones(3, "float32"))
    h = gn.relu(gn.dot(x, W) + b)
    fn = matches_reference([h, gn.sum(h * h)], {x: RNG.standard_normal((5, 4)).astype("float32")}, fuse=False)
    assert [k.ops for k in fn.kernels if k.kind == "gemm"] == [["dot"]], "fuse=False: no GEMM epilogue"


def test_a_function_that_only_reads_its_inputs(matches_reference):
    x = gn.placeholder("x", (2, 2))
    matches_reference([x, gn.constant(np.arange(3.0, dtype="float32"))], {x: np.ones((2, 2), "float32")})
