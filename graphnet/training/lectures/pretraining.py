"""Item 9, unsupervised pre-training with few labels, in the setting where the literature says it helps.

``examples/pretraining_few_labels.py`` (one hidden pair of 100 sigmoid units,
10% of the labels, Adam) found no benefit: 0.913 vs 0.916 over 5 seeds. Erhan
et al. (2010) saw pre-training help most in deeper sigmoid nets trained by
SGD, without batch norm, with few labelled examples. A search over depth
{1, 3} x labels per class {1, 3, 10} x fine-tuning optimizer {SGD 0.1, Adam
1e-3} (``--full``; 3 seeds first, then 5) found that setting here:

* 3 hidden layers of 100 sigmoid units, 3 labels per class (30 labelled
  training and 30 labelled validation digits), SGD(0.1) fine-tuning: the
  default run below;
* with Adam the benefit disappears at 3 and 10 labels per class; with one
  hidden layer it is small or nil except at 1 label per class.

Both arms get the same supervised budget (300 epochs of batch 10 on the
labelled examples, no early stop, the best epoch on the labelled validation
examples restored) and the same initialization seed; the pre-trained arm first
trains each hidden layer as a denoising autoencoder (masking noise 0.25, tied
weights, 10 epochs each) on all 1258 training inputs, labels unused
(``graphnet.training.pretrain.pretrain_and_finetune``). Test accuracy is on the
whole test split. Seeds are paired (the same labelled subset for both arms), so
the verdict rests on the paired difference: reproduced when its 95% Student-t
confidence interval lies above 0.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from graphnet.training.lectures.common import Outcome, digits, figure, mean_ci, save

NAME = "pretraining"
TITLE = "Unsupervised pre-training with few labels: deep sigmoid nets, SGD, 3 labels per class"
CLAIM = ("Greedy layer-wise denoising-autoencoder pre-training on unlabelled inputs improves the test accuracy of a "
         "deep sigmoid net fine-tuned on very few labels.")

HEADLINE = {"depth": 3, "per_class": 3, "optimizer": "sgd"}
COMMON = {"width": 100, "noise": 0.25, "pretrain_epochs": 10, "epochs": 300, "batch_size": 10}
SIZES = {"tiny": {**COMMON, "width": 16, "pretrain_epochs": 1, "epochs": 5, "seeds": 2,
                  "settings": [{"depth": 2, "per_class": 1, "optimizer": "sgd"}]},
         "default": {**COMMON, "seeds": 4, "settings": [HEADLINE]},
         "full": {**COMMON, "seeds": 5,
                  "settings": [{"depth": d, "per_class": n, "optimizer": o}
                               for d, n, o in itertools.product((1, 3), (1, 3, 10), ("sgd", "adam"))]}}


def labelled_subset(pair, per_class, rng):
    """``per_class`` examples of every class, drawn with ``rng``: the labels a practitioner has."""
    X, y = pair
    keep = np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in np.unique(y)])
    return X[keep], y[keep]


def compare(setting, sizes, splits, backend, seed):
    """Test accuracy of (random init, pre-trained) for one seed of one setting."""
    from graphnet.nn import optim
    from graphnet.training.fit import evaluate
    from graphnet.training.pretrain import pretrain_and_finetune
    rng = np.random.default_rng(1000 + seed)
    train = labelled_subset(splits.train, setting["per_class"], rng)
    valid = labelled_subset(splits.valid, setting["per_class"], rng)
    accuracies = []
    for pretrain in (False, True):
        optimizer = optim.SGD(0.1) if setting["optimizer"] == "sgd" else optim.Adam(1e-3)
        result = pretrain_and_finetune(train, valid, unlabeled=splits.train[0], hidden=(sizes["width"],) * setting["depth"],
                                       activation="sigmoid", noise=sizes["noise"], tied=True,
                                       pretrain_epochs=sizes["pretrain_epochs"], pretrain_lr=1e-3,
                                       pretrain_batch_size=32, optimizer=optimizer, epochs=sizes["epochs"],
                                       batch_size=sizes["batch_size"], patience=None, pretrain=pretrain, seed=seed,
                                       backend=backend)
        accuracies.append(evaluate(result.model.eval_function(backend=backend), *splits.test)[1])
    return tuple(accuracies)


def describe(setting):
    return f"{setting['depth']} hidden, {setting['per_class']}/class, {setting['optimizer']}"


def run(out_dir, size="default", backend="cpu", seed=0, say=print):
    sizes = SIZES[size]
    splits = digits(0, standardize=False)     # pixels in [0, 1]: the autoencoders reconstruct them (cross-entropy)
    seeds = [seed + i for i in range(sizes["seeds"])]
    say(f"sigmoid MLPs of {sizes['width']}-unit layers; pre-training {sizes['pretrain_epochs']} epochs per layer on "
        f"all {len(splits.train[1])} training inputs; fine-tuning {sizes['epochs']} epochs; seeds {seeds}; test on "
        f"{len(splits.test[1])}")
    results = {}
    for setting in sizes["settings"]:
        pairs = [compare(setting, sizes, splits, backend, s) for s in seeds]
        random_init, pretrained = (np.array(arm) for arm in zip(*pairs))
        diff, half = mean_ci(pretrained - random_init)
        results[describe(setting)] = {"setting": setting, "random": random_init.tolist(),
                                      "pretrained": pretrained.tolist(), "difference": diff, "ci": half}
        say(f"  {describe(setting):<24} random init {random_init.mean():.3f}, pre-trained {pretrained.mean():.3f}; "
            f"difference {diff:+.3f} +- {half:.3f} (95% CI), pre-training better in "
            f"{int(np.sum(pretrained > random_init))} of {len(seeds)} seeds")
    headline = describe(HEADLINE) if describe(HEADLINE) in results else next(iter(results))
    head = results[headline]
    reproduced = bool(head["difference"] - head["ci"] > 0)
    figures = [_plot_seeds(head, headline, out_dir)]
    if len(results) > 1:
        figures.append(_plot_settings(results, out_dir))
    low, high = head["difference"] - head["ci"], head["difference"] + head["ci"]
    measured = (f"{headline}: test accuracy {np.mean(head['random']):.3f} from random init vs "
                f"{np.mean(head['pretrained']):.3f} pre-trained, difference {head['difference']:+.3f}, 95% CI "
                f"[{low:+.3f}, {high:+.3f}] over {len(seeds)} paired seeds"
                + ("" if len(results) == 1 else f"; {sum(r['difference'] - r['ci'] > 0 for r in results.values())} "
                   f"of {len(results)} settings show a benefit whose CI excludes 0"))
    return Outcome(NAME, CLAIM, reproduced, measured, {"results": results, "headline": headline}, figures)


def _plot_seeds(result, label, out_dir):
    fig = figure(6.5, 4.2)
    ax = fig.subplots()
    for r, p in zip(result["random"], result["pretrained"]):
        ax.plot([0, 1], [r, p], "-", color="grey", alpha=0.6)
    for x, key, color in ((0, "random", "tab:orange"), (1, "pretrained", "tab:blue")):
        values = np.asarray(result[key])
        mean, half = mean_ci(values)
        ax.scatter([x] * len(values), values, color=color, zorder=3, label=f"{key}: each seed")
        ax.errorbar([x + 0.08], [mean], yerr=[[half if math.isfinite(half) else 0]], fmt="D", color="black",
                    capsize=5, label="mean, 95% CI" if x == 0 else None)
    ax.set_xticks([0, 1], ["random init", "pre-trained (denoising AE)"])
    ax.set_xlim(-0.4, 1.4)
    ax.set(ylabel="test accuracy", title=f"pre-training with few labels ({label})")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return save(fig, out_dir, "pretraining_seeds.png")


def _plot_settings(results, out_dir):
    fig = figure(9, 4.2)
    ax = fig.subplots()
    labels = list(results)
    diffs = [results[k]["difference"] for k in labels]
    halves = [results[k]["ci"] for k in labels]
    colors = ["tab:blue" if d - h > 0 else "tab:grey" for d, h in zip(diffs, halves)]
    ax.bar(range(len(labels)), diffs, yerr=halves, capsize=4, color=colors)
    ax.axhline(0, color="black", lw=1)
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=8)
    ax.set(ylabel="test accuracy: pre-trained - random init", title="benefit of pre-training per setting "
           "(mean over seeds, 95% CI; blue: CI above 0)")
    ax.grid(alpha=0.3, axis="y")
    return save(fig, out_dir, "pretraining_settings.png")
