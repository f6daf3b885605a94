"""The lecture gallery: every experiment runs at its tiny size, and its verdict follows from what it measured.

Each test runs one experiment (``size="tiny"``, reference backend: seconds)
and checks its outcome against an oracle independent of the verdict: the
theory of the experiment (a tanh net of std-0.01 weights scales its input by
0.01 sqrt(width) per layer), the numbers the experiment returned (recomputing
its rule), or the toolbox's own reports. The verdicts are never asserted to be
"reproduced": at tiny sizes a claim may fairly not reproduce; what must hold is
that the verdict is computed from the measurements.
"""
import contextlib
import io
import math
import re

import numpy as np
import pytest

from graphnet.__main__ import build_parser, main
from graphnet.errors import GraphnetError
from graphnet.training.lectures import EXPERIMENTS, common, experiment, run_experiment

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_RUNS = {}


def tiny(name, tmp_path_factory, **options):
    """Run experiment ``name`` at its tiny size once per test module; return (outcome, printed lines)."""
    key = (name, tuple(sorted(options.items())))
    if key not in _RUNS:
        lines = []
        out = tmp_path_factory.mktemp(name)
        outcome = run_experiment(name, str(out), size="tiny", backend="reference", say=lines.append, **options)
        _RUNS[key] = (outcome, lines)
    return _RUNS[key]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_states_its_claim_and_writes_drawn_figures(name, tmp_path_factory):
    outcome, lines = tiny(name, tmp_path_factory)
    module = experiment(name)
    assert lines[1] == f"claim: {module.CLAIM}"
    assert lines[-1] == outcome.line()
    assert lines[-1].startswith(f"{name}: {'REPRODUCED' if outcome.reproduced else 'NOT REPRODUCED'}: {module.CLAIM}")
    assert outcome.figures
    for path in outcome.figures:
        with open(path, "rb") as f:
            content = f.read()
        assert content[:8] == PNG_SIGNATURE, path
        assert len(content) > 5_000, path          # a drawn figure, not an empty canvas


# ---------------------------------------------------------------- 1. initialization
def test_small_init_shrinks_each_tanh_layer_by_its_scale_times_root_width(tmp_path_factory):
    outcome, _ = tiny("initialization", tmp_path_factory)
    std = outcome.numbers["std"]["tanh, N(0, 0.01²)"]
    width = experiment("initialization").SIZES["tiny"]["width"]
    assert np.all(np.diff(std) < 0)                                     # decreasing layer after layer
    # tanh is linear near 0, so each layer multiplies the std by 0.01 * sqrt(width) (= 0.1 here).
    np.testing.assert_allclose(np.asarray(std[1:]) / np.asarray(std[:-1]), 0.01 * math.sqrt(width), rtol=0.2)
    assert outcome.numbers["checks"]["0.01 collapses"]


def test_relu_with_xavier_halves_the_variance_per_layer_and_he_keeps_it(tmp_path_factory):
    outcome, _ = tiny("initialization", tmp_path_factory)
    ratio = outcome.numbers["ratio"]
    layers = experiment("initialization").SIZES["tiny"]["layers"]
    assert ratio["ReLU, Xavier"] == pytest.approx(0.5 ** ((layers - 1) / 2), rel=0.5)
    assert 0.25 < ratio["ReLU, He"] < 4                                  # no systematic drift: He is stable
    assert ratio["ReLU, He"] > 5 * ratio["ReLU, Xavier"]
    assert min(outcome.numbers["saturated"]["tanh, N(0, 1)"]) > 0.5      # std 1.0: saturated at +-1


def test_the_initialization_verdict_is_the_conjunction_of_its_checks(tmp_path_factory):
    outcome, _ = tiny("initialization", tmp_path_factory)
    assert outcome.reproduced == all(outcome.numbers["checks"].values())


# ---------------------------------------------------------------- 2. batch norm
def test_the_batch_norm_verdict_follows_from_its_grids(tmp_path_factory):
    outcome, _ = tiny("batch_norm", tmp_path_factory)
    n = outcome.numbers
    grids = {k: np.asarray(v) for k, v in n["grids"].items()}
    assert all(g.shape == (len(n["stds"]), len(n["rates"])) for g in grids.values())
    spread = {k: np.ptp(np.log10(np.where(np.isfinite(g), g, 1e3)), axis=0).mean() for k, g in grids.items()}
    trained = {k: int(np.sum(g[:, -1] < math.log(10) / 3)) for k, g in grids.items()}
    expected = spread["batch norm"] < spread["plain"] and trained["batch norm"] > trained["plain"]
    assert outcome.reproduced == expected
    assert np.all(np.isfinite(grids["batch norm"]))       # normalized activations never overflow here


# ---------------------------------------------------------------- 3. babysitting
def test_babysitting_far_too_high_a_rate_blows_the_loss_up_and_too_low_barely_moves_it(tmp_path_factory):
    outcome, _ = tiny("babysitting", tmp_path_factory)
    curves, initial = outcome.numbers["curves"], outcome.numbers["initial_loss"]
    assert len(curves["good"]) == experiment("babysitting").SIZES["tiny"]["epochs"]
    assert max(curves["far too high"]) > initial                    # Adam at rate 1: it explodes
    assert curves["too low"][-1] > 0.8 * initial                    # rate 1e-5: hardly any progress
    assert curves["good"][-1] < curves["too low"][-1]
    assert outcome.reproduced == all(outcome.numbers["checks"].values())


def test_babysitting_update_ratios_grow_with_the_learning_rate(tmp_path_factory):
    outcome, _ = tiny("babysitting", tmp_path_factory)
    ratios = outcome.numbers["ratios"]
    first = {label: np.median([r[0] for r in per.values()]) for label, per in ratios.items()}
    assert first["too low"] < first["good"] < first["too high"]


# ---------------------------------------------------------------- 4. sanity checks
def test_sanity_checks_initial_loss_is_near_log10_and_decay_raises_it(tmp_path_factory):
    outcome, _ = tiny("sanity_checks", tmp_path_factory)
    n = outcome.numbers
    assert n["initial_loss"] == pytest.approx(math.log(10), rel=0.1)
    assert n["initial_loss_with_decay"] > n["initial_loss"]


def test_sanity_checks_the_planted_saturated_init_fails_and_is_named(tmp_path_factory):
    outcome, _ = tiny("sanity_checks", tmp_path_factory)
    n = outcome.numbers
    assert n["overfit_accuracy"] == 1.0
    assert n["bug_accuracy"] < 1.0
    assert "saturated initialization" in n["bug_suspects"]
    assert outcome.reproduced == all(n["checks"].values())


# ---------------------------------------------------------------- 5. dead ReLUs
def test_dead_relus_verdict_follows_from_the_measured_fractions(tmp_path_factory):
    outcome, _ = tiny("dead_relus", tmp_path_factory)
    dead = outcome.numbers["dead"]
    assert all(0 <= v <= 1 for values in dead.values() for v in values)
    mean = {k: np.mean(v) for k, v in dead.items()}
    assert outcome.reproduced == (mean["too high"] >= 0.05 and mean["too high"] > mean["moderate"])


# ---------------------------------------------------------------- 6. search
def test_random_search_tries_a_distinct_rate_per_trial_and_the_grid_only_points(tmp_path_factory):
    outcome, _ = tiny("search", tmp_path_factory)
    points = experiment("search").SIZES["tiny"]["points"]
    assert outcome.numbers["distinct_lr"] == {"grid": points, "random": points ** 2}
    best, median = outcome.numbers["best"], outcome.numbers["median"]
    assert outcome.reproduced == (best["random"] >= best["grid"] and median["fine"] > median["random"])


# ---------------------------------------------------------------- 7. dropout
def test_dropout_gaps_are_train_minus_validation_accuracy_over_the_last_epochs(tmp_path_factory):
    outcome, _ = tiny("dropout", tmp_path_factory)
    n = outcome.numbers
    tail = max(1, experiment("dropout").SIZES["tiny"]["epochs"] // 3)
    for label, gap in n["gap"].items():
        expected = np.mean(np.subtract(n["train_accuracy"][label], n["val_accuracy"][label])[-tail:])
        assert gap == pytest.approx(expected)
    plain, dropped = n["gap"].values()
    assert outcome.reproduced == (dropped < plain)


# ---------------------------------------------------------------- 8. gradient check
def test_gradient_check_passes_the_correct_net_and_fails_only_below_the_planted_bug(tmp_path_factory):
    outcome, lines = tiny("gradient_check", tmp_path_factory)
    errors = outcome.numbers["relative_error"]
    correct, buggy = errors.values()
    assert max(correct.values()) < 1e-7
    assert all(buggy[name] > 1e-2 for name in buggy if name.startswith("dense0."))
    assert all(buggy[name] < 1e-7 for name in buggy if not name.startswith("dense0."))
    assert outcome.reproduced
    assert any("FAIL" in line for line in lines) and any("worst entries of dense0.W" in line for line in lines)


def test_the_planted_op_computes_tanh_forward_and_the_wrong_derivative():
    import graphnet as gn
    op = experiment("gradient_check").TanhWithPlantedBug()
    x = gn.placeholder("x", (3,), "float64")
    y = op(x)
    values = np.array([-1.0, 0.2, 2.0])
    forward, derivative = gn.function([x], [y, gn.grad(gn.sum(y), x)], backend="reference")(values)
    np.testing.assert_allclose(forward, np.tanh(values))
    np.testing.assert_allclose(derivative, 1 - np.tanh(values))     # the bug: 1 - t instead of 1 - t^2


# ---------------------------------------------------------------- 9. pre-training
def test_pretraining_confidence_interval_and_verdict_come_from_the_paired_seeds(tmp_path_factory):
    from scipy import stats
    outcome, _ = tiny("pretraining", tmp_path_factory)
    result = outcome.numbers["results"][outcome.numbers["headline"]]
    difference = np.subtract(result["pretrained"], result["random"])
    assert len(difference) == experiment("pretraining").SIZES["tiny"]["seeds"]
    half = stats.t.ppf(0.975, len(difference) - 1) * difference.std(ddof=1) / math.sqrt(len(difference))
    assert result["difference"] == pytest.approx(difference.mean())
    assert result["ci"] == pytest.approx(half)
    assert outcome.reproduced == (difference.mean() - half > 0)


def test_labelled_subsets_keep_the_same_number_of_examples_per_class():
    y = np.repeat(np.arange(10), 7)
    X = np.arange(70.0)[:, None]
    Xs, ys = experiment("pretraining").labelled_subset((X, y), 3, np.random.default_rng(0))
    assert np.bincount(ys).tolist() == [3] * 10
    np.testing.assert_array_equal(y[Xs[:, 0].astype(int)], ys)    # each label stays with its example


# ---------------------------------------------------------------- the command and the shared pieces
def run_cli(*argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["lectures", *argv])
    return status, out.getvalue().splitlines()


def test_the_command_without_a_name_lists_every_experiment():
    status, lines = run_cli()
    assert status == 0
    listed = [line.split()[0] for line in lines[1:]]
    assert listed == list(EXPERIMENTS)


def test_the_command_runs_one_experiment_prints_its_folder_and_ends_with_the_outcome(tmp_path):
    status, lines = run_cli("gradient_check", "--tiny", "--backend", "reference", "--out", str(tmp_path))
    assert status == 0
    assert any(line.startswith(f"figures go to {tmp_path}") for line in lines)
    assert re.match(r"gradient_check: (REPRODUCED|NOT REPRODUCED): ", lines[-2])
    assert (tmp_path / "gradient_check.png").read_bytes()[:8] == PNG_SIGNATURE


def test_the_command_refuses_an_unknown_experiment_and_conflicting_sizes():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["lectures", "no_such_lecture"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["lectures", "dropout", "--tiny", "--full"])
    args = build_parser().parse_args(["lectures", "dropout", "--full", "--out", "x"])
    assert (args.name, args.size, args.out, args.threads) == ("dropout", "full", "x", 1)


def test_an_unknown_name_or_size_is_a_graphnet_error_naming_the_choices(tmp_path):
    with pytest.raises(GraphnetError, match="choose one of initialization, batch_norm"):
        experiment("warmup")
    with pytest.raises(GraphnetError, match="size must be one of tiny, default, full"):
        run_experiment("dropout", str(tmp_path), size="huge")


def test_mean_ci_is_the_student_t_interval():
    values = [0.1, 0.3, 0.2, 0.4]
    mean, half = common.mean_ci(values)
    assert mean == pytest.approx(0.25)
    assert half == pytest.approx(3.182446 * np.std(values, ddof=1) / 2, rel=1e-6)   # t(0.975, 3) = 3.1824
    assert common.mean_ci([0.5])[1] == math.inf
