"""The seed MLP, built by hand: define the graph, differentiate it, compile it, run it.

No layers and no training loop: placeholders, shared weights, gn.dot, gn.relu,
gn.grad and gn.function, as in a Theano script. The network is the lectures'
a_k = h_{k-1} W_k + b_k, h_k = relu(a_k), softmax output, trained with plain
SGD on mini-batches of the standardized digits.

    python examples/mlp_by_hand.py [--epochs 20] [--backend cpu]
"""
import argparse
import importlib.util

import numpy as np

import graphnet as gn
from graphnet import data

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--epochs", type=int, default=20)
parser.add_argument("--backend", default="cpu")
args = parser.parse_args()
backend = args.backend
if backend == "cpu" and importlib.util.find_spec("graphnet.compiler.pipeline") is None:
    backend = "reference"  # the cpu compiler is not built yet

# ---- data: train/validation/test, standardized with the training statistics
X, y = data.load_digits()
(X_train, y_train), (X_valid, y_valid), (X_test, y_test) = data.split(X, y, seed=0)
scaler = data.Standardizer().fit(X_train)
X_train, X_valid, X_test = (scaler.transform(a) for a in (X_train, X_valid, X_test))

# ---- define: parameters (He initialization, zero biases) and the graph
rng = np.random.default_rng(0)
sizes = [64, 128, 128, 10]
weights = [gn.shared(rng.normal(0, np.sqrt(2 / n_in), (n_in, n_out)).astype("float32"), name=f"W{k}")
           for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1)]
biases = [gn.shared(np.zeros(n_out, "float32"), name=f"b{k}") for k, n_out in enumerate(sizes[1:], start=1)]
params = weights + biases

x = gn.placeholder("x", (None, 64))
labels = gn.placeholder("y", (None,), "int64")
h = x
for k, (W, b) in enumerate(zip(weights, biases)):
    a = gn.dot(h, W) + b
    h = gn.relu(a) if k < len(weights) - 1 else a   # the last pre-activation is the logits
logits = h
loss = gn.nn.cross_entropy(logits, labels)                       # mean -log softmax(a)[y]
cost = loss + 1e-4 * gn.nn.l2(*weights)                          # weight decay, biases excluded
accuracy = gn.mean(gn.cast(gn.eq(gn.argmax(logits, axis=-1), labels), "float32"))

# ---- differentiate: the backward pass is more graph
grads = gn.grad(cost, params)
learning_rate = 0.05
updates = [(p, p - learning_rate * g) for p, g in zip(params, grads)]

# ---- compile once, then run on mini-batches
train_step = gn.function([x, labels], loss, updates=updates, backend=backend)
evaluate = gn.function([x, labels], [loss, accuracy], backend=backend)

print(f"initial loss {float(evaluate(X_train, y_train)[0]):.3f} (log 10 = {np.log(10):.3f})")
for epoch in range(1, args.epochs + 1):
    batch_losses = [train_step(xb, yb) for xb, yb in data.minibatches(X_train, y_train, 64, seed=epoch)]
    val_loss, val_acc = evaluate(X_valid, y_valid)
    print(f"epoch {epoch:2d}  train loss {np.mean(batch_losses):.4f}  "
          f"val loss {float(val_loss):.4f}  val acc {float(val_acc):.4f}")
print(f"test accuracy: {float(evaluate(X_test, y_test)[1]):.4f}")
