"""The toolbox of the lectures around a compiled step: the training loop (``fit``),
diagnostics and sanity checks, hyperparameter search, greedy pre-training,
babysitting plots, and the digits demo."""
