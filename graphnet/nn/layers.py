"""Layers of the lectures' feed-forward network, and a sequential model that owns them.

A layer holds its shared variables (parameters and, for batch norm, running
statistics) and, called on a symbolic input, builds its part of the graph:

    model = Sequential([Dense(64, 256, "linear", bias=False), BatchNorm(256),
                        Activation("relu"), Dropout(0.5, seed=1), Dense(256, 10, "linear")])
    g = model.classifier()              # placeholders x, y; logits, loss, accuracy
    step = model.train_function(optim.Adam(1e-3))
    evaluate = model.eval_function()

One graph serves training and evaluation: dropout and batch norm build both
forms, and a function compiled with ``training=True`` keeps the training form
(and applies the running-statistics updates) while ``training=False`` keeps the
evaluation form. Every layer records the symbolic output of its last call, so
diagnostics can fetch the activations (``model.activations``).
"""
from __future__ import annotations

import numpy as np

from graphnet.nn import init as initializers
from graphnet import ops
from graphnet.errors import GraphnetError, ShapeError
from graphnet.graph.ir import Placeholder, SharedVariable, as_variable, shape_str
from graphnet.nn.functional import batch_norm, cross_entropy, dropout, l2
from graphnet.ops.conv import conv2d
from graphnet.ops.pool import pool_2d

__all__ = ["ACTIVATIONS", "Layer", "Dense", "Conv2D", "MaxPool2D", "Flatten", "Reshape", "Activation",
           "BatchNorm", "Dropout", "Sequential", "Classifier", "mlp", "activate"]

#: The activation functions of the lectures, by the name layers accept.
ACTIVATIONS = ("linear", "sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "maxout")

# He for the rectifier family (the factor 2 makes up for the zeroed half),
# Glorot for the saturating and linear units it was derived for.
_DEFAULT_INIT = {"relu": "he_normal", "leaky_relu": "he_normal", "prelu": "he_normal", "elu": "he_normal",
                 "maxout": "he_normal", "sigmoid": "glorot_uniform", "tanh": "glorot_uniform",
                 "linear": "glorot_uniform"}


def _check_activation(name):
    if name not in ACTIVATIONS:
        raise GraphnetError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return name


def activate(name, a, alpha=None, pieces=2):
    """``g(a)`` for the activation ``name``; ``alpha`` is PReLU's slope variable."""
    if name == "linear":
        return a
    if name == "sigmoid":
        return ops.sigmoid(a)
    if name == "tanh":
        return ops.tanh(a)
    if name == "relu":
        return ops.relu(a)
    if name == "leaky_relu":
        return ops.leaky_relu(a, 0.01)
    if name == "elu":
        return ops.elu(a, 1.0)
    if name == "prelu":
        return ops.prelu(a, alpha)
    if name == "maxout":
        return ops.maxout(a, pieces)
    raise GraphnetError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")


def _as_rng(rng, seed):
    if rng is not None and seed is not None:
        raise GraphnetError("give rng or seed, not both")
    if rng is not None:
        return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return np.random.default_rng(seed)


def _positive(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise GraphnetError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- base
class Layer:
    """A piece of a network: shared variables plus a rule to build its graph.

    Subclasses register variables with ``_add(short_name, value, trainable,
    regularized)`` and implement ``build(x)``. ``__call__`` records the
    symbolic output as ``self.output``.
    """

    kind = "layer"

    def __init__(self, name=None):
        self.name = name
        self._variables = {}     # short name -> SharedVariable
        self._trainable = []     # short names of learned parameters
        self._regularized = []   # short names weight decay applies to (weights, not biases)
        self.output = None

    def _add(self, short, value, trainable=True, regularized=False):
        var = SharedVariable(value, name=f"{self.name or self.kind}.{short}")
        self._variables[short] = var
        if trainable:
            self._trainable.append(short)
        if regularized:
            self._regularized.append(short)
        return var

    def rename(self, name):
        """Set the layer's name; its variables are renamed ``name.short``."""
        self.name = name
        for short, var in self._variables.items():
            var.name = f"{name}.{short}"

    @property
    def params(self):
        """Learned parameters, for the optimizer."""
        return [self._variables[s] for s in self._trainable]

    @property
    def regularized_params(self):
        """The weights L2 decay applies to: not biases, batch-norm gamma/beta or PReLU slopes."""
        return [self._variables[s] for s in self._regularized]

    @property
    def state(self):
        """Shared variables that are not learned by gradient (batch norm's running statistics)."""
        return [v for s, v in self._variables.items() if s not in self._trainable]

    def named_variables(self):
        """``(short name, shared variable)`` for every variable: parameters and state."""
        return list(self._variables.items())

    def __call__(self, x):
        self.output = self.build(as_variable(x))
        return self.output

    def build(self, x):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}({self.describe()})"

    def describe(self):
        return ""


# --------------------------------------------------------------------------- dense
class Dense(Layer):
    """A fully connected layer: ``a = h W + b``, then ``g(a)``.

    ``activation`` is one of :data:`ACTIVATIONS`. PReLU learns one slope per unit
    (``alpha``, initialized to 0.25); maxout computes ``n_out * pieces`` linear
    pieces and keeps the max of each group of ``pieces`` consecutive columns.
    ``init`` is a name or callable from :mod:`graphnet.nn.init` (default: He for the
    rectifiers, Glorot for sigmoid, tanh and linear). Biases start at zero;
    ``bias=False`` drops them (batch norm's beta replaces the bias).
    """

    kind = "dense"

    def __init__(self, n_in, n_out, activation="relu", init=None, bias=True, pieces=2, rng=None, seed=None,
                 dtype="float32", name=None):
        super().__init__(name)
        self.n_in = _positive(n_in, "Dense: n_in")
        self.n_out = _positive(n_out, "Dense: n_out")
        self.activation = _check_activation(activation)
        self.pieces = _positive(pieces, "Dense: pieces") if activation == "maxout" else 1
        draw = initializers.get(init if init is not None else _DEFAULT_INIT[activation])
        generator = _as_rng(rng, seed)
        if self.pieces > 1:
            # Drawn as (n_in, n_out, pieces) so the fans are those of one piece;
            # flattened, column j*pieces + p is piece p of unit j, as ops.maxout groups them.
            weights = draw((self.n_in, self.n_out, self.pieces), generator, dtype)
            weights = weights.reshape(self.n_in, self.n_out * self.pieces)
        else:
            weights = draw((self.n_in, self.n_out), generator, dtype)
        self.W = self._add("W", weights, regularized=True)
        self.b = self._add("b", np.zeros(self.n_out * self.pieces, dtype)) if bias else None
        self.alpha = self._add("alpha", np.full(self.n_out, 0.25, dtype)) if activation == "prelu" else None
        self.preactivation = None

    def build(self, x):
        if x.ndim != 2 or (x.shape[1] is not None and x.shape[1] != self.n_in):
            raise ShapeError(f"{self.name or 'Dense'}: expected input of shape (?, {self.n_in}), "
                             f"got {shape_str(x.shape)}")
        a = ops.dot(x, self.W)
        if self.b is not None:
            a = ops.add(a, self.b)
        self.preactivation = a
        return activate(self.activation, a, self.alpha, self.pieces)

    def describe(self):
        extra = f", pieces={self.pieces}" if self.pieces > 1 else ""
        return f"{self.n_in} -> {self.n_out}, {self.activation}{extra}"


# --------------------------------------------------------------------------- convolutional
_CONV_ACTIVATIONS = tuple(a for a in ACTIVATIONS if a not in ("prelu", "maxout"))


class Conv2D(Layer):
    """A convolutional layer: ``a = conv2d(x, W) + b`` per output channel, then ``g(a)``.

    Input (batch, in_channels, rows, cols), filters ``W`` of shape
    (out_channels, in_channels, rows, cols), one bias per output channel.
    ``filter_size``, ``border_mode``, ``subsample``, ``filter_flip`` and
    ``filter_dilation`` are those of :func:`graphnet.nn.conv2d`. ``init`` defaults
    as for :class:`Dense` (He for the rectifiers, Glorot otherwise), with the
    convolution's fans: fan_in = in_channels * rows * cols. ``bias=False`` when a
    batch norm follows (its beta replaces the bias).
    """

    kind = "conv"

    def __init__(self, in_channels, out_channels, filter_size, activation="relu", border_mode="valid",
                 subsample=(1, 1), filter_flip=True, filter_dilation=(1, 1), init=None, bias=True, rng=None,
                 seed=None, dtype="float32", name=None):
        from graphnet.ops.conv import pair
        super().__init__(name)
        self.in_channels = _positive(in_channels, "Conv2D: in_channels")
        self.out_channels = _positive(out_channels, "Conv2D: out_channels")
        self.filter_size = pair(filter_size, "Conv2D: filter_size", 1)
        if activation not in _CONV_ACTIVATIONS:
            raise GraphnetError(f"Conv2D: activation {activation!r} is not supported; choose one of "
                                f"{', '.join(_CONV_ACTIVATIONS)}")
        self.activation = activation
        self.options = dict(border_mode=border_mode, subsample=subsample, filter_flip=filter_flip,
                            filter_dilation=filter_dilation)
        draw = initializers.get(init if init is not None else _DEFAULT_INIT[activation])
        shape = (self.out_channels, self.in_channels) + self.filter_size
        self.W = self._add("W", draw(shape, _as_rng(rng, seed), dtype), regularized=True)
        self.b = self._add("b", np.zeros(self.out_channels, dtype)) if bias else None
        self.preactivation = None

    def build(self, x):
        if x.ndim != 4 or (x.shape[1] is not None and x.shape[1] != self.in_channels):
            raise ShapeError(f"{self.name or 'Conv2D'}: expected input of shape (?, {self.in_channels}, rows, cols), "
                             f"got {shape_str(x.shape)}")
        a = conv2d(x, self.W, **self.options)
        if self.b is not None:
            a = ops.add(a, ops.expand_dims(self.b, (0, 2, 3)))
        self.preactivation = a
        return activate(self.activation, a)

    def describe(self):
        rows, cols = self.filter_size
        return f"{self.in_channels} -> {self.out_channels}, {rows}x{cols}, {self.activation}"


class MaxPool2D(Layer):
    """Pooling over windows of the last two axes (max by default; any mode of :func:`graphnet.nn.pool_2d`)."""

    kind = "pool"

    def __init__(self, ws=(2, 2), stride=None, ignore_border=True, pad=(0, 0), mode="max", name=None):
        from graphnet.ops.pool import Pool2D
        super().__init__(name)
        Pool2D(ws, ignore_border, stride, pad, mode)  # checks the parameters now, not at the first call
        self.ws, self.stride, self.ignore_border, self.pad, self.mode = ws, stride, ignore_border, pad, mode

    def build(self, x):
        return pool_2d(x, self.ws, ignore_border=self.ignore_border, stride=self.stride, pad=self.pad,
                       mode=self.mode)

    def describe(self):
        return f"ws={self.ws}" + ("" if self.mode == "max" else f", {self.mode}")


class Flatten(Layer):
    """(batch, ...) -> (batch, features): between the convolutional part and the dense one."""

    kind = "flatten"

    def build(self, x):
        return ops.flatten(x, 2)


class Reshape(Layer):
    """(batch, prod(shape)) -> (batch, *shape): feeds flat rows (the 8x8 digits) to a convolution.

    Its ``n_in`` is the flat width, so a model that starts with it reads rows
    of that width, as one that starts with a :class:`Dense` layer does.
    """

    kind = "reshape"

    def __init__(self, shape, name=None):
        super().__init__(name)
        self.shape = tuple(_positive(d, "Reshape: shape") for d in shape)
        self.n_in = int(np.prod(self.shape))

    def build(self, x):
        if x.ndim != 2 or (x.shape[1] is not None and x.shape[1] != self.n_in):
            raise ShapeError(f"{self.name or 'Reshape'}: expected input of shape (?, {self.n_in}) to reshape "
                             f"into (?, {', '.join(map(str, self.shape))}), got {shape_str(x.shape)}")
        return ops.reshape(x, (-1,) + self.shape)

    def describe(self):
        return f"-> (?, {', '.join(map(str, self.shape))})"


class Activation(Layer):
    """``g(x)`` alone, for the order Dense -> BatchNorm -> activation.

    PReLU needs ``n`` (its per-unit slopes are parameters); maxout reduces the
    width by ``pieces``.
    """

    kind = "activation"

    def __init__(self, activation, n=None, pieces=2, dtype="float32", name=None):
        super().__init__(name)
        self.activation = _check_activation(activation)
        self.pieces = _positive(pieces, "Activation: pieces")
        self.alpha = None
        if activation == "prelu":
            if n is None:
                raise GraphnetError("Activation('prelu') needs n, the number of units (one slope each)")
            self.alpha = self._add("alpha", np.full(_positive(n, "Activation: n"), 0.25, dtype))

    def build(self, x):
        return activate(self.activation, x, self.alpha, self.pieces)

    def describe(self):
        return self.activation


# --------------------------------------------------------------------------- normalization, dropout
class BatchNorm(Layer):
    """Batch normalization over the mini-batch: ``gamma * x_hat + beta`` (gamma=1, beta=0).

    ``n`` is the number of features of a 2-D input, or of channels of a 4-D
    one (a convolution's output, normalized per channel over batch, rows and
    cols).

    Training functions normalize with the batch statistics and update the
    running mean and variance (``momentum`` as PyTorch); evaluation functions
    use the running statistics. Those are the layer's ``state``.
    """

    kind = "batchnorm"

    def __init__(self, n, eps=1e-5, momentum=0.1, dtype="float32", name=None):
        super().__init__(name)
        self.n = _positive(n, "BatchNorm: n")
        self.eps, self.momentum = float(eps), float(momentum)
        self.gamma = self._add("gamma", np.ones(self.n, dtype))
        self.beta = self._add("beta", np.zeros(self.n, dtype))
        self.running_mean = self._add("running_mean", np.zeros(self.n, dtype), trainable=False)
        self.running_var = self._add("running_var", np.ones(self.n, dtype), trainable=False)

    def build(self, x):
        if x.ndim not in (2, 4) or (x.shape[1] is not None and x.shape[1] != self.n):
            raise ShapeError(f"{self.name or 'BatchNorm'}: expected input of shape (?, {self.n}) or, after a "
                             f"convolution, (?, {self.n}, rows, cols); got {shape_str(x.shape)}")
        return batch_norm(x, self.gamma, self.beta, eps=self.eps, momentum=self.momentum,
                          running_mean=self.running_mean, running_var=self.running_var)

    def describe(self):
        return str(self.n)


class Dropout(Layer):
    """Inverted dropout: drop each unit with probability ``rate`` while training."""

    kind = "dropout"

    def __init__(self, rate=0.5, seed=None, name=None):
        super().__init__(name)
        if not 0 <= rate < 1:
            raise GraphnetError(f"Dropout: rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self.seed = seed

    def build(self, x):
        return dropout(x, self.rate, seed=self.seed)

    def describe(self):
        return f"rate={self.rate}"


# --------------------------------------------------------------------------- the model
class Classifier:
    """The graph of a classifier: placeholders, logits, loss, accuracy, and every layer's output."""

    def __init__(self, x, y, logits, loss, accuracy, activations):
        self.x, self.y, self.logits, self.loss, self.accuracy = x, y, logits, loss, accuracy
        self.activations = list(activations)   # (layer name, output variable), in layer order
        self.probabilities = ops.softmax(logits)
        self.predictions = ops.argmax(logits, axis=-1)


class Sequential:
    """Layers applied in order; owns their parameters and builds the graphs.

    Layers without a name are named ``dense0``, ``batchnorm1``... by position,
    and so are their variables (``dense0.W``): the names of checkpoints.
    """

    def __init__(self, layers):
        self.layers = list(layers)
        if not self.layers:
            raise GraphnetError("Sequential: give at least one layer")
        names = set()
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise GraphnetError(f"Sequential: item {i} is a {type(layer).__name__}, not a Layer")
            layer.rename(layer.name or f"{layer.kind}{i}")
            if layer.name in names:
                raise GraphnetError(f"Sequential: two layers are named {layer.name!r}")
            names.add(layer.name)
        self.activations = []
        self._classifier = None

    # --- variables
    def _collect(self, attr):
        seen, found = set(), []
        for layer in self.layers:
            for var in getattr(layer, attr):
                if id(var) not in seen:
                    seen.add(id(var))
                    found.append(var)
        return found

    @property
    def params(self):
        """Every learned parameter, in layer order."""
        return self._collect("params")

    @property
    def regularized_params(self):
        """The weights that L2 decay applies to (no biases, gamma, beta or PReLU slopes)."""
        return self._collect("regularized_params")

    @property
    def state(self):
        """Non-learned shared variables: batch norm's running statistics."""
        return self._collect("state")

    def variables(self):
        """``{name: shared variable}`` for parameters and state: what a checkpoint holds."""
        return {f"{layer.name}.{short}": var for layer in self.layers for short, var in layer.named_variables()}

    def state_dict(self):
        """``{name: array}``: copies of every parameter and running statistic."""
        return {name: var.get_value() for name, var in self.variables().items()}

    def load_state_dict(self, arrays):
        """Set every variable from ``{name: array}``; the names must match exactly."""
        own = self.variables()
        missing, extra = sorted(set(own) - set(arrays)), sorted(set(arrays) - set(own))
        if missing or extra:
            raise GraphnetError(f"load_state_dict: missing {missing}, unexpected {extra}")
        for name, var in own.items():
            var.set_value(arrays[name])

    def save(self, path, metadata=None):
        """Write every variable to the ``.npz`` checkpoint ``path`` (atomically)."""
        from graphnet.nn import checkpoint
        checkpoint.save(path, self.state_dict(), metadata)

    def load(self, path):
        """Read a checkpoint written by :meth:`save`; returns its metadata."""
        from graphnet.nn import checkpoint
        expected = {name: (var.shape, var.dtype) for name, var in self.variables().items()}
        arrays, metadata = checkpoint.load(path, expected=expected)
        self.load_state_dict(arrays)
        return metadata

    # --- graphs
    @property
    def n_in(self):
        first = self.layers[0]
        return getattr(first, "n_in", getattr(first, "n", None))

    def forward(self, x):
        """The output graph for the symbolic input ``x``; records ``self.activations``."""
        h = as_variable(x)
        self.activations = []
        for layer in self.layers:
            h = layer(h)
            self.activations.append((layer.name, h))
        return h

    __call__ = forward

    def hidden_activations(self, activations=None):
        """``(name, variable)`` of each hidden layer output that went through a nonlinearity.

        From ``activations`` (default: those of the last ``forward`` call).
        """
        outputs = dict(self.activations if activations is None else activations)
        return [(layer.name, outputs[layer.name]) for layer in self.layers[:-1]
                if getattr(layer, "activation", "linear") != "linear" and layer.name in outputs]

    def classifier(self, dtype="float32"):
        """Placeholders ``x`` (?, n_in) and ``y`` (?,) int64 and the graph of a softmax classifier.

        Built once and cached: the training and evaluation functions share it.
        The loss is the mean cross-entropy (without weight decay).
        """
        if self._classifier is None:
            n_in = self.n_in
            if n_in is None:
                raise GraphnetError("Sequential.classifier: the first layer must say its input width "
                                    "(a convolutional model starts with Reshape((channels, rows, cols)))")
            x = Placeholder("x", (None, n_in), dtype)
            y = Placeholder("y", (None,), "int64")
            logits = self.forward(x)
            loss = cross_entropy(logits, y)
            accuracy = ops.mean(ops.cast(ops.eq(ops.argmax(logits, axis=-1), y), dtype))
            self._classifier = Classifier(x, y, logits, loss, accuracy, self.activations)
        return self._classifier

    def training_objective(self, weight_decay=0.0):
        """The loss the optimizer minimizes: cross-entropy + ``weight_decay`` * sum of W^2."""
        g = self.classifier()
        if weight_decay and self.regularized_params:
            return ops.add(g.loss, ops.mul(l2(*self.regularized_params), float(weight_decay)))
        return g.loss

    def train_function(self, optimizer, weight_decay=0.0, backend="reference", **options):
        """A compiled training step: ``step(x, y) -> [loss, accuracy]`` (training mode).

        The parameters are updated by ``optimizer``; batch norm's running
        statistics and the dropout step advance through their default updates.
        """
        from graphnet.graph.autodiff import grad
        from graphnet.function import function
        g = self.classifier()
        params = self.params
        grads = grad(self.training_objective(weight_decay), params)
        updates = optimizer.updates(params, grads)
        return function([g.x, g.y], [g.loss, g.accuracy], updates=updates, training=True, backend=backend,
                        name="train_step", **options)

    def eval_function(self, backend="reference", **options):
        """A compiled evaluation: ``evaluate(x, y) -> [loss, accuracy]`` (evaluation mode)."""
        from graphnet.function import function
        g = self.classifier()
        return function([g.x, g.y], [g.loss, g.accuracy], training=False, backend=backend,
                        name="evaluate", **options)

    def predict_function(self, backend="reference", **options):
        """A compiled prediction: ``predict(x) -> class probabilities`` (evaluation mode)."""
        from graphnet.function import function
        g = self.classifier()
        return function([g.x], g.probabilities, training=False, backend=backend, name="predict", **options)

    def activations_function(self, backend="reference", **options):
        """``fetch(x) -> [array per hidden nonlinearity]`` in evaluation mode, for diagnostics."""
        from graphnet.function import function
        g = self.classifier()
        outputs = [var for _, var in self.hidden_activations(g.activations)] or [g.logits]
        return function([g.x], outputs, training=False, backend=backend, name="activations", **options)

    def __repr__(self):
        lines = [f"  {layer.name}: {layer!r}" for layer in self.layers]
        return "Sequential(\n" + "\n".join(lines) + "\n)"


def mlp(sizes, activation="relu", batch_norm=False, dropout=0.0, input_dropout=0.0, init=None, seed=0,
        dtype="float32"):
    """A multilayer perceptron: ``sizes = [n_in, hidden..., n_classes]``.

    Each hidden block is Dense -> (BatchNorm) -> activation -> (Dropout); with
    batch norm the dense layer has no bias (beta replaces it). The last layer is
    linear (the logits). All randomness derives from ``seed``.
    """
    sizes = [_positive(s, "mlp: sizes") for s in sizes]
    if len(sizes) < 2:
        raise GraphnetError(f"mlp: sizes must list at least n_in and n_out, got {sizes}")
    if batch_norm and activation == "maxout":
        raise GraphnetError("mlp: maxout with batch_norm is not supported; use Dense(..., 'maxout') layers")
    seeds = np.random.SeedSequence(seed).generate_state(2 * len(sizes))
    layers = []
    if input_dropout:
        layers.append(Dropout(input_dropout, seed=int(seeds[-1])))
    for i, (n_in, n_out) in enumerate(zip(sizes[:-2], sizes[1:-1])):
        if batch_norm:
            layers += [Dense(n_in, n_out, "linear", init=init or _DEFAULT_INIT[activation], bias=False,
                             seed=int(seeds[2 * i]), dtype=dtype),
                       BatchNorm(n_out, dtype=dtype),
                       Activation(activation, n=n_out, dtype=dtype)]
        else:
            layers.append(Dense(n_in, n_out, activation, init=init, seed=int(seeds[2 * i]), dtype=dtype))
        if dropout:
            layers.append(Dropout(dropout, seed=int(seeds[2 * i + 1])))
    layers.append(Dense(sizes[-2], sizes[-1], "linear", init=init, seed=int(seeds[2 * len(sizes) - 2]),
                        dtype=dtype))
    return Sequential(layers)
