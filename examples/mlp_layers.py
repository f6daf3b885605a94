"""The same digits classifier with layers, an optimizer and the training loop.

Dense -> BatchNorm -> activation -> Dropout blocks, Adam, the lecture's
learning-rate halving on a validation plateau, and early stopping that
restores the best network; ``--checkpoint best.npz`` saves the best
parameters to an .npz as training goes (atomically: read it back with
``model.load``). Without it nothing is written.

    python examples/mlp_layers.py [--activation relu] [--optimizer adam] [--epochs 30] [--checkpoint best.npz]
"""
import argparse

import graphnet as gn
from graphnet import data, optim
from graphnet.nn import BatchNorm, Activation, Dense, Dropout, Sequential
from graphnet.nn.schedules import HalveOnPlateau
from graphnet.training.fit import evaluate, fit

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--activation", default="relu", choices=gn.nn.ACTIVATIONS[1:])
parser.add_argument("--optimizer", default="adam",
                    choices=("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"))
parser.add_argument("--lr", type=float, default=None)
parser.add_argument("--epochs", type=int, default=30)
parser.add_argument("--backend", default="cpu")
parser.add_argument("--checkpoint", default=None, help="save the best parameters to this .npz (default: no file)")
args = parser.parse_args()

X, y = data.load_digits()
splits = data.split(X, y, seed=0)
scaler = data.Standardizer().fit(splits.train[0])
splits = data.Splits(*[(scaler.transform(Xs), ys) for Xs, ys in splits])


def block(n_in, n_out, seed):
    """Dense (no bias: beta replaces it) -> batch norm -> activation -> dropout."""
    if args.activation == "maxout":   # maxout changes the width, so it lives inside Dense
        return [Dense(n_in, n_out, "maxout", pieces=2, seed=seed), Dropout(0.3, seed=seed)]
    return [Dense(n_in, n_out, "linear", init="he_normal", bias=False, seed=seed), BatchNorm(n_out),
            Activation(args.activation, n=n_out), Dropout(0.3, seed=seed)]


model = Sequential(block(64, 256, 1) + block(256, 256, 2) + [Dense(256, 10, "linear", seed=3)])
print(model)

default_lr = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.05, "rmsprop": 1e-3, "adam": 2e-3}
optimizer = optim.get(args.optimizer, args.lr or default_lr[args.optimizer])
history = fit(model, splits, optimizer=optimizer, epochs=args.epochs, batch_size=64, weight_decay=1e-5,
              patience=6, schedule=HalveOnPlateau(patience=1), backend=args.backend, verbose=True,
              checkpoint_path=args.checkpoint)
print(f"best epoch {history.best_epoch}" + (f", its parameters saved to {args.checkpoint}" if args.checkpoint else
                                            " (--checkpoint best.npz would save its parameters)"))

_, test_accuracy = evaluate(model.eval_function(backend=history.backend), *splits.test)
print(f"test accuracy: {test_accuracy:.4f}")
