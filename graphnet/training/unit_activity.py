"""How often each hidden unit is active over a whole data set, and which ReLUs are dead.

    activity = unit_activity(model, X_train)
    activity.dead_fraction()            # units inactive on every example / all rectifier units
    activity.rates["dense1"]            # per unit: fraction of examples with output > 0

The Monitor (``diagnostics``) calls a ReLU dead when it is inactive on one
probe batch; the lecture's dead ReLU "never activates" on the training set, so
a unit that fires on one example in a thousand is alive. This pass compiles
one evaluation-mode function that counts, per unit, the examples with a
positive output, and runs it over the data in batches: its memory does not
grow with the data set.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from graphnet import ops
from graphnet.errors import GraphnetError

__all__ = ["UnitActivity", "unit_activity"]

#: Activations whose units can die: a non-positive output passes no gradient (ELU's and
#: leaky ReLU's small negative slope keeps them alive, but "never positive" is still news).
RECTIFIERS = ("relu", "leaky_relu", "prelu", "elu")


@dataclass
class UnitActivity:
    """Per rectifier layer: the fraction of examples on which each unit's output is positive."""

    rates: dict = field(default_factory=dict)     # layer name -> array (units,)
    examples: int = 0
    finite: bool = True                           # False: some output was NaN/inf (the net diverged)

    def dead(self, layer):
        """The number of units of ``layer`` never active on the data set."""
        return int(np.sum(self.rates[layer] == 0))

    def dead_fractions(self):
        """``{layer: fraction of its units never active}``."""
        return {name: float(np.mean(rate == 0)) for name, rate in self.rates.items()}

    def dead_fraction(self):
        """Dead units over all rectifier units of the network (NaN if the outputs were not finite)."""
        if not self.finite:
            return math.nan
        units = sum(rate.size for rate in self.rates.values())
        return sum(self.dead(name) for name in self.rates) / units if units else 0.0

    def __str__(self):
        lines = [f"unit activity over {self.examples} examples"]
        for name, rate in self.rates.items():
            lines.append(f"  {name}: {self.dead(name)} of {rate.size} units dead, "
                         f"median unit active on {np.median(rate):.0%} of examples")
        if not self.finite:
            lines.append("  (non-finite outputs: the network diverged; 'dead' is undefined)")
        return "\n".join(lines)


def unit_activity(model, X, batch_size=1024, backend="reference"):
    """Count, for every rectifier unit of ``model``, the examples of ``X`` with a positive output.

    Evaluation mode (dropout off, batch norm's running statistics), so the
    answer is about the trained network, not one noisy mini-batch. Raises if
    the model has no rectifier layer.
    """
    from graphnet.function import function
    from graphnet.nn.data import minibatches
    g = model.classifier()
    kinds = {layer.name: getattr(layer, "activation", "linear") for layer in model.layers}
    hidden = [(name, h) for name, h in model.hidden_activations(g.activations) if kinds[name] in RECTIFIERS]
    if not hidden:
        raise GraphnetError(f"unit_activity: the model has no rectifier layer ({', '.join(RECTIFIERS)}); "
                            f"its hidden activations are {sorted(set(kinds.values()) - {'linear'})}")
    X = np.asarray(X)
    if X.ndim != 2 or len(X) == 0:
        raise GraphnetError(f"unit_activity: X must be a non-empty (examples, features) matrix, got shape {X.shape}")
    outputs = []
    for _, h in hidden:
        outputs.append(ops.sum(ops.cast(ops.greater(h, 0), h.dtype), axis=0))       # active examples per unit
        outputs.append(ops.sum(ops.cast(ops.neq(h, h), h.dtype)))                   # NaN count (NaN != NaN)
    count = function([g.x], outputs, training=False, backend=backend, name="unit_activity")
    active = [np.zeros(h.shape[1], np.float64) for _, h in hidden]
    finite = True
    for xb, _ in minibatches(X, None, batch_size, shuffle=False):
        values = count(xb)
        for i in range(len(hidden)):
            active[i] += values[2 * i]
            finite = finite and float(values[2 * i + 1]) == 0.0
    return UnitActivity({name: a / len(X) for (name, _), a in zip(hidden, active)}, len(X), finite)
