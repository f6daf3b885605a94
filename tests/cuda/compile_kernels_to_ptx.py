"""Compile every kernel of a few CUDA programs to PTX, without a GPU.

The simulator runs kernels as Python, which accepts code that the CUDA target
would refuse; this compiles each generated kernel for a real GPU (compute
capability 7.5) with the argument types it is launched with. Run by
``test_cuda_ptx.py`` in a child process (the simulator must be off). Exit
status 0: all compiled; 3: no NVVM/NVRTC here (the CUDA toolkit's compiler
libraries, e.g. from ``pip install 'numba-cuda[cu13]'``); 1: a kernel failed.
"""
import sys
import types

import numpy as np

import graphnet as gn
from graphnet import optim
from graphnet.compiler.runtime.cuda import CudaProgram, CudaTarget
from graphnet.compiler.rewrite.mode import specialize_mode
from graphnet.compiler.pipeline import optimize
from graphnet.compiler.schedule.plan import plan_kernels
from graphnet.graph.fgraph import FunctionGraph

CC = (7, 5)


def training_step():
    """The MLP with batch norm, dropout, L2 and Adam: products, epilogues, every reduction, cross-entropy."""
    rng = np.random.default_rng(0)
    x, y = gn.placeholder("x", (None, 5)), gn.placeholder("y", (None,), "int64")
    W1 = gn.shared(rng.standard_normal((5, 8)).astype("float32"), name="W1")
    gamma, beta = gn.shared(np.ones(8, "float32")), gn.shared(np.zeros(8, "float32"))
    W2, b2 = gn.shared(rng.standard_normal((8, 4)).astype("float32")), gn.shared(np.zeros(4, "float32"))
    hidden = gn.nn.dropout(gn.relu(gn.nn.batch_norm(gn.dot(x, W1), gamma, beta)), 0.5, seed=1)
    loss = gn.nn.cross_entropy(gn.dot(hidden, W2) + b2, y) + 1e-3 * gn.nn.l2(W1, W2)
    params = [W1, gamma, beta, W2, b2]
    updates = optim.Adam(1e-3).updates(params, gn.grad(loss, params))
    return specialize_mode(FunctionGraph((x, y), (loss,), tuple(updates)), True)


def assorted_kernels():
    """What the training step lacks: row reductions, softmax, a materialized transpose, ints, bools, float64."""
    x = gn.placeholder("x", (None, 6))
    d = gn.placeholder("d", (None, 3), "float64")
    i = gn.placeholder("i", (None, 4), "int64")
    outputs = (gn.softmax(x), gn.log_softmax(x), gn.sum(gn.exp(x), axis=1), gn.max(x, axis=0), gn.exp(x.T),
               gn.sum(i * 3, axis=1), gn.where(i > 0, i, -i), gn.dot(d, gn.transpose(d)) + 1.0,
               gn.sigmoid(d) + gn.softplus(d) + gn.log(d) + gn.sqrt(d), gn.argmax(x, axis=1),
               x > 0.5, gn.cast(i, "bool"), gn.sum(x > 0, axis=0), gn.elu(x) * gn.leaky_relu(x) ** 2)
    return FunctionGraph((x, d, i), outputs)


def conv_network():
    """A conv-BN-ReLU-maxpool layer in training and its backward: every kernel of the convolution family."""
    rng = np.random.default_rng(0)
    x = gn.placeholder("images", (None, 2, 6, 6))
    W = gn.shared(rng.standard_normal((3, 2, 3, 3)).astype("float32"), name="W")
    b = gn.shared(np.zeros(3, "float32"), name="b")
    gamma, beta = gn.shared(np.ones(3, "float32")), gn.shared(np.zeros(3, "float32"))
    a = gn.nn.conv2d(x, W, border_mode="half") + gn.expand_dims(b, (0, 2, 3))
    y = gn.nn.pool_2d(gn.relu(gn.nn.batch_norm(a, gamma, beta)), (2, 2))
    z = gn.nn.pool_2d(gn.relu(gn.nn.conv2d(x, W, subsample=(2, 2)) + gn.expand_dims(b, (0, 2, 3))), (2, 2),
                      mode="average_inc_pad", ignore_border=False)
    loss = gn.sum(y * y) + gn.sum(z)
    return specialize_mode(FunctionGraph((x,), (loss,) + tuple(gn.grad(loss, [x, W, b, gamma]))), True)


def main():
    from numba import cuda
    import numba.cuda.dispatcher as dispatcher
    # Device functions are compiled for "the current device", which needs a GPU:
    # name the target's compute capability instead.
    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=CC)
    try:
        cuda.compile_ptx(lambda a: None, (cuda.float32[::1],), cc=CC)
    except Exception as exc:  # noqa: BLE001
        print(f"no CUDA compiler libraries: {type(exc).__name__}: {exc}")
        return 3
    failed = 0
    for graph in (training_step(), assorted_kernels(), conv_network()):
        optimized = optimize(graph)
        program = CudaProgram(optimized, plan_kernels(optimized), CudaTarget(cuda, simulator=False))
        for name, function, argtypes in program.kernel_signatures():
            try:
                ptx, _ = cuda.compile_ptx(function, tuple(argtypes), cc=CC)
                print(f"ok   {name}: {len(ptx)} bytes of PTX")
            except Exception as exc:  # noqa: BLE001 - report every failure, then fail
                failed += 1
                print(f"FAIL {name}: {type(exc).__name__}: {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
