"""A small ConvNet on the embedded 8x8 digits: conv -> batch norm -> ReLU, twice, then max-pool and dense.

The lecture's advice, batch norm after every convolutional layer, as layers:

    Reshape (1, 8, 8) -> Conv2D 3x3, 16 (half padding, no bias) -> BatchNorm -> ReLU
                      -> Conv2D 3x3, 32 (half padding, no bias) -> BatchNorm -> ReLU
                      -> MaxPool2D 2x2 -> Flatten (512) -> Dense 128 ReLU -> Dropout 0.3 -> Dense 10

trained with Adam (lr 2e-3, halved when the validation loss stops improving,
early stopping) and weight decay 1e-3 on the 70/15/15 stratified split, standardized with the
training statistics. Prints the test accuracy and the time taken, and writes
the report folder (training curves, activation histograms, summary.json).

    python examples/convnet_digits.py [--epochs 30] [--backend cpu] [--seed 0] [--report-dir report_cnn]

The same network trains under ``python -m graphnet demo --model cnn``.
"""
import argparse
import time

from graphnet.nn import data, optim
from graphnet.training.demo import CNN_WEIGHT_DECAY, digits_convnet
from graphnet.training.fit import evaluate, fit, resolve_backend
from graphnet.nn.schedules import HalveOnPlateau
from graphnet.training.plots import write_report

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--epochs", type=int, default=30)
parser.add_argument("--backend", default="cpu")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--report-dir", default="report_cnn")
args = parser.parse_args()
backend = resolve_backend(args.backend)
started = time.perf_counter()

X, y = data.load_digits()
splits = data.split(X, y, fractions=(0.7, 0.15, 0.15), seed=args.seed)
scaler = data.Standardizer().fit(splits.train[0])
splits = data.Splits(*[(scaler.transform(Xs), ys) for Xs, ys in splits])

model = digits_convnet(seed=args.seed)
print(model)
history = fit(model, splits, optimizer=optim.Adam(2e-3), epochs=args.epochs, batch_size=64, patience=8,
              weight_decay=CNN_WEIGHT_DECAY,
              schedule=HalveOnPlateau(patience=1), backend=backend, seed=args.seed, quiet=True, verbose=True)
test_loss, test_accuracy = evaluate(model.eval_function(backend=backend), *splits.test)
seconds = time.perf_counter() - started
write_report(args.report_dir, history, model, splits.valid[0], backend=backend,
             summary={"test_loss": test_loss, "test_accuracy": test_accuracy, "backend": backend,
                      "model": "convnet", "seconds": seconds, "seed": args.seed})
print(f"best epoch {history.best_epoch}, {seconds:.1f} s on backend {backend}; report in {args.report_dir}/")
print(f"test accuracy: {test_accuracy:.4f}")
