"""The workloads: what each computes, its data, and its graphnet variants.

Each :class:`Case` is one row of the report: a task at one size. Every
variant of a case (graphnet fused and unfused here, NumPy/PyTorch/JAX in
:mod:`bench.peers`) is a *runner* built from the same :func:`make_problem`
arrays (copied, never shared), with two methods:

- ``check()`` returns the values the correctness check compares: for a
  training step the losses of its first two steps (the second one shows the
  update was right), otherwise the outputs of one call;
- ``run()`` does one timed call and returns when its results are ready.

Training steps with dropout draw graphnet's counter-based mask in ``check()``
(:func:`dropout_keep_mask`, the same bits graphnet draws), so every variant
computes the same loss; when timed, each peer draws masks with its own RNG,
as its users would.

Tasks
    ``mlp_train``   W1/W2: MLP 784-1024-1024-10 training step: ReLU (W2: batch
                    norm + ReLU + dropout 0.5 in both hidden layers), softmax
                    cross-entropy, momentum SGD ``v = mu v - lr g; p += v``.
    ``mlp_infer``   W4: the W1 network's logits.
    ``bn_relu_fwd`` W3: ``relu(batch_norm_train(x))`` (and its running statistics).
    ``bn_relu_bwd`` W3: the gradient function ``(x, dy) -> (dx, dgamma, dbeta)``;
                    every variant recomputes the batch statistics it needs from ``x``.
    ``bias_relu_fwd`` / ``bias_relu_bwd``  W5: the GEMM epilogue ``relu(h + b)`` and
                    its backward ``(h, dy) -> (dh, db)``, without the GEMM.
    ``softmax_xent`` W5: ``(logits, labels) -> (mean cross-entropy, dlogits)``.
    ``momentum``    W5: one momentum-SGD update of a parameter, given its gradient.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LR, MU = 0.01, 0.9
BN_EPS, BN_MOMENTUM = 1e-5, 0.1
DROPOUT_RATE = 0.5
DROPOUT_SEEDS = (1234, 5678)  # one per hidden layer
FLOAT = np.float32


@dataclass(frozen=True)
class Case:
    id: str
    family: str
    task: str
    title: str
    dims: dict = field(hash=False)
    compile_probe: bool = False   # also measure cold/warm compile in subprocesses

    @property
    def metric(self):
        return "GFLOP/s" if self.task.startswith("mlp") else "GB/s"

    @property
    def work(self):
        """FLOPs (GEMMs only) or bytes (each input read once, each output written once) per call."""
        d = self.dims
        if self.task.startswith("mlp"):
            sizes, batch = d["sizes"], d["batch"]
            forward = sum(2.0 * batch * a * b for a, b in zip(sizes[:-1], sizes[1:]))
            if self.task == "mlp_infer":
                return forward
            # backward: dW for every layer and dX for all but the first
            backward = forward + sum(2.0 * batch * a * b for a, b in zip(sizes[1:-1], sizes[2:]))
            return forward + backward
        rows, cols = d["rows"], d["cols"]
        matrix = 4.0 * rows * cols
        arrays = {"bn_relu_fwd": 2, "bn_relu_bwd": 3, "bias_relu_fwd": 2, "bias_relu_bwd": 3,
                  "softmax_xent": 2, "momentum": 5}[self.task]
        return arrays * matrix


def all_cases(quick=False):
    """Every case; ``quick`` shrinks them to smoke-test sizes."""
    if quick:  # one small size per workload: every code path, little compiling
        mlp, wide, rows_small, rows_big, matrix = (32, 64, 64, 10), 64, None, 48, (64, 128)
        batches, infer_batches = (16,), (1,)
    else:
        mlp, wide, rows_small, rows_big, matrix = (784, 1024, 1024, 10), 4096, 256, 4096, (4096, 4096)
        batches, infer_batches = (128, 16), (128, 1)
    cases = []
    for family, bn in (("W1", False), ("W2", True)):
        extra = " + BN + dropout" if bn else ""
        for i, batch in enumerate(batches):
            cases.append(Case(f"{family}-B{batch}", family, "mlp_train", f"MLP train step{extra}, B={batch}",
                              {"sizes": mlp, "batch": batch, "bn": bn, "dropout": DROPOUT_RATE if bn else 0.0},
                              compile_probe=i == 0))
    for rows in (r for r in (rows_small, rows_big) if r):
        for task, what, short in (("bn_relu_fwd", "forward", "fwd"), ("bn_relu_bwd", "backward", "bwd")):
            cases.append(Case(f"W3-{short}-{rows}x{wide}", "W3", task, f"BN(train)+ReLU {what}, {rows}x{wide}",
                              {"rows": rows, "cols": wide}, compile_probe=rows == rows_big))
    for batch in infer_batches:
        cases.append(Case(f"W4-B{batch}", "W4", "mlp_infer", f"MLP inference, B={batch}",
                          {"sizes": mlp, "batch": batch, "bn": False, "dropout": 0.0},
                          compile_probe=batch == infer_batches[0]))
    rows, cols = matrix
    for task, title in (("bias_relu_fwd", "bias+ReLU epilogue"), ("bias_relu_bwd", "bias+ReLU backward"),
                        ("softmax_xent", "softmax+cross-entropy fwd+grad"), ("momentum", "momentum update")):
        shape = (rows, 1024 if task == "softmax_xent" and not quick else cols)
        cases.append(Case(f"W5-{task.replace('_', '-')}", "W5", task, f"{title}, {shape[0]}x{shape[1]}",
                          {"rows": shape[0], "cols": shape[1]}, compile_probe=True))
    return cases


# ----------------------------------------------------------------------------- data


def mlp_param_specs(dims):
    """(name, shape) of every MLP parameter in layer order: W, then b or (gamma, beta)."""
    sizes, specs = dims["sizes"], []
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        specs.append((f"W{layer}", (fan_in, fan_out)))
        if dims["bn"] and layer < len(sizes) - 2:
            specs += [(f"gamma{layer}", (fan_out,)), (f"beta{layer}", (fan_out,))]
        else:
            specs.append((f"b{layer}", (fan_out,)))
    return specs


def make_problem(case, seed=0):
    """The arrays every variant of ``case`` starts from (read-only by convention)."""
    rng = np.random.default_rng(seed)
    d = case.dims
    normal = lambda shape, scale=1.0: (scale * rng.standard_normal(shape)).astype(FLOAT)  # noqa: E731
    if case.task.startswith("mlp"):
        params = {}
        for name, shape in mlp_param_specs(d):
            if name.startswith("W"):
                params[name] = normal(shape, np.sqrt(2.0 / shape[0]))
            elif name.startswith("gamma"):
                params[name] = (1.0 + normal(shape, 0.1)).astype(FLOAT)
            else:
                params[name] = normal(shape, 0.1)
        classes = d["sizes"][-1]
        return {"params": params, "x": normal((d["batch"], d["sizes"][0])),
                "y": rng.integers(0, classes, d["batch"]).astype(np.int64)}
    rows, cols = d["rows"], d["cols"]
    # ReLU inputs keep a gap around zero: an element within rounding of zero could take either
    # side of the mask in different (all correct) float32 implementations and fail the check.
    if case.task in ("bn_relu_fwd", "bn_relu_bwd"):
        # Each column: +-pairs of magnitudes >= GAP, so its mean is exactly 0 and its normalized
        # values stay >= ~GAP / std away from 0; |beta| / gamma is well inside that gap.
        half = _gapped_magnitudes(rng, (rows // 2, cols))
        v = np.concatenate([half, -half, np.zeros((rows % 2, cols))])
        v = np.take_along_axis(v, rng.permuted(np.tile(np.arange(rows)[:, None], (1, cols)), axis=0), axis=0)
        return {"x": (2.0 * v + 0.5).astype(FLOAT), "dy": normal((rows, cols)),
                "gamma": (1.0 + 0.1 * rng.random(cols)).astype(FLOAT),
                "beta": (0.05 * rng.uniform(-1, 1, cols)).astype(FLOAT)}
    if case.task in ("bias_relu_fwd", "bias_relu_bwd"):
        b = normal((cols,), 0.1)
        sign = np.where(rng.random((rows, cols)) < 0.5, -1.0, 1.0)
        h = (sign * _gapped_magnitudes(rng, (rows, cols)) - b).astype(FLOAT)
        return {"h": h, "b": b, "dy": normal((rows, cols))}
    if case.task == "softmax_xent":
        return {"logits": normal((rows, cols), 3.0), "labels": rng.integers(0, cols, rows).astype(np.int64)}
    if case.task == "momentum":
        return {"p": normal((rows, cols)), "v": normal((rows, cols), 0.01), "g": normal((rows, cols))}
    raise ValueError(f"unknown task {case.task!r}")


def _gapped_magnitudes(rng, shape, gap=0.3):
    return gap + np.abs(rng.standard_normal(shape))


def dropout_keep_mask(layer, step, shape):
    """graphnet's dropout keep mask of hidden ``layer`` at training ``step`` (bool array)."""
    from graphnet import rng
    return rng.keep_mask_array(DROPOUT_SEEDS[layer], step, shape, 1.0 - DROPOUT_RATE)


# ------------------------------------------------------------------------ graphnet


#: calls after the compiles: the frame's entry written, thread choices measured, a driver made
WARM_CALLS = 120


class GraphnetRunner:
    """A graphnet function for ``case`` compiled with ``fuse`` on or off; an MLP training case
    updates its parameters by ``optimizer`` (see :func:`_build_graphnet`)."""

    def __init__(self, case, problem, fuse=True, optimizer="momentum"):
        import graphnet as gn
        self.case, self.problem = case, problem
        self.feeds, self.fn, self.check_outputs = _build_graphnet(gn, case, problem, fuse, optimizer)

    def run(self):
        return self.fn(*self.feeds)

    def check(self):
        """The first calls' values; then, before anything is timed, the background compiles
        are awaited (tiered execution: the first calls ran on NumPy) and every frame's call
        path is warm (the measured thread choices made, a small step's driver compiled)."""
        if self.case.task == "mlp_train":
            values = [np.asarray(self.run()), np.asarray(self.run())]
        elif self.case.task == "momentum":
            self.run()
            values = [s.get_value() for s in self.check_outputs]
        else:
            out = self.run()
            values = [np.asarray(o) for o in (out if isinstance(out, list) else [out])]
        self.warm()
        return values

    def warm(self, calls=WARM_CALLS):
        self.fn.wait_compiled()
        for _ in range(calls):
            self.run()


def _updates(gn, optimizer, loss, shared):
    """The updates of ``shared`` that minimize ``loss`` by ``optimizer`` (see :func:`_build_graphnet`)."""
    if optimizer is None:
        return []
    grads = gn.grad(loss, shared)
    if optimizer == "sgd":
        return [(p, p - LR * g) for p, g in zip(shared, grads)]
    if optimizer != "momentum":
        raise ValueError(f"optimizer {optimizer!r}: expected 'momentum', 'sgd' or None")
    updates = []
    for p, g in zip(shared, grads):
        v = gn.shared(np.zeros(p.get_value(copy=False).shape, FLOAT), name=f"velocity_{p.name}")
        new_v = MU * v - LR * g
        updates += [(v, new_v), (p, p + new_v)]
    return updates


def _build_graphnet(gn, case, problem, fuse, optimizer="momentum"):
    """(feeds, compiled function, shared variables to compare after a call). An MLP training
    step's ``optimizer``: "momentum" (the workloads' own), "sgd", or None (the loss alone)."""
    task = case.task
    if task.startswith("mlp"):
        d = case.dims
        params = {name: gn.shared(value.copy(), name=name) for name, value in problem["params"].items()}
        x = gn.placeholder("x", (None, d["sizes"][0]))
        h = x
        layers = len(d["sizes"]) - 1
        for layer in range(layers):
            h = gn.dot(h, params[f"W{layer}"])
            hidden = layer < layers - 1
            if hidden and d["bn"]:
                h = gn.nn.batch_norm(h, params[f"gamma{layer}"], params[f"beta{layer}"], eps=BN_EPS,
                                     momentum=BN_MOMENTUM)
            else:
                h = h + params[f"b{layer}"]
            if hidden:
                h = gn.relu(h)
                if d["dropout"]:
                    h = gn.nn.dropout(h, d["dropout"], seed=DROPOUT_SEEDS[layer])
        if task == "mlp_infer":
            return [problem["x"]], gn.function([x], h, training=False, fuse=fuse, name=case.id), []
        y = gn.placeholder("y", (None,), "int64")
        loss = gn.nn.cross_entropy(h, y)
        updates = _updates(gn, optimizer, loss, list(params.values()))
        name = case.id if optimizer == "momentum" else f"{case.id}-{optimizer or 'loss'}"
        fn = gn.function([x, y], loss, updates=updates, training=True, fuse=fuse, name=name)
        return [problem["x"], problem["y"]], fn, []
    if task in ("bn_relu_fwd", "bn_relu_bwd"):
        cols = case.dims["cols"]
        x = gn.placeholder("x", (None, cols))
        gamma = gn.shared(problem["gamma"].copy(), name="gamma")
        beta = gn.shared(problem["beta"].copy(), name="beta")
        y = gn.relu(gn.nn.batch_norm(x, gamma, beta, eps=BN_EPS, momentum=BN_MOMENTUM))
        if task == "bn_relu_fwd":
            return [problem["x"]], gn.function([x], y, training=True, fuse=fuse, name=case.id), []
        dy = gn.placeholder("dy", (None, cols))
        grads = gn.grad(gn.sum(y * dy), [x, gamma, beta])
        return [problem["x"], problem["dy"]], gn.function([x, dy], grads, training=True, fuse=fuse,
                                                          name=case.id), []
    if task in ("bias_relu_fwd", "bias_relu_bwd"):
        cols = case.dims["cols"]
        h = gn.placeholder("h", (None, cols))
        b = gn.shared(problem["b"].copy(), name="b")
        y = gn.relu(h + b)
        if task == "bias_relu_fwd":
            return [problem["h"]], gn.function([h], y, fuse=fuse, name=case.id), []
        dy = gn.placeholder("dy", (None, cols))
        grads = gn.grad(gn.sum(y * dy), [h, b])
        return [problem["h"], problem["dy"]], gn.function([h, dy], grads, fuse=fuse, name=case.id), []
    if task == "softmax_xent":
        logits = gn.placeholder("logits", (None, case.dims["cols"]))
        labels = gn.placeholder("labels", (None,), "int64")
        loss = gn.nn.cross_entropy(logits, labels)
        fn = gn.function([logits, labels], [loss, gn.grad(loss, logits)], fuse=fuse, name=case.id)
        return [problem["logits"], problem["labels"]], fn, []
    if task == "momentum":
        p = gn.shared(problem["p"].copy(), name="p")
        v = gn.shared(problem["v"].copy(), name="v")
        g = gn.placeholder("g", problem["g"].shape)
        new_v = MU * v - LR * g
        fn = gn.function([g], [], updates=[(v, new_v), (p, p + new_v)], fuse=fuse, name=case.id)
        return [problem["g"]], fn, [p, v]
    raise ValueError(f"unknown task {task!r}")
