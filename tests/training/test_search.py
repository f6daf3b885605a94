"""Hyperparameter search: distributions, grid/random/coarse-to-fine, and trials that fail or die.

Trials run in other processes, so the objectives are module-level functions of
this file (workers import it by name). The digits trials use a small subset and
2 epochs: the tests check the machinery, not the accuracy.
"""
import functools
import logging
import math
import os
import signal

import numpy as np
import pytest

from graphnet import data
from graphnet.training.search import (
    MLPTrial, SearchResult, choice, coarse_to_fine, grid_search, integer, log_uniform, random_search, uniform,
)


@functools.cache
def digits_trial():
    """An MLP trial on 400 training and 150 validation digits, 2 epochs (built lazily: workers import this file)."""
    X, y = data.load_digits()
    splits = data.split(X, y, seed=0)
    scaler = data.Standardizer().fit(splits.train[0])
    (Xt, yt), (Xv, yv), (Xs, ys) = [(scaler.transform(a), b) for a, b in splits]
    small = data.Splits((Xt[:400], yt[:400]), (Xv[:150], yv[:150]), (Xs[:10], ys[:10]))
    return MLPTrial(small, hidden_units=32, epochs=2, patience=1, batch_size=50)


SPACE = {"lr": log_uniform(1e-4, 3e-1), "weight_decay": log_uniform(1e-6, 1e-1)}
DIES_BELOW_DECAY = 1e-4


def quadratic(params):
    """A cheap objective peaked at lr = 1e-2 (accuracy 1 there)."""
    return {"val_accuracy": 1.0 - (math.log10(params["lr"]) + 2.0) ** 2 / 10.0}


def raises_for_tanh(params):
    if params["activation"] == "tanh":
        raise ValueError("planted failure")
    return {"val_accuracy": 0.5 + params["units"] / 1000}


def dies_for_small_decay(params):
    """The flag: a trial with weight decay below 1e-4 kills its worker process."""
    if params["weight_decay"] < DIES_BELOW_DECAY:
        os._exit(3)
    return digits_trial()(params)


def doomed(params):
    return {"val_accuracy": quadratic(params)["val_accuracy"]} if params["lr"] > 1e-3 else os._exit(4)


# ---------------------------------------------------------------- distributions
def test_distributions_sample_inside_their_ranges():
    rng = np.random.default_rng(0)
    lr = [log_uniform(1e-5, 1e-1).sample(rng) for _ in range(2000)]
    assert min(lr) >= 1e-5 and max(lr) <= 1e-1
    assert 10 ** np.median(np.log10(lr)) == pytest.approx(1e-3, rel=0.3)   # uniform in log space
    assert {integer(2, 4).sample(rng) for _ in range(200)} == {2, 3, 4}
    assert {choice(["a", "b"]).sample(rng) for _ in range(50)} == {"a", "b"}
    assert all(0.2 <= uniform(0.2, 0.5).sample(rng) <= 0.5 for _ in range(100))


def test_grids_are_linear_geometric_and_exhaustive():
    assert uniform(0, 1).grid(3) == [0.0, 0.5, 1.0]
    assert log_uniform(1e-4, 1e-2).grid(3) == pytest.approx([1e-4, 1e-3, 1e-2])
    assert integer(1, 3).grid(5) == [1, 2, 3]
    assert choice(["relu", "tanh"]).grid(7) == ["relu", "tanh"]


def test_narrowing_keeps_inside_the_original_range_and_works_in_log_space():
    narrowed = log_uniform(1e-5, 1e-1).narrow([1e-3, 1e-2], margin=0.5)
    assert narrowed.low == pytest.approx(10 ** -3.5) and narrowed.high == pytest.approx(10 ** -1.5)
    assert uniform(0, 1).narrow([0.0, 0.2]).low == 0.0
    assert integer(1, 100).narrow([10, 20], margin=0.5).high == 25
    assert choice(["a", "b", "c"]).narrow(["c", "a"]).options == ["a", "c"]


# ---------------------------------------------------------------- searches, in this process
def test_grid_search_runs_every_combination():
    result = grid_search(raises_for_tanh, {"activation": ["relu", "tanh"], "units": integer(10, 30)}, points=3,
                         max_workers=0)
    assert len(result.trials) == 6
    assert {t["params"]["units"] for t in result.trials} == {10, 20, 30}
    assert len(result.failed) == 3 and all("planted failure" in t["error"] for t in result.failed)
    assert result.best["params"] == {"activation": "relu", "units": 30}


def test_random_search_is_reproducible_with_a_seed():
    runs = [random_search(quadratic, SPACE, n_trials=5, seed=3, max_workers=0) for _ in range(2)]
    assert [t["params"] for t in runs[0].trials] == [t["params"] for t in runs[1].trials]


def test_coarse_to_fine_narrows_the_range_around_the_best_trials():
    result = coarse_to_fine(quadratic, {"lr": log_uniform(1e-6, 1.0)}, rounds=3, trials=10, keep=0.3, seed=0,
                            round_params=[{"epochs": 1}, {"epochs": 2}, {"epochs": 4}], max_workers=0)
    widths = [math.log(s["lr"].high / s["lr"].low) for s in result.spaces]
    assert widths[0] > widths[1] > widths[2]
    assert result.spaces[-1]["lr"].low < 1e-2 < result.spaces[-1]["lr"].high
    assert [t["params"]["epochs"] for t in result.trials if t["round"] == 2] == [4] * 10
    assert result.best["round"] > 0 and abs(math.log10(result.best["params"]["lr"]) + 2) < 0.3


def test_a_best_value_at_the_edge_of_its_range_is_pointed_out():
    result = random_search(quadratic, {"lr": log_uniform(1e-6, 1e-2)}, n_trials=12, seed=0, max_workers=0)
    assert result.best["params"]["lr"] > 1e-3
    assert [w.split(":")[0] for w in result.edge_warnings()] == ["lr"]


def test_results_table_and_plot(tmp_path):
    result = random_search(raises_for_tanh, {"activation": choice(["relu", "tanh"]), "units": integer(1, 99),
                                             "lr": log_uniform(1e-4, 1.0)}, n_trials=8, seed=0, max_workers=0)
    rows = result.rows()
    assert len(rows) == 8 and {"trial", "status", "activation", "units", "lr", "val_accuracy"} <= set(rows[-1])
    lines = result.table().splitlines()
    assert lines[0].split()[:5] == ["trial", "round", "activation", "units", "lr"]
    assert lines[1].split()[0] == str(result.best["trial"])      # best first
    assert "FAILED: ValueError: planted failure" in result.table()
    figure = result.figure()
    assert [ax.get_xscale() for ax in figure.axes] == ["linear", "linear", "log"]
    assert os.path.getsize(result.plot(tmp_path / "search.png")) > 1000


# ---------------------------------------------------------------- local worker processes
def test_local_processes_record_a_dead_worker_as_a_failed_trial_and_go_on():
    result = random_search(doomed, {"lr": log_uniform(1e-4, 1e-1)}, n_trials=5, seed=4, max_workers=2)
    died = [t for t in result.trials if t["params"]["lr"] <= 1e-3]
    assert len(died) == 1, "the seed must draw one trial that kills its worker"
    assert {t["trial"] for t in result.failed} == {t["trial"] for t in died}
    assert all("worker process died" in t["error"] for t in died)
    assert len(result.ok) == 5 - len(died) and result.best is not None


def test_an_unpicklable_objective_is_refused_with_advice():
    with pytest.raises(Exception, match="picklable"):
        random_search(lambda p: 1.0, SPACE, n_trials=1, max_workers=2)


# ---------------------------------------------------------------- a Dask cluster on loopback
@pytest.fixture(scope="module")
def dask_client():
    dask = pytest.importorskip("dask")
    distributed = pytest.importorskip("dask.distributed")
    # A trial that kills a worker is retried once, then failed; a worker runs one trial at a
    # time, so a death only ever touches the trial it was running.
    with dask.config.set({"distributed.scheduler.allowed-failures": 1,
                          "distributed.scheduler.worker-saturation": 1.0}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                           dashboard_address=None, silence_logs=logging.CRITICAL)
        client = distributed.Client(cluster)
        yield client
        client.close()
        cluster.close()


def test_random_search_on_a_dask_cluster_returns_the_best_trial(dask_client):
    address = dask_client.scheduler.address
    assert address.startswith("tcp://127.0.0.1:")
    result = random_search(digits_trial(), SPACE, n_trials=4, seed=0, scheduler=address)
    assert len(result.ok) == 4
    assert result.best is max(result.ok, key=lambda t: t["val_accuracy"])
    assert 0.0 < result.best["val_accuracy"] <= 1.0 and result.best["epochs_run"] <= 2


def test_a_trial_that_kills_its_dask_worker_fails_alone(dask_client):
    result = random_search(dies_for_small_decay, SPACE, n_trials=5, seed=1, scheduler=dask_client)
    died = {t["trial"] for t in result.trials if t["params"]["weight_decay"] < DIES_BELOW_DECAY}
    assert len(died) == 1, "the seed must draw one trial with the flag"
    assert {t["trial"] for t in result.failed} == died
    assert all("KilledWorker" in t["error"] for t in result.failed)
    assert result.best is not None and result.best["params"]["weight_decay"] >= DIES_BELOW_DECAY


def test_killing_a_dask_worker_mid_search_still_returns_a_result(dask_client):
    dask_client.wait_for_workers(2, timeout=120)   # the last test's dead workers are back
    pids = list(dask_client.run(os.getpid).values())
    killed = []

    def kill_a_worker_after_the_first_result(record):
        if not killed:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    result = random_search(digits_trial(), SPACE, n_trials=5, seed=4, scheduler=dask_client,
                           on_result=kill_a_worker_after_the_first_result)
    assert killed
    assert len(result.trials) == 5
    assert len(result.ok) >= 4 and result.best is not None   # at most the trial it was running is lost
    assert isinstance(result, SearchResult)
