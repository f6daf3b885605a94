"""The same workloads written as their users would write them: NumPy, PyTorch, JAX.

Each ``build_<peer>(case, problem)`` returns a :class:`Runner` (``run`` and
``check`` as in :mod:`bench.workloads`). NumPy is always there and is the
oracle the correctness check compares every variant against; PyTorch and JAX
are optional and are skipped with a note when they do not import; the run
ends with the one command that installs the skipped ones (:func:`install_command`).

Conventions, the same for every peer:
- float32 everywhere, labels as integers;
- a training step returns its loss as a host number (which waits for the result);
- gradients of W3/W5 come from each framework's autodiff (PyTorch autograd,
  ``jax.vjp``); the NumPy ones are hand-written;
- dropout masks: in ``check`` graphnet's own (:func:`bench.workloads.dropout_keep_mask`),
  when timed each peer's native RNG.
"""
from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np

from bench.workloads import BN_EPS, BN_MOMENTUM, DROPOUT_SEEDS, LR, MU, dropout_keep_mask

__all__ = ["Runner", "PEERS", "PEER_REQUIREMENTS", "load_peers", "install_command", "skipped_peers_line"]


@dataclass
class Runner:
    run: Callable
    check: Callable


# ============================================================================ NumPy


def numpy_softmax_xent(logits, labels, rows):
    """Mean softmax cross-entropy of ``logits`` and its gradient, written as NumPy users write it."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    loss = np.mean(np.log(total[:, 0]) - shifted[rows, labels])
    grad = exp / total
    grad[rows, labels] -= 1
    grad /= logits.shape[0]
    return loss, grad


def build_numpy(case, problem):
    task = case.task
    if task in ("mlp_train", "mlp_infer"):
        return _numpy_mlp(case, problem)
    if task in ("bn_relu_fwd", "bn_relu_bwd"):
        x, dy = problem["x"], problem["dy"]
        gamma, beta = problem["gamma"].copy(), problem["beta"].copy()
        cols = x.shape[1]
        running_mean, running_var = np.zeros(cols, np.float32), np.ones(cols, np.float32)

        def forward():
            n = x.shape[0]
            mean = x.mean(axis=0)
            var = x.var(axis=0)
            y = (x - mean) * (gamma / np.sqrt(var + BN_EPS)) + beta
            np.maximum(y, 0, out=y)
            running_mean[:] = (1 - BN_MOMENTUM) * running_mean + BN_MOMENTUM * mean
            running_var[:] = (1 - BN_MOMENTUM) * running_var + BN_MOMENTUM * var * (n / max(n - 1, 1))
            return [y]

        def backward():
            n = x.shape[0]
            mean = x.mean(axis=0)
            inv_std = 1.0 / np.sqrt(x.var(axis=0) + BN_EPS)
            xhat = (x - mean) * inv_std
            da = np.where(xhat * gamma + beta > 0, dy, np.float32(0))
            dbeta = da.sum(axis=0)
            dgamma = (da * xhat).sum(axis=0)
            dxhat = da * gamma
            dx = (inv_std / n) * (n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))
            return [dx, dgamma, dbeta]

        fn = forward if task == "bn_relu_fwd" else backward
        return Runner(run=fn, check=fn)
    if task in ("bias_relu_fwd", "bias_relu_bwd"):
        h, b, dy = problem["h"], problem["b"], problem["dy"]

        def forward():
            y = h + b
            np.maximum(y, 0, out=y)
            return [y]

        def backward():
            dh = np.where(h + b > 0, dy, np.float32(0))
            return [dh, dh.sum(axis=0)]

        fn = forward if task == "bias_relu_fwd" else backward
        return Runner(run=fn, check=fn)
    if task == "softmax_xent":
        logits, labels = problem["logits"], problem["labels"]
        rows = np.arange(logits.shape[0])

        def softmax_xent():
            loss, grad = numpy_softmax_xent(logits, labels, rows)
            return [np.float32(loss), grad]

        return Runner(run=softmax_xent, check=softmax_xent)
    if task == "momentum":
        p, v, g = problem["p"].copy(), problem["v"].copy(), problem["g"]

        def update():
            np.multiply(v, MU, out=v)
            np.subtract(v, LR * g, out=v)
            np.add(p, v, out=p)
            return [p, v]

        return Runner(run=update, check=update)
    raise ValueError(task)


def _numpy_mlp(case, problem):
    d = case.dims
    layers = len(d["sizes"]) - 1
    bn, rate = d["bn"], d["dropout"]
    keep = 1.0 - rate
    params = {k: v.copy() for k, v in problem["params"].items()}
    velocity = {k: np.zeros_like(v) for k, v in params.items()}
    running = {layer: (np.zeros(d["sizes"][layer + 1], np.float32), np.ones(d["sizes"][layer + 1], np.float32))
               for layer in range(layers - 1)}
    x, y = problem["x"], problem["y"]
    rows = np.arange(x.shape[0])
    native_rng = np.random.default_rng(0)
    state = {"step": 0}

    def forward(masks):
        h, saved = x, []
        for layer in range(layers):
            W = params[f"W{layer}"]
            z = h @ W
            hidden = layer < layers - 1
            cache = {"input": h}
            if hidden and bn:
                n = z.shape[0]
                mean, var = z.mean(axis=0), z.var(axis=0)
                inv_std = 1.0 / np.sqrt(var + BN_EPS)
                xhat = (z - mean) * inv_std
                z = xhat * params[f"gamma{layer}"] + params[f"beta{layer}"]
                rm, rv = running[layer]
                rm[:] = (1 - BN_MOMENTUM) * rm + BN_MOMENTUM * mean
                rv[:] = (1 - BN_MOMENTUM) * rv + BN_MOMENTUM * var * (n / max(n - 1, 1))
                cache.update(xhat=xhat, inv_std=inv_std)
            else:
                z += params[f"b{layer}"]
            if hidden:
                np.maximum(z, 0, out=z)
                cache["relu"] = z
                if rate:
                    scale = masks[layer].astype(np.float32) / np.float32(keep)
                    cache["dropout"] = scale
                    z = z * scale
            saved.append(cache)
            h = z
        return h, saved

    def step(masks):
        logits, saved = forward(masks)
        loss, dz = numpy_softmax_xent(logits, y, rows)
        grads = {}
        for layer in reversed(range(layers)):
            cache = saved[layer]
            hidden = layer < layers - 1
            if hidden:
                if rate:
                    dz = dz * cache["dropout"]
                dz = np.where(cache["relu"] > 0, dz, np.float32(0))
                if bn:
                    n = dz.shape[0]
                    xhat, inv_std = cache["xhat"], cache["inv_std"]
                    grads[f"beta{layer}"] = dz.sum(axis=0)
                    grads[f"gamma{layer}"] = (dz * xhat).sum(axis=0)
                    dxhat = dz * params[f"gamma{layer}"]
                    dz = (inv_std / n) * (n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))
                else:
                    grads[f"b{layer}"] = dz.sum(axis=0)
            else:
                grads[f"b{layer}"] = dz.sum(axis=0)
            grads[f"W{layer}"] = cache["input"].T @ dz
            if layer:
                dz = dz @ params[f"W{layer}"].T
        for name, g in grads.items():
            v = velocity[name]
            v *= MU
            v -= LR * g
            params[name] += v
        return np.float32(loss)

    def native_masks():
        if not rate:
            return None
        return [native_rng.random((x.shape[0], d["sizes"][layer + 1]), dtype=np.float32) < keep
                for layer in range(layers - 1)]

    if case.task == "mlp_infer":
        def infer():
            return [forward(None)[0]]
        return Runner(run=infer, check=infer)

    def check():
        losses = []
        for _ in range(2):
            losses.append(step(_graphnet_masks(d, x.shape[0], state["step"]) if rate else None))
            state["step"] += 1
        return losses

    return Runner(run=lambda: step(native_masks()), check=check)


def _graphnet_masks(dims, batch, step):
    return [dropout_keep_mask(layer, step, (batch, dims["sizes"][layer + 1]))
            for layer in range(len(dims["sizes"]) - 2)]


# ========================================================================== PyTorch


def build_torch(case, problem, compile=False):
    """PyTorch eager; ``compile=True`` wraps the MLP's forward in ``torch.compile`` (its backward is
    compiled with it, by AOTAutograd), for bench/compile_time.py."""
    import torch
    import torch.nn.functional as F

    task = case.task
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a).copy())  # noqa: E731
    out = lambda a: a.detach().numpy()  # noqa: E731
    if task in ("mlp_train", "mlp_infer"):
        d = case.dims
        layers = len(d["sizes"]) - 1
        bn, rate = d["bn"], d["dropout"]
        keep = 1.0 - rate
        params = {k: t(v).requires_grad_(task == "mlp_train") for k, v in problem["params"].items()}
        running = {layer: (torch.zeros(d["sizes"][layer + 1]), torch.ones(d["sizes"][layer + 1]))
                   for layer in range(layers - 1)}
        x, y = t(problem["x"]), t(problem["y"])
        state = {"step": 0}

        def forward(masks):
            h = x
            for layer in range(layers):
                hidden = layer < layers - 1
                if hidden and bn:
                    rm, rv = running[layer]
                    h = F.batch_norm(h @ params[f"W{layer}"], rm, rv, params[f"gamma{layer}"],
                                     params[f"beta{layer}"], training=True, momentum=BN_MOMENTUM, eps=BN_EPS)
                else:
                    h = torch.addmm(params[f"b{layer}"], h, params[f"W{layer}"])
                if hidden:
                    h = torch.relu(h)
                    if rate:
                        h = h * masks[layer] if masks is not None else F.dropout(h, rate, training=True)
            return h

        if compile:
            forward = torch.compile(forward)
        if task == "mlp_infer":
            def infer():
                with torch.inference_mode():
                    return [out(forward(None))]
            return Runner(run=infer, check=infer)

        optimizer = torch.optim.SGD(list(params.values()), lr=LR, momentum=MU, foreach=True)

        def step(masks):
            loss = F.cross_entropy(forward(masks), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss.item()

        def check():
            losses = []
            for _ in range(2):
                masks = None
                if rate:
                    masks = [torch.from_numpy(m.astype(np.float32) / np.float32(keep))
                             for m in _graphnet_masks(d, x.shape[0], state["step"])]
                losses.append(step(masks))
                state["step"] += 1
            return losses

        return Runner(run=lambda: step(None), check=check)
    if task in ("bn_relu_fwd", "bn_relu_bwd"):
        x, dy = t(problem["x"]), t(problem["dy"])
        gamma, beta = t(problem["gamma"]), t(problem["beta"])
        rm, rv = torch.zeros(x.shape[1]), torch.ones(x.shape[1])

        def forward():
            with torch.no_grad():
                return [out(F.relu(F.batch_norm(x, rm, rv, gamma, beta, training=True, momentum=BN_MOMENTUM,
                                                eps=BN_EPS)))]

        xg, gg, bg = x.clone().requires_grad_(), gamma.clone().requires_grad_(), beta.clone().requires_grad_()

        def backward():
            yv = F.relu(F.batch_norm(xg, rm, rv, gg, bg, training=True, momentum=BN_MOMENTUM, eps=BN_EPS))
            return [out(g) for g in torch.autograd.grad(yv, [xg, gg, bg], dy)]

        fn = forward if task == "bn_relu_fwd" else backward
        return Runner(run=fn, check=fn)
    if task in ("bias_relu_fwd", "bias_relu_bwd"):
        h, b, dy = t(problem["h"]), t(problem["b"]), t(problem["dy"])

        def forward():
            with torch.no_grad():
                return [out(torch.relu(h + b))]

        hg, bg = h.clone().requires_grad_(), b.clone().requires_grad_()

        def backward():
            return [out(g) for g in torch.autograd.grad(torch.relu(hg + bg), [hg, bg], dy)]

        fn = forward if task == "bias_relu_fwd" else backward
        return Runner(run=fn, check=fn)
    if task == "softmax_xent":
        logits, labels = t(problem["logits"]).requires_grad_(), t(problem["labels"])

        def softmax_xent():
            loss = F.cross_entropy(logits, labels)
            (grad,) = torch.autograd.grad(loss, [logits])
            return [out(loss), out(grad)]

        return Runner(run=softmax_xent, check=softmax_xent)
    if task == "momentum":
        p, v, g = t(problem["p"]), t(problem["v"]), t(problem["g"])

        def update():
            v.mul_(MU).add_(g, alpha=-LR)
            p.add_(v)
            return [out(p), out(v)]

        return Runner(run=update, check=update)
    raise ValueError(task)


# ============================================================================== JAX


def build_jax(case, problem):
    import jax
    import jax.numpy as jnp

    task = case.task
    ready = jax.block_until_ready
    host = lambda a: np.asarray(a)  # noqa: E731
    if task in ("mlp_train", "mlp_infer"):
        return _jax_mlp(case, problem, jax, jnp)
    if task in ("bn_relu_fwd", "bn_relu_bwd"):
        x, dy = jnp.asarray(problem["x"]), jnp.asarray(problem["dy"])
        gamma, beta = jnp.asarray(problem["gamma"]), jnp.asarray(problem["beta"])

        def bn_relu(x, gamma, beta):
            mean, var = x.mean(axis=0), x.var(axis=0)
            return jax.nn.relu((x - mean) * jax.lax.rsqrt(var + BN_EPS) * gamma + beta), mean, var

        @jax.jit
        def forward(x, gamma, beta, rm, rv):
            y, mean, var = bn_relu(x, gamma, beta)
            n = x.shape[0]
            return (y, (1 - BN_MOMENTUM) * rm + BN_MOMENTUM * mean,
                    (1 - BN_MOMENTUM) * rv + BN_MOMENTUM * var * (n / max(n - 1, 1)))

        @jax.jit
        def backward(x, gamma, beta, dy):
            _, pullback = jax.vjp(lambda *a: bn_relu(*a)[0], x, gamma, beta)
            return pullback(dy)

        stats = {"rm": jnp.zeros(x.shape[1]), "rv": jnp.ones(x.shape[1])}

        def run_forward():
            y, stats["rm"], stats["rv"] = ready(forward(x, gamma, beta, stats["rm"], stats["rv"]))
            return [host(y)]

        def run_backward():
            return [host(g) for g in ready(backward(x, gamma, beta, dy))]

        fn = run_forward if task == "bn_relu_fwd" else run_backward
        return Runner(run=fn, check=fn)
    if task in ("bias_relu_fwd", "bias_relu_bwd"):
        h, b, dy = (jnp.asarray(problem[k]) for k in ("h", "b", "dy"))
        forward = jax.jit(lambda h, b: jax.nn.relu(h + b))
        backward = jax.jit(lambda h, b, dy: jax.vjp(lambda h, b: jax.nn.relu(h + b), h, b)[1](dy))
        if task == "bias_relu_fwd":
            fn = lambda: [host(ready(forward(h, b)))]  # noqa: E731
        else:
            fn = lambda: [host(g) for g in ready(backward(h, b, dy))]  # noqa: E731
        return Runner(run=fn, check=fn)
    if task == "softmax_xent":
        logits, labels = jnp.asarray(problem["logits"]), jnp.asarray(problem["labels"].astype(np.int32))

        def loss_fn(logits):
            log_p = jax.nn.log_softmax(logits, axis=1)
            return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=1))

        value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
        fn = lambda: [host(a) for a in ready(value_and_grad(logits))]  # noqa: E731
        return Runner(run=fn, check=fn)
    if task == "momentum":
        g = jnp.asarray(problem["g"])
        state = {"p": jnp.asarray(problem["p"]), "v": jnp.asarray(problem["v"])}

        def update(p, v, g):
            v = MU * v - LR * g
            return p + v, v

        update = jax.jit(update, donate_argnums=(0, 1))

        def run():
            state["p"], state["v"] = ready(update(state["p"], state["v"], g))
            return [host(state["p"]), host(state["v"])]

        def run_timed():
            state["p"], state["v"] = ready(update(state["p"], state["v"], g))

        return Runner(run=run_timed, check=run)
    raise ValueError(task)


def jax_mlp_model(case, jax, jnp):
    """``(forward, loss)`` of ``case``'s MLP in JAX: ``forward(params, running, x, masks)`` gives
    the logits and the new running statistics, ``loss(params, running, x, y, masks)`` the mean
    cross-entropy and the same statistics (``running`` and ``masks`` unused where the case has no
    batch norm or dropout)."""
    d = case.dims
    layers = len(d["sizes"]) - 1
    bn, rate = d["bn"], d["dropout"]

    def forward(params, running, x, masks):
        h, new_running = x, []
        for layer in range(layers):
            z = h @ params[f"W{layer}"]
            hidden = layer < layers - 1
            if hidden and bn:
                n = z.shape[0]
                mean, var = z.mean(axis=0), z.var(axis=0)
                z = (z - mean) * jax.lax.rsqrt(var + BN_EPS) * params[f"gamma{layer}"] + params[f"beta{layer}"]
                rm, rv = running[layer]
                new_running.append(((1 - BN_MOMENTUM) * rm + BN_MOMENTUM * jax.lax.stop_gradient(mean),
                                    (1 - BN_MOMENTUM) * rv
                                    + BN_MOMENTUM * jax.lax.stop_gradient(var) * (n / max(n - 1, 1))))
            else:
                z = z + params[f"b{layer}"]
            if hidden:
                z = jax.nn.relu(z)
                if rate:
                    z = z * masks[layer]
            h = z
        return h, new_running

    def loss_fn(params, running, x, y, masks):
        logits, new_running = forward(params, running, x, masks)
        log_p = jax.nn.log_softmax(logits, axis=1)
        return -jnp.mean(jnp.take_along_axis(log_p, y[:, None], axis=1)), new_running

    return forward, loss_fn


def _jax_mlp(case, problem, jax, jnp):
    d = case.dims
    layers = len(d["sizes"]) - 1
    bn, rate = d["bn"], d["dropout"]
    keep = 1.0 - rate
    x = jnp.asarray(problem["x"])
    y = jnp.asarray(problem["y"].astype(np.int32))
    forward, loss_fn = jax_mlp_model(case, jax, jnp)

    params = {k: jnp.asarray(v) for k, v in problem["params"].items()}
    if case.task == "mlp_infer":
        infer = jax.jit(lambda params, x: forward(params, None, x, None)[0])
        fn = lambda: [np.asarray(jax.block_until_ready(infer(params, x)))]  # noqa: E731
        return Runner(run=fn, check=fn)

    def apply(params, velocity, running, x, y, masks):
        (loss, new_running), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, running, x, y, masks)
        velocity = jax.tree_util.tree_map(lambda v, g: MU * v - LR * g, velocity, grads)
        params = jax.tree_util.tree_map(lambda p, v: p + v, params, velocity)
        return loss, params, velocity, new_running

    def native(params, velocity, running, x, y, key, step):
        masks = None
        if rate:
            masks = [jax.random.bernoulli(jax.random.fold_in(key, 2 * step + layer), keep,
                                          (x.shape[0], d["sizes"][layer + 1])).astype(jnp.float32) / keep
                     for layer in range(layers - 1)]
        return apply(params, velocity, running, x, y, masks)

    step_with_masks = jax.jit(apply, donate_argnums=(0, 1, 2))
    step_native = jax.jit(native, donate_argnums=(0, 1, 2))
    state = {"params": params, "velocity": {k: jnp.zeros_like(v) for k, v in params.items()},
             "running": [(jnp.zeros(d["sizes"][i + 1]), jnp.ones(d["sizes"][i + 1])) for i in range(layers - 1)]
             if bn else [], "step": 0, "key": jax.random.PRNGKey(0)}

    def commit(result):
        loss, state["params"], state["velocity"], state["running"] = result
        state["step"] += 1
        return float(loss)  # waits for the result

    def check():
        losses = []
        for _ in range(2):
            masks = None
            if rate:
                masks = [jnp.asarray(m.astype(np.float32) / np.float32(keep))
                         for m in _graphnet_masks(d, x.shape[0], state["step"])]
            losses.append(commit(step_with_masks(state["params"], state["velocity"], state["running"], x, y,
                                                 masks)))
        return losses

    def run():
        return commit(step_native(state["params"], state["velocity"], state["running"], x, y, state["key"],
                                  state["step"]))

    return Runner(run=run, check=check)


# ======================================================================= discovery

PEERS = {"numpy": build_numpy, "pytorch": build_torch, "jax": build_jax}


#: What pip installs for each optional peer (the pins of the ``bench`` extra in setup.cfg).
PEER_REQUIREMENTS = {"pytorch": ("torch>=2.0",), "jax": ("jax>=0.4", "jaxlib>=0.4")}


def install_command(names, python=None):
    """The one command that installs the peers ``names`` into this interpreter's environment."""
    requirements = [r for name in names for r in PEER_REQUIREMENTS[name]]
    return " ".join(shlex.quote(word) for word in [python or sys.executable, "-m", "pip", "install", *requirements])


def skipped_peers_line(notes, python=None):
    """The line a run ends with when peers were skipped: which, why, and the command that installs them."""
    if not notes:
        return None
    skipped = ", ".join(f"{name} ({why})" for name, why in notes.items())
    return (f"peers skipped: {skipped}. To compare against them, install them with: "
            f"{install_command(list(notes), python)} and run python -m bench again")


def load_peers(threads, wanted=("numpy", "pytorch", "jax")):
    """({name: builder} of the peers that import, {name: why not} of the rest)."""
    builders, notes = {}, {}
    for name in wanted:
        try:
            if name == "pytorch":
                import torch
                torch.set_num_threads(threads)
                try:
                    torch.set_num_interop_threads(1)
                except RuntimeError:
                    pass  # already set in this process
            elif name == "jax":
                os.environ.setdefault("JAX_PLATFORMS", "cpu")
                import jax  # noqa: F401
        except ImportError as exc:
            notes[name] = f"{exc.name} is not installed"
            continue
        builders[name] = numpy_at(threads, PEERS[name]) if name == "numpy" else PEERS[name]
    return builders, notes


def numpy_at(threads, build):
    """``build`` with every call of its runner made on ``threads`` BLAS threads.

    NumPy's OpenBLAS has one thread count per process, and graphnet sets it per product (one
    thread for a small one): interleaved with graphnet, the NumPy peer ran its large products on
    whatever graphnet set last. The count is set through graphnet's own setter, so that its
    record of the current count stays true."""
    def built(case, problem):
        runner = build(case, problem)
        if runner is None:
            return None
        from graphnet.compiler.runtime.threads import _numpy_blas
        use = _numpy_blas().use

        def run():
            use(threads)
            return runner.run()

        def check():
            use(threads)
            return runner.check()
        return Runner(run, check)
    return built


def versions(names):
    out = {}
    for name in names:
        module = {"numpy": "numpy", "pytorch": "torch", "jax": "jax"}[name]
        try:
            out[name] = __import__(module).__version__
        except ImportError:
            pass
    return out
