"""Matrix products: the tiled shared-memory GEMM, its fused epilogue, transposes read in place."""
import numpy as np
import pytest

import graphnet as gn
from graphnet.compiler.render import cuda as cuda_kernels
from graphnet.compiler.runtime.cuda import CudaProgram, require_cuda
from graphnet.compiler.pipeline import optimize
from graphnet.compiler.schedule.plan import plan_kernels
from graphnet.graph.fgraph import FunctionGraph

RNG = np.random.default_rng(3)


def matrix(*shape, dtype="float32"):
    return RNG.standard_normal(shape).astype(dtype)


def run_with_tuning(outputs, feeds, tuning):
    """Compile for CUDA with explicit block shapes and run once."""
    graph = optimize(FunctionGraph(tuple(feeds), tuple(outputs)))
    program = CudaProgram(graph, plan_kernels(graph), require_cuda(), tuning=tuning)
    values, _ = program.run(feeds)
    return program, values


# Tiles of 8 x 8 with depth 4 in the simulator: these sizes end mid-tile on every axis.
SIZES = [(1, 1, 1), (3, 5, 2), (9, 10, 13), (8, 8, 8), (17, 3, 9)]


@pytest.mark.parametrize("m,n,k", SIZES, ids=lambda v: str(v))
def test_gemm_handles_sizes_that_are_not_multiples_of_the_tile(matches_reference, m, n, k):
    a, b = gn.placeholder("a", (None, k)), gn.placeholder("b", (k, n))
    fn = matches_reference([gn.dot(a, b)], {a: matrix(m, k), b: matrix(k, n)})
    assert [(kernel.kind, kernel.ran) for kernel in fn.kernels] == [("gemm", "tiled")]


@pytest.mark.parametrize("trans_a,trans_b", [(True, False), (False, True), (True, True)])
def test_gemm_reads_transposed_operands_in_place(matches_reference, trans_a, trans_b):
    a = gn.placeholder("a", (13, 6) if trans_a else (6, 13))
    b = gn.placeholder("b", (9, 13) if trans_b else (13, 9))
    product = gn.dot(a.T if trans_a else a, b.T if trans_b else b)
    fn = matches_reference([product], {a: matrix(*a.shape), b: matrix(*b.shape)})
    assert [kernel.kind for kernel in fn.kernels] == ["gemm"], "no transpose is materialized"


def test_the_gpu_tile_size_handles_ragged_edges():
    # 64 x 64 tiles of depth 16 (what a GPU runs), on 70 x 65 x 19 (slow in the simulator: one test).
    a, b = gn.placeholder("a", (None, 19)), gn.placeholder("b", (19, 65))
    av, bv = matrix(70, 19), matrix(19, 65)
    program, (product,) = run_with_tuning([gn.dot(a, b)], {a: av, b: bv}, cuda_kernels.GPU_TUNING)
    np.testing.assert_allclose(product, av @ bv, rtol=1e-5, atol=1e-5)


def test_bias_and_activation_run_in_the_gemm_epilogue(matches_reference):
    x = gn.placeholder("x", (None, 7))
    W, b = gn.shared(matrix(7, 10), name="W"), gn.shared(matrix(10), name="b")
    fn = matches_reference([gn.relu(gn.dot(x, W) + b)], {x: matrix(11, 7)})
    [kernel] = fn.kernels
    assert kernel.ops == ["dot", "add", "relu"] and kernel.kind == "gemm"
    assert not fn.program.refusals, "the product's consumer is fused, not refused"


def test_the_product_is_still_written_when_something_else_reads_it(matches_reference):
    x = gn.placeholder("x", (None, 4))
    W = gn.shared(matrix(4, 5), name="W")
    z = gn.dot(x, W)
    matches_reference([gn.sigmoid(z), z], {x: matrix(6, 4)})


def test_weight_gradients_read_activations_transposed(matches_reference):
    x = gn.placeholder("x", (None, 5))
    W = gn.shared(matrix(5, 4), name="W")
    loss = gn.sum(gn.tanh(gn.dot(x, W)))
    fn = matches_reference(gn.grad(loss, [W, x]), {x: matrix(9, 5)})
    assert "transpose" not in [k.kind for k in fn.kernels]


def test_vector_products(matches_reference):
    v, M = gn.placeholder("v", (6,)), gn.placeholder("M", (6, 6))
    matches_reference([gn.dot(v, M), gn.dot(M, v), gn.dot(v, v)], {v: matrix(6), M: matrix(6, 6)})


def test_float64_products(matches_reference):
    a, b = gn.placeholder("a", (None, 5), "float64"), gn.placeholder("b", (5, 3), "float64")
    matches_reference([gn.dot(a, b) * 2.0], {a: matrix(4, 5, dtype="float64"), b: matrix(5, 3, dtype="float64")},
                      rtol=1e-12)


def test_integer_products_fall_back_to_the_host(matches_reference):
    a, b = gn.placeholder("a", (3, 4), "int64"), gn.placeholder("b", (4, 2), "int64")
    fn = matches_reference([gn.dot(a, b)], {a: RNG.integers(-5, 5, (3, 4)), b: RNG.integers(-5, 5, (4, 2))})
    assert [k.device for k in fn.kernels] == ["host"]


def test_the_gemm_epilogue_is_planned_and_reported_identically_on_cpu_and_cuda():
    x = gn.placeholder("x", (None, 5))
    W = gn.shared(matrix(5, 4), name="W")
    b = gn.shared(matrix(4), name="b")
    loss = gn.sum(gn.relu(gn.dot(x, W) + b) ** 2)
    gW, gb = gn.grad(loss, [W, b])
    updates = [(W, W - 0.1 * gW), (b, b - 0.1 * gb)]
    cpu = gn.function([x], loss, updates=updates, backend="cpu")
    cuda = gn.function([x], loss, updates=updates, backend="cuda")

    def name(var):   # each compile rewrites the graph: compare what a variable is, not its id
        return var.owner.op.name if var.owner is not None else var.describe()

    def described(fn):
        plan = fn.program.plan
        return ([k.ops for k in plan.kernels],
                [(name(v), n.op.name, why) for v, n, why in plan.refusals],
                [(name(v), n.op.name, how) for v, n, how in plan.fusions])

    assert described(cpu) == described(cuda)
    kernels, _, fusions = described(cuda)
    assert ["transpose", "dot", "mul", "sub"] in kernels, kernels   # dW = x.T @ dz, with the SGD update as epilogue
    assert any("GEMM's epilogue" in how for _, _, how in fusions)
    assert [k.ops for k in cuda.kernels] == [k.ops for k in cpu.kernels]
    xb, start = matrix(3, 5), (W.get_value(), b.get_value())
    on_cuda = cuda(xb), W.get_value(), b.get_value()
    W.set_value(start[0])
    b.set_value(start[1])
    on_cpu = cpu(xb), W.get_value(), b.get_value()
    for got, want in zip(on_cuda, on_cpu):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
