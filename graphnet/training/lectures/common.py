"""What every lecture experiment shares: its outcome, the data, and how it draws and saves figures.

An experiment measures a claim of the lectures and reports an :class:`Outcome`:
the claim in words, whether this run reproduced it (decided by a rule written
before the run, from the numbers the run measured) and those numbers, so a
test or a reader can check the verdict against them.
"""
from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Outcome", "digits", "gaussian_input", "figure", "save", "mean_ci", "fmt"]

#: The resolution of the committed figures: sharp enough to read, small enough to keep in git.
DPI = 100


@dataclass
class Outcome:
    """The result of one experiment: the claim, the verdict, what was measured, the figures written."""

    name: str
    claim: str
    reproduced: bool
    measured: str                       # one sentence: the numbers the verdict rests on
    numbers: dict = field(default_factory=dict)
    figures: list = field(default_factory=list)
    seconds: float = 0.0

    def line(self):
        """The one line of measured outcome the command prints last."""
        verdict = "REPRODUCED" if self.reproduced else "NOT REPRODUCED"
        return f"{self.name}: {verdict}: {self.claim} Measured: {self.measured}"


# --------------------------------------------------------------------------- data
_DIGITS = {}


def digits(seed=0, standardize=True):
    """The embedded 8x8 digits split 70/15/15 (stratified); standardized with the training statistics.

    ``standardize=False`` keeps the pixels in [0, 1] (what autoencoders reconstruct).
    Cached per (seed, standardize): every experiment of a run shares one copy.
    """
    from graphnet.nn import data
    key = (seed, standardize)
    if key not in _DIGITS:
        X, y = data.load_digits()
        splits = data.split(X, y, fractions=(0.7, 0.15, 0.15), seed=seed)
        if standardize:
            scaler = data.Standardizer().fit(splits.train[0])
            splits = data.Splits(*[(scaler.transform(Xs), ys) for Xs, ys in splits])
        _DIGITS[key] = splits
    return _DIGITS[key]


def gaussian_input(n, width, seed=0):
    """Unit-Gaussian input, as CS231n's initialization experiment feeds its net."""
    return np.random.default_rng(seed).standard_normal((n, width)).astype("float32")


# --------------------------------------------------------------------------- figures
def figure(width, height, **options):
    """A matplotlib Figure on the Agg canvas (no display, no pyplot state), as ``training.plots`` draws."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=DPI, **options)
    FigureCanvasAgg(fig)
    return fig


def save(fig, directory, filename, tight=True):
    """Write ``fig`` as a PNG into ``directory``; return its path.

    The PNG is re-encoded with an adaptive 256-colour palette when Pillow is
    there (matplotlib depends on it): line plots lose nothing visible and the
    file shrinks about threefold, which keeps the committed gallery small.
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, filename)
    if tight:   # figures with a colorbar lay themselves out (constrained layout)
        fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    try:
        from PIL import Image
    except ImportError:
        with open(path, "wb") as f:
            f.write(buffer.getvalue())
        return path
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB").quantize(colors=256)
    image.save(path, format="PNG", optimize=True)
    return path


# --------------------------------------------------------------------------- statistics and text
def mean_ci(values, level=0.95):
    """``(mean, half-width)`` of a Student-t confidence interval for the mean of ``values``."""
    from scipy import stats
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return float(values.mean()), math.inf
    half = stats.t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    return float(values.mean()), float(half)


def fmt(value, digits=3):
    """A number for a printout: ``-`` for None, ``diverged`` for non-finite, else ``digits`` significant."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "diverged"
    return f"{value:.{digits}g}"
