"""Hyperparameter search: grid, random and coarse-to-fine, on local processes or a Dask cluster.

    space = {"lr": log_uniform(1e-4, 1e-1), "weight_decay": log_uniform(1e-6, 1e-2),
             "hidden_units": integer(32, 256), "activation": choice(["relu", "tanh"])}
    result = random_search(MLPTrial(epochs=20, patience=3), space, n_trials=30)
    print(result.table())
    result.plot("search.png")           # validation accuracy against each hyperparameter

A trial calls ``objective(params) -> {"val_accuracy": ..., ...}`` (or a float)
in another process. By default trials run on a local ``ProcessPoolExecutor``
with 2 workers; given ``scheduler="tcp://host:8786"`` or a
``dask.distributed.Client`` they run on that Dask cluster instead. Either way a
trial that raises, or whose worker process dies, is recorded as failed and the
search goes on: the lectures' point that random search "has no holes when a job
dies". Locally, a dead worker breaks the whole pool, so the trials that were
running are rerun one at a time in a fresh pool to find which one killed it;
Dask reschedules the lost trials itself and gives up on a trial that killed
``distributed.scheduler.allowed-failures`` workers.

:class:`MLPTrial` is a ready objective: an MLP trained with early stopping on
the digits (or any arrays), returning the best validation metrics.
"""
from __future__ import annotations

import itertools
import math
import multiprocessing
import os
import pickle
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from graphnet.errors import GraphnetError

__all__ = ["uniform", "log_uniform", "integer", "choice", "grid_search", "random_search", "coarse_to_fine",
           "SearchResult", "MLPTrial"]


# =========================================================================== distributions
class Distribution:
    """Where a hyperparameter is drawn from: ``sample(rng)``, ``grid(points)``, ``narrow(values)``."""

    log_scale = False

    def sample(self, rng):
        raise NotImplementedError

    def grid(self, points):
        raise NotImplementedError

    def narrow(self, values, margin=0.25):
        """A distribution around ``values`` (the best trials'), inside this one."""
        raise NotImplementedError


class uniform(Distribution):  # noqa: N801 - reads like the math: uniform(a, b)
    """``U[low, high]``."""

    def __init__(self, low, high):
        low, high = float(low), float(high)
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise GraphnetError(f"uniform: need finite low <= high, got ({low}, {high})")
        self.low, self.high = low, high

    def _to(self, v):
        return v

    def _from(self, v):
        return v

    def sample(self, rng):
        return float(self._from(rng.uniform(self._to(self.low), self._to(self.high))))

    def grid(self, points):
        return [float(self._from(v)) for v in np.linspace(self._to(self.low), self._to(self.high), points)]

    def narrow(self, values, margin=0.25):
        inner = [self._to(float(v)) for v in values]
        lo, hi = min(inner), max(inner)
        outer_lo, outer_hi = self._to(self.low), self._to(self.high)
        width = (hi - lo) or 0.1 * (outer_hi - outer_lo)
        lo, hi = max(outer_lo, lo - margin * width), min(outer_hi, hi + margin * width)
        return type(self)(self._from(lo), self._from(hi))

    def __repr__(self):
        return f"{type(self).__name__}({self.low:g}, {self.high:g})"


class log_uniform(uniform):  # noqa: N801
    """``exp(U[log low, log high])``: the lectures' choice for learning rates and weight decay."""

    log_scale = True

    def __init__(self, low, high):
        if not float(low) > 0:
            raise GraphnetError(f"log_uniform: low must be > 0, got {low}")
        super().__init__(low, high)

    def _to(self, v):
        return math.log(v)

    def _from(self, v):
        return math.exp(v)


class integer(Distribution):  # noqa: N801
    """A uniform integer in ``[low, high]``, both included."""

    def __init__(self, low, high):
        if int(low) != low or int(high) != high or low > high:
            raise GraphnetError(f"integer: need integers low <= high, got ({low}, {high})")
        self.low, self.high = int(low), int(high)

    def sample(self, rng):
        return int(rng.integers(self.low, self.high + 1))

    def grid(self, points):
        return sorted({int(round(v)) for v in np.linspace(self.low, self.high, points)})

    def narrow(self, values, margin=0.25):
        lo, hi = min(values), max(values)
        width = max(hi - lo, 1)
        return integer(max(self.low, math.floor(lo - margin * width)), min(self.high, math.ceil(hi + margin * width)))

    def __repr__(self):
        return f"integer({self.low}, {self.high})"


class choice(Distribution):  # noqa: N801
    """One of ``options``, equally likely."""

    def __init__(self, options):
        self.options = list(options)
        if not self.options:
            raise GraphnetError("choice: give at least one option")

    def sample(self, rng):
        value = self.options[int(rng.integers(len(self.options)))]
        return value.item() if isinstance(value, np.generic) else value

    def grid(self, points):
        return list(self.options)

    def narrow(self, values, margin=0.25):
        return choice([o for o in self.options if o in list(values)] or self.options)

    def __repr__(self):
        return f"choice({self.options!r})"


def _as_distribution(name, spec):
    if isinstance(spec, Distribution):
        return spec
    if isinstance(spec, (list, tuple)):
        return choice(spec)
    raise GraphnetError(f"search space: {name!r} must be a distribution (uniform, log_uniform, integer, "
                        f"choice) or a list of values, got {spec!r}")


def _check_space(space):
    if not space:
        raise GraphnetError("search space: declare at least one hyperparameter")
    return {name: _as_distribution(name, spec) for name, spec in space.items()}


# =========================================================================== results
class SearchResult:
    """Every trial of a search, as records ``{"trial", "round", "status", "params", metrics...}``."""

    def __init__(self, trials, space, metric="val_accuracy", mode="max", spaces=None):
        self.trials = sorted(trials, key=lambda t: t["trial"])
        self.space, self.metric, self.mode = space, metric, mode
        self.spaces = spaces or [space]   # coarse-to-fine: the (narrowed) space of each round

    def _succeeded(self, trial):
        return trial["status"] == "ok" and _finite(trial.get(self.metric))

    @property
    def ok(self):
        """Trials that finished with a finite metric."""
        return [t for t in self.trials if self._succeeded(t)]

    @property
    def failed(self):
        """Trials that raised, lost their worker, or returned no finite metric."""
        return [t for t in self.trials if not self._succeeded(t)]

    def ranked(self):
        """Successful trials, best first."""
        return sorted(self.ok, key=lambda t: t[self.metric], reverse=self.mode == "max")

    @property
    def best(self):
        """The best successful trial (a record), or None if every trial failed."""
        ranked = self.ranked()
        return ranked[0] if ranked else None

    def rows(self):
        """One flat dict per trial, all with the same keys: trial, round, status, each hyperparameter,
        each metric any trial reported, seconds, error (None where a trial has no value)."""
        keys = ["trial", "round", "status"]
        for t in self.trials:
            for k in [*t["params"], *t]:
                if k not in keys and k not in ("params", "error"):
                    keys.append(k)
        keys.append("error")
        return [{k: t["params"][k] if k in t["params"] else t.get(k) for k in keys} for t in self.trials]

    def table(self, limit=None):
        """A text table, best trial first, failed trials last with their error."""
        order = self.ranked() + self.failed
        names = list(self.space)
        metrics = [self.metric] + [m for m in ("val_loss", "best_epoch", "epochs_run")
                                   if any(m in t for t in self.ok) and m != self.metric]
        header = ["trial", "round", *names, *metrics, "seconds", "status"]
        lines = []
        for t in order[:limit]:
            cells = [str(t["trial"]), str(t["round"])] + [_cell(t["params"].get(n)) for n in names]
            cells += [_cell(t.get(m)) for m in metrics] + [_cell(t.get("seconds"), 3)]
            cells.append("ok" if t["status"] == "ok" else f"FAILED: {t.get('error', '')}"[:70])
            lines.append(cells)
        widths = [max(len(h), *(len(c[i]) for c in lines)) if lines else len(h) for i, h in enumerate(header)]
        text = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
        text += ["  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip() for cells in lines]
        text.append(f"{len(self.ok)} of {len(self.trials)} trials succeeded; best {self.metric}: "
                    f"{_cell(self.best[self.metric]) if self.best else '-'}")
        return "\n".join(text)

    __str__ = table

    def edge_warnings(self):
        """Hyperparameters whose best value lies in the outer 10% of its range: widen the range."""
        best, found = self.best, []
        for name, dist in self.space.items():
            if best is None or not isinstance(dist, (uniform, integer)) or dist.low == dist.high:
                continue
            to = dist._to if isinstance(dist, uniform) else float
            where = (to(best["params"][name]) - to(dist.low)) / (to(dist.high) - to(dist.low))
            if where < 0.1 or where > 0.9:
                found.append(f"{name}: the best value {best['params'][name]:.3g} is at the edge of {dist!r}")
        return found

    def figure(self, title=None):
        """A matplotlib Figure: the metric against each hyperparameter (log x-axis for log-uniform ones)."""
        return _result_figure(self, title)

    def plot(self, path, title=None):
        """Write :meth:`figure` to ``path``; failed trials are red crosses along the bottom."""
        self.figure(title).savefig(path)
        return path


def _finite(value):
    return isinstance(value, (int, float, np.number)) and math.isfinite(value)


def _cell(value, digits=4):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


# =========================================================================== running trials
def _execute(objective, params, threads=None):
    """Run one trial in a worker: ``{"status": "ok", metrics..., "seconds"}`` or ``"failed"`` with the error."""
    started = time.perf_counter()
    if threads:
        from graphnet.compiler.runtime.threads import set_num_threads
        set_num_threads(threads)
    try:
        metrics = _as_metrics(objective(dict(params)))
    except Exception as exc:  # noqa: BLE001 - a failing trial is a result, not the end of the search
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "seconds": time.perf_counter() - started}
    return {"status": "ok", **metrics, "seconds": time.perf_counter() - started}


def _as_metrics(result):
    if isinstance(result, dict):
        metrics = dict(result)
    elif hasattr(result, "best") and callable(result.best):       # a train.History
        metrics = dict(result.best())
    else:
        metrics = {"val_accuracy": float(result)}
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in metrics.items()}


def _failure(message):
    return {"status": "failed", "error": message}


def _run_locally(objective, jobs, max_workers, threads, mp_context):
    """Yield ``(index, outcome)`` as trials finish on a local process pool.

    At most ``max_workers`` trials are submitted at once, so when a worker
    dies (the pool is then broken for every trial in it) the suspects are
    exactly the trials that were running; each is rerun alone, in a pool of
    its own, to tell the trial that killed its worker from the bystanders.
    """
    try:
        pickle.dumps(objective)
    except Exception as exc:  # noqa: BLE001
        raise GraphnetError(f"search: the objective must be picklable to run in worker processes ({exc}); "
                            "define it at module level (not a lambda or a local function)") from exc
    context = multiprocessing.get_context(mp_context)
    pending, suspects = deque(jobs), deque()
    while pending or suspects:
        if suspects:
            batch = [suspects.popleft() for _ in range(min(len(suspects), max_workers))]
            yield from _run_alone(objective, batch, threads, context)
            continue
        pool = ProcessPoolExecutor(max_workers, mp_context=context)
        running, broken = {}, False
        try:
            while (pending or running) and not broken:
                while pending and len(running) < max_workers:
                    index, params = pending.popleft()
                    running[pool.submit(_execute, objective, params, threads)] = (index, params)
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    job = running.pop(future)
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        broken = True
                        suspects.append(job)
                        continue
                    except Exception as exc:  # noqa: BLE001 - e.g. a result that cannot be pickled
                        outcome = _failure(f"{type(exc).__name__}: {exc}")
                    yield job[0], outcome
            suspects.extend(running.values())   # broken: these were running too
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _run_alone(objective, batch, threads, context):
    """Run each ``(index, params)`` of ``batch`` in a one-worker pool of its own, side by side."""
    pools = [ProcessPoolExecutor(1, mp_context=context) for _ in batch]
    try:
        futures = [pool.submit(_execute, objective, params, threads) for pool, (_, params) in zip(pools, batch)]
        for (index, _), future in zip(batch, futures):
            try:
                outcome = future.result()
            except BrokenProcessPool:
                outcome = _failure("the worker process died while running this trial")
            yield index, outcome
    finally:
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)


def _run_on_dask(objective, jobs, client, timeout):
    """Yield ``(index, outcome)`` as trials finish on a Dask cluster; a lost trial is a failure.

    No more trials are submitted than the cluster has threads, so a worker
    holds only the trial it runs: when it dies, Dask reschedules that trial
    alone (and fails it with KilledWorker once it has killed
    ``allowed-failures`` workers), and no queued bystander is blamed.
    """
    from dask.distributed import as_completed
    token = f"{os.getpid()}-{time.monotonic_ns()}"
    pending, running = deque(jobs), {}

    def submit():
        index, params = pending.popleft()
        future = client.submit(_execute, objective, params, key=f"graphnet-trial-{index}-{token}", pure=False)
        running[future] = index
        return future

    def free_slots():
        return max(1, sum(client.nthreads().values())) - len(running)

    finished = as_completed([submit() for _ in range(min(len(pending), free_slots()))], timeout=timeout)
    try:
        for future in finished:
            try:
                outcome = future.result()
            except Exception as exc:  # noqa: BLE001 - KilledWorker, CancelledError, a lost connection...
                outcome = _failure(f"{type(exc).__name__}: {exc}")
            index = running.pop(future)
            future.release()
            while pending and free_slots() > 0:
                finished.add(submit())
            yield index, outcome
    except TimeoutError:
        for index in list(running.values()):
            yield index, _failure(f"no result within the search timeout of {timeout} s")
        while pending:
            yield pending.popleft()[0], _failure("not run: the search timed out")
    finally:
        for future in running:
            future.cancel()


class _Runner:
    """Where trials run: local processes (default) or a Dask cluster (``scheduler``)."""

    def __init__(self, scheduler=None, max_workers=2, threads=None, mp_context="spawn", timeout=None):
        self.scheduler, self.max_workers = scheduler, int(max_workers)
        self.mp_context, self.timeout = mp_context, timeout
        self.threads = threads if threads is not None else max(1, (os.cpu_count() or 1) // max(1, self.max_workers))
        self._client, self._own_client = None, False

    def __enter__(self):
        if self.scheduler is not None:
            if isinstance(self.scheduler, str):
                from dask.distributed import Client
                self._client, self._own_client = Client(self.scheduler), True
            else:
                self._client = self.scheduler
        return self

    def __exit__(self, *exc):
        if self._own_client:
            self._client.close()

    @property
    def where(self):
        if self._client is None:
            return f"{self.max_workers} local processes" if self.max_workers else "this process"
        return f"Dask scheduler {self._client.scheduler.address}"

    def run(self, objective, jobs):
        if self._client is not None:
            return _run_on_dask(objective, jobs, self._client, self.timeout)
        if self.max_workers == 0:   # in this process, one after the other: for debugging
            return ((index, _execute(objective, params)) for index, params in jobs)
        return _run_locally(objective, jobs, self.max_workers, self.threads, self.mp_context)


def _search(objective, param_sets, runner, round_index, first_index, fixed, metric, on_result, quiet):
    """Run one round of trials on ``runner``; return their records in the order they finished."""
    jobs = [(first_index + i, {**(fixed or {}), **params}) for i, params in enumerate(param_sets)]
    trials = []
    if not quiet:
        print(f"round {round_index}: {len(jobs)} trials on {runner.where}", flush=True)
    for index, outcome in runner.run(objective, jobs):
        params = dict(jobs[index - first_index][1])
        record = {"trial": index, "round": round_index, "params": params, **outcome}
        if record["status"] == "ok" and metric not in record:
            record.update(status="failed", error=f"the objective returned no {metric!r}")
        trials.append(record)
        if not quiet:
            print(_progress_line(record, metric), flush=True)
        if on_result is not None:
            on_result(record)
    return trials


def _progress_line(record, metric):
    params = ", ".join(f"{k}={_cell(v)}" for k, v in record["params"].items())
    if record["status"] == "ok":
        return f"trial {record['trial']:3d}: {metric} {_cell(record[metric])}  ({params})"
    return f"trial {record['trial']:3d}: FAILED {record.get('error', '')}  ({params})"


# =========================================================================== the searches
def random_search(objective, space, n_trials=10, seed=0, *, scheduler=None, max_workers=2, metric="val_accuracy",
                  mode="max", fixed=None, on_result=None, quiet=True, timeout=None, mp_context="spawn",
                  threads=None):
    """Draw ``n_trials`` hyperparameter sets from ``space`` and run a trial for each.

    ``space`` maps names to distributions (:class:`uniform`, :class:`log_uniform`,
    :class:`integer`, :class:`choice`; a list is a choice). ``fixed`` params are
    added to every trial (e.g. ``{"epochs": 3}``). Trials run on ``max_workers``
    local processes, or on the Dask cluster of ``scheduler`` (an address or a
    ``Client``); ``max_workers=0`` runs them here, one after the other (for
    debugging). ``on_result(record)`` is called as each trial finishes.
    Returns a :class:`SearchResult`.
    """
    space = _check_space(space)
    rng = np.random.default_rng(seed)
    param_sets = [{name: dist.sample(rng) for name, dist in space.items()} for _ in range(int(n_trials))]
    with _Runner(scheduler, max_workers, threads, mp_context, timeout) as runner:
        trials = _search(objective, param_sets, runner, 0, 0, fixed, metric, on_result, quiet)
    return SearchResult(trials, space, metric, mode)


def grid_search(objective, space, points=3, *, max_trials=1000, scheduler=None, max_workers=2,
                metric="val_accuracy", mode="max", fixed=None, on_result=None, quiet=True, timeout=None,
                mp_context="spawn", threads=None):
    """Every combination of ``points`` values per hyperparameter (all options of a choice).

    Log-uniform ranges are gridded geometrically. The lectures' warning: the
    number of trials is the product of the axes; past ``max_trials`` this
    raises instead of running for days.
    """
    space = _check_space(space)
    axes = {name: dist.grid(points) for name, dist in space.items()}
    total = math.prod(len(v) for v in axes.values())
    if total > max_trials:
        raise GraphnetError(f"grid_search: {total} combinations exceed max_trials={max_trials}; "
                            "use random_search or fewer points")
    param_sets = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    with _Runner(scheduler, max_workers, threads, mp_context, timeout) as runner:
        trials = _search(objective, param_sets, runner, 0, 0, fixed, metric, on_result, quiet)
    return SearchResult(trials, space, metric, mode)


def coarse_to_fine(objective, space, rounds=2, trials=8, keep=0.25, margin=0.25, seed=0, round_params=None, *,
                   scheduler=None, max_workers=2, metric="val_accuracy", mode="max", fixed=None, on_result=None,
                   quiet=True, timeout=None, mp_context="spawn", threads=None):
    """Random search in ``rounds``, each over ranges narrowed around the best trials of the last.

    After a round, each range shrinks to the span of the best ``keep`` fraction
    of its successful trials (at least 2), widened by ``margin`` of that span
    on each side (in log space for log-uniform ones) and kept inside the
    original range; a choice keeps the options those trials used.
    ``round_params`` (a list, one dict per round) adds per-round fixed params,
    the lectures' "a few epochs first": ``[{"epochs": 2}, {"epochs": 10}]``.
    ``trials`` is an int or one int per round. The result holds every round's
    trials; ``result.spaces`` lists the space of each round.
    """
    space = _check_space(space)
    per_round = list(trials) if isinstance(trials, (list, tuple)) else [int(trials)] * int(rounds)
    extras = list(round_params or [{}] * len(per_round))
    if len(extras) != len(per_round):
        raise GraphnetError(f"coarse_to_fine: {len(extras)} round_params for {len(per_round)} rounds")
    rng = np.random.default_rng(seed)
    all_trials, spaces, current = [], [], dict(space)
    with _Runner(scheduler, max_workers, threads, mp_context, timeout) as runner:
        for r, (count, extra) in enumerate(zip(per_round, extras)):
            spaces.append(current)
            param_sets = [{name: dist.sample(rng) for name, dist in current.items()} for _ in range(count)]
            found = _search(objective, param_sets, runner, r, len(all_trials), {**(fixed or {}), **extra},
                            metric, on_result, quiet)
            all_trials += found
            ranked = SearchResult(found, current, metric, mode).ranked()
            if len(ranked) >= 1:
                top = ranked[:max(2, math.ceil(keep * len(ranked)))]
                current = {name: dist.narrow([t["params"][name] for t in top], margin)
                           for name, dist in current.items()}
    return SearchResult(all_trials, space, metric, mode, spaces)


# =========================================================================== the plot
def _result_figure(result, title=None):
    from graphnet.training.plots import _figure
    names = list(result.space)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    figure = _figure(4.2 * cols, 3.4 * rows)
    axes = np.atleast_1d(figure.subplots(rows, cols)).ravel()
    ok, best = result.ok, result.best
    rounds = sorted({t["round"] for t in result.trials})
    for ax, name in zip(axes, names):
        dist = result.space[name]
        categorical = isinstance(dist, choice)
        position = (lambda v: dist.options.index(v) if v in dist.options else -1) if categorical else float
        for r in rounds:
            xs = [position(t["params"][name]) for t in ok if t["round"] == r]
            ys = [t[result.metric] for t in ok if t["round"] == r]
            ax.scatter(xs, ys, s=22, alpha=0.8, label=f"round {r}" if len(rounds) > 1 else "trial")
        if best is not None:
            ax.scatter([position(best["params"][name])], [best[result.metric]], marker="*", s=180, color="gold",
                       edgecolor="black", zorder=3, label="best")
        failed_at = [position(t["params"][name]) for t in result.failed]
        if failed_at:
            ax.scatter(failed_at, [0.03] * len(failed_at), marker="x", color="red", transform=ax.get_xaxis_transform(),
                       label="failed")
        if categorical:
            ax.set_xticks(range(len(dist.options)), [str(o) for o in dist.options])
        elif dist.log_scale:
            ax.set_xscale("log")
        ax.set(xlabel=name + (" (log)" if dist.log_scale else ""), ylabel=result.metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    failed = len(result.failed)
    figure.suptitle(title or f"{len(result.trials)} trials ({failed} failed): {result.metric} per hyperparameter")
    figure.tight_layout()
    return figure


# =========================================================================== a ready objective
_DATA_CACHE = {}


def _digits_splits(split_seed):
    if split_seed not in _DATA_CACHE:
        from graphnet.nn import data
        X, y = data.load_digits()
        splits = data.split(X, y, seed=split_seed)
        scaler = data.Standardizer().fit(splits.train[0])
        _DATA_CACHE[split_seed] = data.Splits(*[(scaler.transform(Xs), ys) for Xs, ys in splits])
    return _DATA_CACHE[split_seed]


class MLPTrial:
    """An objective: train an MLP with early stopping, return its best validation metrics.

    Hyperparameters it reads from ``params`` (others are ignored): ``lr``,
    ``weight_decay``, ``hidden_units`` (width of every hidden layer),
    ``layers`` (how many), ``dropout``, ``batch_size``, ``activation``,
    ``optimizer`` (a name for :func:`graphnet.nn.optim.get`), ``epochs``,
    ``patience``, ``batch_norm``. The constructor's arguments are the defaults.
    ``splits`` defaults to the standardized digits (70/15/15); any
    :class:`graphnet.nn.data.Splits` of arrays works. Picklable, so it runs in
    worker processes.
    """

    def __init__(self, splits=None, hidden_units=64, layers=1, activation="relu", lr=1e-3, weight_decay=0.0,
                 dropout=0.0, batch_size=64, optimizer="adam", epochs=10, patience=3, batch_norm=False,
                 backend="reference", seed=0, split_seed=0):
        self.splits = splits
        self.defaults = {"hidden_units": hidden_units, "layers": layers, "activation": activation, "lr": lr,
                         "weight_decay": weight_decay, "dropout": dropout, "batch_size": batch_size,
                         "optimizer": optimizer, "epochs": epochs, "patience": patience, "batch_norm": batch_norm}
        self.backend, self.seed, self.split_seed = backend, seed, split_seed

    def __call__(self, params):
        from graphnet.nn import optim
        from graphnet.nn import mlp
        from graphnet.training.fit import fit
        p = {**self.defaults, **{k: v for k, v in params.items() if k in self.defaults}}
        splits = self.splits if self.splits is not None else _digits_splits(self.split_seed)
        n_in, n_classes = splits.train[0].shape[1], int(np.max(splits.train[1])) + 1
        sizes = [n_in] + [int(p["hidden_units"])] * int(p["layers"]) + [n_classes]
        model = mlp(sizes, activation=p["activation"], dropout=float(p["dropout"]), batch_norm=bool(p["batch_norm"]),
                    seed=self.seed)
        history = fit(model, splits.train, splits.valid, optimizer=optim.get(p["optimizer"], float(p["lr"])),
                      epochs=int(p["epochs"]), batch_size=int(p["batch_size"]),
                      weight_decay=float(p["weight_decay"]), patience=p["patience"], backend=self.backend,
                      seed=self.seed, quiet=True)
        best = history.best()
        if not best:
            raise GraphnetError("the validation loss never became finite (diverged)")
        return {"val_accuracy": best["val_accuracy"], "val_loss": best["val_loss"],
                "train_accuracy": best["train_accuracy"], "best_epoch": history.best_epoch,
                "epochs_run": len(history.epoch)}
