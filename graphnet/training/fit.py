"""The training loop of the lectures: mini-batch epochs, validation, early stopping.

    history = fit(model, splits, optimizer=optim.Adam(1e-3), epochs=30, batch_size=64,
                  patience=5, schedule=HalveOnPlateau())

``fit`` compiles the training step once (``training=True``: dropout and batch
norm in training form, running statistics updated) and the evaluation once
(``training=False``). Each epoch it shuffles the training set into mini-batches,
takes one optimizer step per batch, evaluates on the training and validation
sets, lets the schedule adjust the learning rate, and keeps the best network
seen on validation. With ``patience`` it stops after that many epochs without a
new best (the look-ahead) and, in every case, restores the best parameters.

A mini-batch loss that is NaN or infinite stops training at once, as Keras's
``TerminateOnNaN`` does: one NaN (in the data, or from a rate too high) turns
every weight into NaN within a step, and the epochs after it only waste time.
``fit`` warns with the epoch, the batch and the loss, says what to try, and
restores the best parameters (the initial ones if no epoch ended).
"""
from __future__ import annotations

import importlib.util
import math
import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from graphnet.nn.data import minibatches
from graphnet.errors import GraphnetError

__all__ = ["History", "fit", "evaluate", "resolve_backend"]

_MONITORS = {"val_loss": min, "val_accuracy": max}


def resolve_backend(backend):
    """``backend``, or ``"reference"`` if the cpu compiler asked for is not built yet."""
    if backend == "cpu" and importlib.util.find_spec("graphnet.compiler.pipeline") is None:
        return "reference"
    return backend


@dataclass
class History:
    """Per-epoch metrics of a :func:`fit` run (lists indexed by epoch - 1)."""

    epoch: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)       # mean mini-batch loss, training mode
    train_accuracy: list = field(default_factory=list)   # whole training set, evaluation mode
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    learning_rate: list = field(default_factory=list)    # the rate used during the epoch
    seconds: list = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    stop_reason: str = ""
    backend: str = ""

    def best(self):
        """The metrics of the best epoch, as a dict."""
        if self.best_epoch is None:
            return {}
        i = self.best_epoch - 1
        return {"epoch": self.best_epoch, "train_loss": self.train_loss[i],
                "train_accuracy": self.train_accuracy[i], "val_loss": self.val_loss[i],
                "val_accuracy": self.val_accuracy[i], "learning_rate": self.learning_rate[i]}

    def as_dict(self):
        return asdict(self)


def evaluate(function, X, y, batch_size=1024):
    """Mean loss and accuracy of an evaluation ``function(x, y) -> [loss, accuracy]`` over a data set."""
    total_loss = total_acc = 0.0
    for xb, yb in minibatches(X, y, batch_size, shuffle=False):
        loss, acc = function(xb, yb)
        total_loss += float(loss) * len(yb)
        total_acc += float(acc) * len(yb)
    return total_loss / len(y), total_acc / len(y)


def _unpack(train, valid):
    """``(X, y)`` pairs for training and validation from a Splits or pairs."""
    if valid is None and hasattr(train, "train") and hasattr(train, "valid"):
        train, valid = train.train, train.valid
    pairs = []
    for what, pair in (("train", train), ("valid", valid)):
        if pair is None:
            pairs.append(None)
            continue
        try:
            X, y = pair
        except (TypeError, ValueError):
            raise GraphnetError(f"fit: {what} must be an (X, y) pair, got {type(pair).__name__}") from None
        X, y = np.asarray(X), np.asarray(y)
        if len(X) != len(y) or len(y) == 0:
            raise GraphnetError(f"fit: {what} has {len(X)} examples but {len(y)} labels")
        pairs.append((X, y))
    return pairs


def _is_better(value, best, monitor):
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best if _MONITORS[monitor] is min else value > best


def fit(model, train, valid=None, optimizer=None, epochs=20, batch_size=64, *, weight_decay=0.0, patience=None,
        monitor="val_loss", schedule=None, backend="cpu", seed=0, quiet=False, verbose=False,
        checkpoint_path=None, callback=None, drop_last=True, eval_train=True, eval_batch_size=1024,
        check_numerics=False):
    """Train a :class:`~graphnet.nn.Sequential` classifier; return its :class:`History`.

    ``train`` is an ``(X, y)`` pair or a :class:`graphnet.nn.data.Splits` (then its
    ``valid`` part validates). ``optimizer`` defaults to Adam(1e-3); the loss is
    the mean cross-entropy plus ``weight_decay * sum W^2`` over the weights.
    ``patience`` (needs validation data) stops after that many epochs without a
    better ``monitor`` ("val_loss" or "val_accuracy"); the best parameters are
    restored at the end either way. ``schedule`` gets the validation loss after
    each epoch. ``backend="cpu"`` falls back to "reference" while the cpu
    compiler is not built. ``checkpoint_path`` saves the best network so far as
    an ``.npz`` (atomically; read it back with ``model.load``). ``quiet=True``
    hides the progress bar; ``verbose=True`` prints one line per epoch.
    ``callback(history)`` runs after every epoch. A non-finite mini-batch loss
    stops training with a ``RuntimeWarning`` (``history.stop_reason`` says
    where) and restores the best parameters; ``check_numerics=True`` compiles
    the step so that it raises a ``NumericsError`` naming the first node that
    makes a NaN or Inf (slower: for finding the cause).
    """
    from graphnet.nn.optim import Adam

    if monitor not in _MONITORS:
        raise GraphnetError(f"fit: monitor must be one of {', '.join(_MONITORS)}, got {monitor!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise GraphnetError(f"fit: epochs must be a positive integer, got {epochs!r}")
    (X_train, y_train), valid_pair = _unpack(train, valid)
    if patience is not None and valid_pair is None:
        raise GraphnetError("fit: early stopping (patience) needs a validation set")
    optimizer = optimizer if optimizer is not None else Adam(1e-3)
    backend = resolve_backend(backend)
    batch_size = min(int(batch_size), len(y_train))

    step = model.train_function(optimizer, weight_decay=weight_decay, backend=backend,
                                check_numerics=check_numerics)
    evaluate_fn = model.eval_function(backend=backend, check_numerics=check_numerics)

    history = History(backend=backend)
    best_value, best_state = None, None
    initial_state = model.state_dict()     # restored if a non-finite loss stops training before a best epoch
    epoch_seeds = np.random.SeedSequence(seed).generate_state(epochs, dtype=np.uint64)
    bar = _progress(epochs, quiet)
    try:
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            rate = optimizer.learning_rate
            losses, non_finite = [], None
            for batch, (xb, yb) in enumerate(minibatches(X_train, y_train, batch_size, shuffle=True,
                                                         seed=int(epoch_seeds[epoch - 1]),
                                                         drop_last=drop_last), start=1):
                loss, _ = step(xb, yb)
                if not math.isfinite(float(loss)):
                    non_finite = (batch, float(loss), not np.isfinite(xb).all())
                    break
                losses.append(float(loss))
            if non_finite is not None:
                history.stopped_early = True
                history.stop_reason = f"the loss was {non_finite[1]} in epoch {epoch}, batch {non_finite[0]}"
                best_state = best_state if best_state is not None else initial_state
                warnings.warn(_non_finite_message(epoch, *non_finite, rate, history.best_epoch),
                              RuntimeWarning, stacklevel=2)
                break
            train_loss = float(np.mean(losses))
            train_acc = evaluate(evaluate_fn, X_train, y_train, eval_batch_size)[1] if eval_train else math.nan
            val_loss, val_acc = (evaluate(evaluate_fn, *valid_pair, eval_batch_size) if valid_pair
                                 else (math.nan, math.nan))
            history.epoch.append(epoch)
            history.train_loss.append(train_loss)
            history.train_accuracy.append(train_acc)
            history.val_loss.append(val_loss)
            history.val_accuracy.append(val_acc)
            history.learning_rate.append(rate)
            history.seconds.append(time.perf_counter() - started)

            current = {"val_loss": val_loss, "val_accuracy": val_acc}[monitor] if valid_pair else epoch
            if _is_better(current, best_value, monitor if valid_pair else "val_accuracy"):
                best_value, history.best_epoch = current, epoch
                best_state = model.state_dict()
                if checkpoint_path is not None:
                    model.save(checkpoint_path, metadata={**history.best(), "backend": backend})
            _report(bar, history, verbose)
            if callback is not None:
                callback(history)
            if patience is not None and epoch - history.best_epoch >= patience:
                history.stopped_early, history.stop_reason = True, f"no better {monitor} for {patience} epochs"
                break
            if schedule is not None:
                schedule.step(optimizer, epoch, val_loss if valid_pair else None)
    finally:
        if bar is not None:
            bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


def _non_finite_message(epoch, batch, loss, bad_inputs, rate, best_epoch):
    """What ``fit`` says when a mini-batch loss is NaN or infinite: where, what it restored, what to try."""
    restored = f"the parameters of epoch {best_epoch}" if best_epoch else "the initial parameters"
    cause = ("this batch's inputs hold NaN or Inf: clean the data (np.isfinite(X).all() should be True)"
             if bad_inputs else f"if the data are finite, try a lower learning rate (it was {rate:g})")
    return (f"fit: the training loss was {loss} in epoch {epoch}, batch {batch}; stopped and restored "
            f"{restored}. {cause[0].upper()}{cause[1:]}; fit(..., check_numerics=True) raises at the first "
            f"node that makes a NaN or Inf, naming it and the line that built it.")


def _progress(epochs, quiet):
    if quiet:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    # disable=None: no bar when stderr is not a terminal (logs, CI), where it would only add noise.
    return tqdm(total=epochs, desc="training", unit="epoch", leave=False, disable=None)


def format_epoch(history, i=-1):
    """One progress line: ``epoch 3/..: loss 0.1234 train 0.9876 val 0.9812 (loss 0.0712) lr 1e-03``."""
    line = (f"epoch {history.epoch[i]:3d}  loss {history.train_loss[i]:.4f}  "
            f"train acc {history.train_accuracy[i]:.4f}")
    if not math.isnan(history.val_loss[i]):
        line += f"  val loss {history.val_loss[i]:.4f}  val acc {history.val_accuracy[i]:.4f}"
    line += f"  lr {history.learning_rate[i]:.2e}  {history.seconds[i]:.2f}s"
    if history.best_epoch == history.epoch[i]:
        line += "  *"
    return line


def _report(bar, history, verbose):
    if bar is not None:
        bar.set_postfix(loss=f"{history.train_loss[-1]:.3f}", val_acc=f"{history.val_accuracy[-1]:.3f}")
        bar.update(1)
    if verbose:
        if bar is not None:
            bar.write(format_epoch(history))
        else:
            print(format_epoch(history), flush=True)
