"""The seed's MLP (784-1024-1024-10, ReLU, softmax cross-entropy, SGD), drawn for docs/inspecting.md.

    python docs/img/mlp_graphs.py --write     # redraws the pictures in docs/img/
    python -m graphnet dot docs/img/mlp_graphs.py --output mlp.svg   # the same graph from the CLI
"""
import os
import sys

import numpy as np

import graphnet as gn
from graphnet.viz import function_to_dot, kernel_report, render, to_dot

rng = np.random.default_rng(0)
x = gn.placeholder("x", (None, 784))
y = gn.placeholder("y", (None,), "int64")
sizes = [(784, 1024), (1024, 1024), (1024, 10)]
params, h = [], x
for i, (fan_in, fan_out) in enumerate(sizes, start=1):
    W = gn.shared(rng.normal(0, np.sqrt(2 / fan_in), (fan_in, fan_out)).astype("float32"), name=f"W{i}")
    b = gn.shared(np.zeros(fan_out, "float32"), name=f"b{i}")
    params += [W, b]
    h = gn.dot(h, W) + b
    if i < len(sizes):
        h = gn.relu(h)
loss = gn.nn.cross_entropy(h, y)
loss.name = "loss"
grads = gn.grad(loss, params)
updates = [(p, p - 0.1 * g) for p, g in zip(params, grads)]

__graphnet_outputs__ = [loss]

if __name__ == "__main__" and "--write" in sys.argv:
    here = os.path.dirname(os.path.abspath(__file__))
    for ext in ("svg", "png"):
        render(to_dot(loss, title="the seed MLP: forward graph"), os.path.join(here, f"mlp_forward.{ext}"))
        render(to_dot(loss, updates=updates, title="the seed MLP: forward, backward (grad) and SGD updates"),
               os.path.join(here, f"mlp_backward.{ext}"))
    step = gn.function([x, y], loss, updates=updates, backend="cpu", name="train_step")
    step(rng.normal(size=(128, 784)).astype("float32"), rng.integers(0, 10, 128))  # sizes the buffers
    for ext in ("svg", "png"):
        render(function_to_dot(step, title="the seed MLP training step: fused kernel plan (batch 128)"),
               os.path.join(here, f"mlp_fused.{ext}"))
    print(kernel_report(step, input_shapes={"x": (128, 784), "y": (128,)}))
