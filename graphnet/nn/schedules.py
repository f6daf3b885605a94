"""Learning-rate schedules: change an optimizer's rate between epochs.

A schedule is called once at the end of every epoch, ``schedule.step(optimizer,
epoch, metric)``, with the validation metric (lower is better: the validation
loss) and sets ``optimizer.learning_rate``. The rate is a shared scalar in the
compiled training step, so nothing is recompiled.
"""
from __future__ import annotations

import math

from graphnet.errors import GraphnetError

__all__ = ["Schedule", "Constant", "StepDecay", "HalveOnPlateau"]


class Schedule:
    """Base class: ``step`` returns the learning rate for the next epoch."""

    def step(self, optimizer, epoch, metric=None):
        raise NotImplementedError


class Constant(Schedule):
    """Leaves the rate alone."""

    def step(self, optimizer, epoch, metric=None):
        return optimizer.learning_rate


class StepDecay(Schedule):
    """Multiply the rate by ``factor`` after every ``every`` epochs (epochs count from 1)."""

    def __init__(self, every, factor=0.5):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise GraphnetError(f"StepDecay: every must be a positive integer, got {every!r}")
        if not 0 < factor <= 1:
            raise GraphnetError(f"StepDecay: factor must be in (0, 1], got {factor!r}")
        self.every, self.factor = every, float(factor)

    def step(self, optimizer, epoch, metric=None):
        if epoch % self.every == 0:
            optimizer.learning_rate = optimizer.learning_rate * self.factor
        return optimizer.learning_rate


class HalveOnPlateau(Schedule):
    """The lecture's rule: when validation stops improving, divide the rate by 2.

    After ``patience`` epochs in a row without a new best ``metric`` (0: the
    first epoch that does not improve), multiply the rate by ``factor`` (0.5)
    and start counting again; never go below ``min_lr``. An improvement must
    beat the best by more than ``threshold`` (relative).
    """

    def __init__(self, patience=0, factor=0.5, min_lr=0.0, threshold=1e-4):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise GraphnetError(f"HalveOnPlateau: patience must be an integer >= 0, got {patience!r}")
        if not 0 < factor < 1:
            raise GraphnetError(f"HalveOnPlateau: factor must be in (0, 1), got {factor!r}")
        self.patience, self.factor = patience, float(factor)
        self.min_lr, self.threshold = float(min_lr), float(threshold)
        self.best = math.inf
        self.bad_epochs = 0

    def step(self, optimizer, epoch, metric=None):
        if metric is None:
            raise GraphnetError("HalveOnPlateau needs a validation metric each epoch (give fit a validation set)")
        if metric < self.best - self.threshold * abs(self.best if math.isfinite(self.best) else 0.0):
            self.best, self.bad_epochs = float(metric), 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.patience:
                optimizer.learning_rate = max(optimizer.learning_rate * self.factor, self.min_lr)
                self.bad_epochs = 0
        return optimizer.learning_rate
