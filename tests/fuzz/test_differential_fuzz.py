"""Differential fuzzing: random graphs give the same values on every backend.

Each example is a random well-typed graph (see ``graph_recipes``): every op,
shapes with ``None`` batch dimensions and broadcasting, reductions over random
axes with and without ``keepdims``, chains the fuser fuses and ones it refuses,
and the gradients of a random scalar cost, applied as SGD updates in place.
``cpu`` fused and ``cpu`` unfused must agree with the reference backend run on
the optimized graph, and that with the plain reference (see ``differential.py``):
float32 to ``rtol=1e-4``, float64 to ``1e-10`` (each relative to the output's
scale), integers and booleans exactly, NaN and Inf in the same places, and a
crash of one variant counts as a disagreement.
"""
import os

import pytest
from hypothesis import given, seed, settings

from conftest import fuzz_examples
from differential import CHECKED_VARIANTS, disagreement, run_variants
from graph_recipes import ALL_OPS, build, recipes

#: totals of this process's fuzz run, printed at the end (see test_zz_report)
TALLY = {"graphs": 0, "ops": set(), "with_gradients": 0, "with_updates": 0, "checked": 0}


@pytest.fixture(scope="module")
def examples(request):
    return fuzz_examples(request.config)


def test_backends_agree_on_random_graphs(examples, tmp_path):
    if examples > LONG_RUN_CHUNK:
        return long_run(examples, tmp_path)

    @settings(settings.get_profile("fuzz-bounded"), max_examples=examples)
    @given(recipes())
    def check(recipe):
        TALLY["graphs"] += 1
        TALLY["ops"].update(step.op for step in recipe.steps)
        TALLY["with_gradients"] += recipe.cost is not None
        TALLY["with_updates"] += recipe.sgd or bool(recipe.assign)
        problem = disagreement(run_variants(recipe))
        assert problem is None, f"{recipe!r}\n{problem}"

    if os.environ.get("GRAPHNET_FUZZ_SEED"):
        check = seed(int(os.environ["GRAPHNET_FUZZ_SEED"]))(check)
    check()


LONG_RUN_CHUNK = 1000


def long_run(examples, tmp_path):
    """``--fuzz-long``: ``examples`` graphs in worker processes (see run_fuzz.py), every failure listed."""
    import json

    import run_fuzz
    failures = tmp_path / "fuzz-failures.jsonl"
    summary = run_fuzz.run(examples, jobs=int(os.environ.get("GRAPHNET_FUZZ_JOBS", "2")), chunk=LONG_RUN_CHUNK,
                           seed=int(os.environ.get("GRAPHNET_FUZZ_SEED", "0")), out=str(failures))
    TALLY["graphs"] += summary["graphs"]
    TALLY["checked"] += summary["checked"]
    print(f"\nlong fuzz run: {json.dumps(summary)}")
    assert not summary["crashes"], summary["crashes"]
    assert summary["graphs"] == examples
    found = failures.read_text() if failures.exists() else ""
    assert summary["failures"] == 0, f"{summary['failures']} mismatches:\n{found[:20000]}"


def test_check_numerics_stops_the_same_graphs_on_every_backend(examples):
    if examples > LONG_RUN_CHUNK:
        pytest.skip("the long run checks check_numerics on every third graph")
    """With ``check_numerics=True``, reference and fused cpu both raise NumericsError or both run
    (and agree); the kernels' in-kernel flags must see what the reference's per-node check sees."""
    @settings(settings.get_profile("fuzz-bounded"), max_examples=max(10, examples // 3))
    @given(recipes())
    def check(recipe):
        TALLY["checked"] += 1
        problem = disagreement(run_variants(recipe, CHECKED_VARIANTS))
        assert problem is None, f"{recipe!r}\n{problem}"

    check()


def test_recipes_reach_every_op():
    """The strategy draws every op of its vocabulary (checked on built graphs, nothing compiled)."""
    drawn = set()

    @settings(settings.get_profile("fuzz-bounded"), max_examples=500, database=None, derandomize=True)
    @given(recipes())
    def collect(recipe):
        build(recipe)
        drawn.update(step.op for step in recipe.steps)

    collect()
    assert set(ALL_OPS) <= drawn, f"ops never drawn: {sorted(set(ALL_OPS) - drawn)}"


def test_zz_report_the_number_of_fuzzed_graphs():
    print(f"\nfuzzed graphs: {TALLY['graphs']} ({TALLY['with_gradients']} with gradients, "
          f"{TALLY['with_updates']} with updates), {len(TALLY['ops'])} distinct ops; "
          f"{TALLY['checked']} more with check_numerics")
