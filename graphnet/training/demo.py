"""The main job: train an MLP (or a small ConvNet) with batch norm and dropout on the handwritten digits.

    python -m graphnet demo [--model mlp|cnn] [--epochs N] [--quick] [--report-dir report] [--backend cpu]

Loads the 8x8 digits shipped inside graphnet (no download), splits them 70/15/15
(stratified), standardizes with the training statistics, and trains
64-256-256-10 (Dense -> BatchNorm -> ReLU -> Dropout per hidden layer), or with
``--model cnn`` the ConvNet of :func:`digits_convnet`, with Adam, halving the rate when the validation loss stops improving and stopping
early after a look-ahead of epochs. Prints one line per epoch and
``test accuracy: 0.XXXX`` on the held-out test split, and writes the report
folder (training curves, activation histograms, summary.json). It needs
nothing beyond a plain install: the digits ship inside graphnet, and without
matplotlib the report is ``summary.json`` alone, with one line saying how to get
the plots.
"""
from __future__ import annotations

import time

__all__ = ["run_demo", "add_parser", "digits_convnet", "MODELS"]

QUICK_EPOCHS = 6
MODELS = ("mlp", "cnn")
CNN_WEIGHT_DECAY = 1e-3


def digits_convnet(seed=0, dtype="float32"):
    """The demo's ConvNet for 8x8 digits given as rows of 64 pixels.

    Two 3x3 convolutions with half padding (16 then 32 channels), each followed
    by batch norm over its channels and ReLU (the convolutions have no bias:
    beta replaces it), a 2x2 max-pool down to 32x4x4, then Dense 512 -> 128
    ReLU, dropout 0.3, and the linear Dense 128 -> 10 logits. Trained with
    weight decay :data:`CNN_WEIGHT_DECAY` (it overfits the 1,257 training
    images within a few epochs without it).
    """
    import numpy as np

    from graphnet.nn.layers import (Activation, BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, Reshape,
                                    Sequential)
    seeds = [int(s) for s in np.random.SeedSequence(seed).generate_state(5)]
    return Sequential([
        Reshape((1, 8, 8)),
        Conv2D(1, 16, 3, "linear", border_mode="half", bias=False, seed=seeds[0], dtype=dtype),
        BatchNorm(16, dtype=dtype), Activation("relu"),
        Conv2D(16, 32, 3, "linear", border_mode="half", bias=False, seed=seeds[1], dtype=dtype),
        BatchNorm(32, dtype=dtype), Activation("relu"),
        MaxPool2D(2), Flatten(),
        Dense(32 * 4 * 4, 128, "relu", seed=seeds[2], dtype=dtype),
        Dropout(0.3, seed=seeds[3]),
        Dense(128, 10, "linear", seed=seeds[4], dtype=dtype),
    ])


def run_demo(epochs=40, quick=False, report_dir="report", backend="cpu", seed=0, quiet=False, out=print,
             model="mlp"):
    """Train, evaluate, write the report; return a dict of results (``test_accuracy``, ``history``...)."""
    import numpy as np

    from graphnet.nn import data, optim
    from graphnet.nn import mlp
    from graphnet.training.plots import matplotlib_missing, write_report
    from graphnet.nn.schedules import HalveOnPlateau
    from graphnet.training.fit import evaluate, fit, resolve_backend
    from graphnet.errors import GraphnetError

    if model not in MODELS:
        raise GraphnetError(f"demo: model must be one of {', '.join(MODELS)}, got {model!r}")
    started = time.perf_counter()
    if quick:
        epochs = min(epochs, QUICK_EPOCHS)
    backend = resolve_backend(backend)

    X, y = data.load_digits()
    splits = data.split(X, y, fractions=(0.7, 0.15, 0.15), seed=seed)
    scaler = data.Standardizer().fit(splits.train[0])
    splits = data.Splits(*[(scaler.transform(Xs), ys) for Xs, ys in splits])
    if model == "cnn":
        sizes = "convnet"
        network = digits_convnet(seed=seed)
        described = ("ConvNet 1x8x8 -[3x3 conv 16, BN, ReLU]-[3x3 conv 32, BN, ReLU]-[max-pool 2]-128-10, "
                     f"dropout 0.3, weight decay {CNN_WEIGHT_DECAY:g}")
        weight_decay = CNN_WEIGHT_DECAY
    else:
        sizes = [X.shape[1], 256, 256, 10]
        network = mlp(sizes, activation="relu", batch_norm=True, dropout=0.3, seed=seed)
        described = f"{'-'.join(map(str, sizes))} MLP, batch norm + ReLU + dropout 0.3"
        weight_decay = 0.0
    optimizer = optim.Adam(2e-3)

    out(f"digits: {len(splits.train[1])} train / {len(splits.valid[1])} validation / {len(splits.test[1])} test "
        f"examples, {X.shape[1]} features, 10 classes")
    out(f"model: {described}, Adam lr 2e-3, backend {backend}")
    history = fit(network, splits, optimizer=optimizer, epochs=epochs, batch_size=64, patience=8,
                  weight_decay=weight_decay,
                  schedule=HalveOnPlateau(patience=1), backend=backend, seed=seed, quiet=quiet, verbose=True)
    if history.stopped_early:
        out(f"stopped early after epoch {history.epoch[-1]}: {history.stop_reason}")
    out(f"best epoch {history.best_epoch}: validation accuracy {history.best()['val_accuracy']:.4f} "
        f"(parameters restored)")

    test_loss, test_accuracy = evaluate(network.eval_function(backend=backend), *splits.test)
    train_seconds = time.perf_counter() - started
    files = write_report(report_dir, history, network, splits.valid[0], backend=backend,
                         summary={"test_loss": test_loss, "test_accuracy": test_accuracy, "backend": backend,
                                  "model": sizes, "seconds": train_seconds, "seed": seed})
    if matplotlib_missing():
        out(matplotlib_missing())
    out(f"report written to {report_dir}/ ({', '.join(sorted(name for name in files))})")
    out(f"test accuracy: {test_accuracy:.4f}")
    return {"test_accuracy": test_accuracy, "test_loss": test_loss, "history": history, "files": files,
            "model": network, "seconds": time.perf_counter() - started, "backend": backend,
            "n_test": int(np.asarray(splits.test[1]).size)}


def add_parser(subparsers):
    """Register the ``demo`` subcommand on an argparse ``subparsers`` object."""
    parser = subparsers.add_parser("demo", help="train an MLP or a ConvNet on the handwritten digits and write a report",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mlp", choices=MODELS,
                        help="mlp (64-256-256-10, the default) or cnn (two conv + BN + ReLU blocks, max-pool)")
    parser.add_argument("--epochs", type=int, default=40, help="maximum number of epochs (default 40)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a short run (at most {QUICK_EPOCHS} epochs) for smoke tests")
    parser.add_argument("--report-dir", default="report", help="folder for the plots (default: report)")
    parser.add_argument("--backend", default="cpu", choices=("cpu", "reference", "cuda"),
                        help="graphnet backend (default cpu; falls back to reference while cpu is not built)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, initialization and shuffling")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_main)
    return parser


def _main(args):
    if args.epochs < 1:
        raise SystemExit("demo: --epochs must be at least 1")
    run_demo(epochs=args.epochs, quick=args.quick, report_dir=args.report_dir, backend=args.backend,
             seed=args.seed, quiet=args.quiet, model=args.model)
    return 0
