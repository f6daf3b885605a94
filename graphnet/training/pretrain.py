"""Unsupervised pre-training: greedy layer-wise denoising autoencoders, then supervised fine-tuning.

    result = pretrain_and_finetune(train=(X_few, y_few), valid=(X_val, y_val), unlabeled=X_all,
                                   hidden=(100, 100), activation="sigmoid", noise=0.25)
    result.model          # the fine-tuned Sequential
    result.history        # train.fit's History of the fine-tuning
    result.pretrain_loss  # {layer: reconstruction loss per epoch}

The lectures' recipe (Vincent et al. 2008): train the first hidden layer as a
denoising autoencoder on the inputs (unlabelled data will do), keep its
encoder, compute its codes, train the second layer as an autoencoder of those
codes, and so on up; then put the classifier layer on top and fine-tune the
whole network with the labels (``train.fit``).

Each autoencoder corrupts its input with masking noise (each input set to 0
with probability ``noise``, drawn in the graph by the dropout RNG, a fresh mask
every step), encodes ``h = g(x~ W + b)`` with the very parameters of the MLP's
layer (so nothing is copied afterwards), and decodes with ``W.T`` (tied
weights) or a matrix of its own (untied). Inputs in [0, 1] (pixels, sigmoid
codes) are reconstructed through a sigmoid with the cross-entropy loss; other
inputs linearly with the squared error.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graphnet.nn import init as initializers
from graphnet import ops
from graphnet.nn.data import minibatches
from graphnet.errors import GraphnetError
from graphnet.graph.ir import Placeholder, SharedVariable

__all__ = ["pretrain_layerwise", "pretrain_and_finetune", "PretrainResult", "denoising_autoencoder"]


@dataclass
class PretrainResult:
    model: object
    history: object = None                                 # train.History of the fine-tuning
    pretrain_loss: dict = field(default_factory=dict)      # layer name -> mean reconstruction loss per epoch


def _hidden_dense_layers(model):
    """The Dense layers below the output layer; pre-training supports Dense (+ Dropout) stacks."""
    layers = [layer for layer in model.layers if layer.kind != "dropout"]
    if any(layer.kind != "dense" for layer in layers):
        kinds = sorted({layer.kind for layer in layers} - {"dense"})
        raise GraphnetError(f"pretrain: supports stacks of Dense (and Dropout) layers, got {', '.join(kinds)}")
    hidden = layers[:-1]
    if not hidden:
        raise GraphnetError("pretrain: the model has no hidden layer to pre-train")
    for layer in hidden:
        if layer.activation in ("maxout", "prelu", "linear"):
            raise GraphnetError(f"pretrain: {layer.name} has activation {layer.activation!r}; use sigmoid, tanh, "
                                "relu, leaky_relu or elu")
        if layer.b is None:
            raise GraphnetError(f"pretrain: {layer.name} has no bias")
    return hidden


def _encode(dense, x):
    from graphnet.nn.layers import activate
    return activate(dense.activation, ops.add(ops.dot(x, dense.W), dense.b))


def denoising_autoencoder(dense, noise=0.25, tied=True, loss="auto", inputs_in_unit_interval=False, seed=0):
    """The graph of one denoising autoencoder around ``dense``: ``(x, loss, params)``.

    ``params`` are the encoder's ``W, b``, the decoder's bias and, untied, its
    weight matrix. ``loss`` is "cross_entropy" (sigmoid decoder, inputs in
    [0, 1]), "squared" (linear decoder) or "auto" (cross-entropy when
    ``inputs_in_unit_interval``). The loss is summed over features and averaged
    over the batch.
    """
    from graphnet.nn.functional import dropout
    if not 0 <= noise < 1:
        raise GraphnetError(f"denoising_autoencoder: noise must be in [0, 1), got {noise}")
    if loss == "auto":
        loss = "cross_entropy" if inputs_in_unit_interval else "squared"
    if loss not in ("cross_entropy", "squared"):
        raise GraphnetError(f"denoising_autoencoder: loss must be 'auto', 'cross_entropy' or 'squared', got {loss!r}")
    dtype = dense.W.dtype
    x = Placeholder("x", (None, dense.n_in), dtype)
    # Masking noise: inverted dropout's mask without its 1/keep scaling.
    corrupted = ops.mul(dropout(x, noise, seed=seed), 1.0 - noise) if noise else x
    h = _encode(dense, corrupted)
    decoder_bias = SharedVariable(np.zeros(dense.n_in, dtype), name=f"{dense.name}.decoder_b")
    params = [dense.W, dense.b, decoder_bias]
    if tied:
        decoder_weights = ops.transpose(dense.W)
    else:
        rng = np.random.default_rng(seed)
        decoder_weights = SharedVariable(initializers.get("glorot_uniform")((dense.n_out, dense.n_in), rng, dtype),
                                         name=f"{dense.name}.decoder_W")
        params.append(decoder_weights)
    a = ops.add(ops.dot(h, decoder_weights), decoder_bias)
    if loss == "cross_entropy":
        # -(x log sigmoid(a) + (1 - x) log(1 - sigmoid(a))) = softplus(a) - x a, without overflow.
        per_unit = ops.sub(ops.softplus(a), ops.mul(x, a))
    else:
        difference = ops.sub(a, x)
        per_unit = ops.mul(ops.mul(difference, difference), 0.5)
    return x, ops.mean(ops.sum(per_unit, axis=1)), params


def pretrain_layerwise(model, X, noise=0.25, tied=True, epochs=10, lr=1e-3, batch_size=32, seed=0,
                       backend="reference", verbose=False):
    """Greedy layer-wise denoising-autoencoder pre-training of ``model``'s hidden layers, in place.

    ``X`` is unlabelled input. Layer ``k`` is trained as an autoencoder of the
    codes of layers ``0..k-1`` (computed once, without noise) for ``epochs``
    epochs with Adam(``lr``). Returns ``{layer name: mean loss per epoch}``.
    """
    from graphnet.function import function
    from graphnet.nn.optim import Adam
    hidden = _hidden_dense_layers(model)
    codes = np.asarray(X, dtype=hidden[0].W.dtype)
    seeds = np.random.SeedSequence(seed).generate_state(2 * len(hidden))
    losses = {}
    for k, dense in enumerate(hidden):
        unit = bool(codes.min() >= 0 and codes.max() <= 1)
        x, loss, params = denoising_autoencoder(dense, noise, tied, inputs_in_unit_interval=unit,
                                                seed=int(seeds[2 * k]))
        step = function([x], loss, updates=Adam(lr).minimize(loss, params), training=True, backend=backend,
                        name=f"pretrain_{dense.name}")
        history = []
        epoch_seeds = np.random.SeedSequence(int(seeds[2 * k + 1])).generate_state(epochs)
        for epoch in range(epochs):
            batch_losses = [float(step(xb)) for xb, _ in minibatches(codes, None, batch_size, shuffle=True,
                                                                     seed=int(epoch_seeds[epoch]))]
            history.append(float(np.mean(batch_losses)))
            if verbose:
                print(f"pretrain {dense.name} epoch {epoch + 1}: reconstruction loss {history[-1]:.4f}", flush=True)
        losses[dense.name] = history
        if k + 1 < len(hidden):
            inputs = Placeholder("x", (None, dense.n_in), dense.W.dtype)
            encode = function([inputs], _encode(dense, inputs), backend=backend, name=f"encode_{dense.name}")
            codes = np.concatenate([encode(xb) for xb, _ in minibatches(codes, None, 1024, shuffle=False)])
    return losses


def pretrain_and_finetune(train, valid=None, unlabeled=None, hidden=(100, 100), activation="sigmoid", noise=0.25,
                          tied=True, pretrain_epochs=20, pretrain_lr=1e-3, pretrain_batch_size=32,
                          optimizer=None, epochs=100, batch_size=32, patience=None, weight_decay=0.0,
                          n_classes=None, pretrain=True, seed=0, backend="reference", quiet=True, verbose=False):
    """Pre-train an MLP layer by layer as denoising autoencoders, then fine-tune it with the labels.

    ``train`` is the labelled ``(X, y)``; ``unlabeled`` the inputs for
    pre-training (default: ``train``'s). The MLP is ``[n_in, *hidden,
    n_classes]`` with ``activation`` and the seed's initialization.
    Fine-tuning is ``train.fit`` with ``optimizer`` (default Adam(1e-3)),
    ``epochs``, ``batch_size``, ``patience`` on ``valid`` and ``weight_decay``.
    ``pretrain=False`` skips pre-training: the same network and budget from
    random initialization, the baseline. Returns a :class:`PretrainResult`.
    """
    from graphnet.nn import mlp
    from graphnet.nn.optim import Adam
    from graphnet.training.fit import fit
    X, y = (np.asarray(a) for a in train)
    n_classes = int(n_classes or (int(np.max(y)) + 1))
    model = mlp([X.shape[1], *hidden, n_classes], activation=activation, seed=seed, dtype=str(X.dtype)
                if X.dtype.kind == "f" else "float32")
    result = PretrainResult(model)
    if pretrain:
        result.pretrain_loss = pretrain_layerwise(model, X if unlabeled is None else unlabeled, noise=noise, tied=tied,
                                                  epochs=pretrain_epochs, lr=pretrain_lr,
                                                  batch_size=pretrain_batch_size, seed=seed, backend=backend,
                                                  verbose=verbose)
    result.history = fit(model, (X, y), valid, optimizer=optimizer if optimizer is not None else Adam(1e-3),
                         epochs=epochs, batch_size=batch_size, weight_decay=weight_decay, patience=patience,
                         seed=seed, backend=backend, quiet=quiet, verbose=verbose)
    return result
