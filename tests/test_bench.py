"""The benchmark harness's smoke test: ``python -m bench --quick`` completes and every
variant computes the same values before anything is timed. No speed is asserted."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out),
                           "--cache-dir", str(out / "cache")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    results = [p for p in out.iterdir() if p.suffix == ".json"]
    return proc, out, results


def test_quick_run_completes(quick_run):
    proc, _, results = quick_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(results) == 1


def test_quick_run_writes_json_markdown_and_chart(quick_run):
    _, out, results = quick_run
    stem = results[0].stem
    assert (out / f"{stem}.md").read_text().startswith("# graphnet benchmark")
    pytest.importorskip("matplotlib")
    assert (out / f"{stem}.png").stat().st_size > 0


def test_every_workload_family_runs_and_passes_its_correctness_check(quick_run):
    _, _, results = quick_run
    data = json.loads(results[0].read_text())
    families = {row["case"]["family"] for row in data["rows"]}
    assert families == {"W1", "W2", "W3", "W4", "W5"}
    for row in data["rows"]:
        assert row["check"]["passed"], (row["case"]["id"], row["check"])
        assert not row.get("refused")


def test_both_graphnet_variants_and_numpy_are_checked_and_timed(quick_run):
    _, _, results = quick_run
    data = json.loads(results[0].read_text())
    for row in data["rows"]:
        for variant in ("graphnet fused", "graphnet unfused", "numpy"):
            timing = row["timings"].get(variant)
            assert timing and timing["blocks"] > 0 and timing["error"] is None, (row["case"]["id"], variant)


def test_the_hand_written_numba_kernels_are_checked_and_timed_where_they_exist(quick_run):
    _, _, results = quick_run
    data = json.loads(results[0].read_text())
    tasks = {row["case"]["task"] for row in data["rows"] if "hand numba" in row["timings"]}
    assert tasks == {"bn_relu_fwd", "bn_relu_bwd", "bias_relu_bwd", "softmax_xent"}


def test_compile_time_is_measured_cold_and_warm_in_new_processes(quick_run):
    _, _, results = quick_run
    data = json.loads(results[0].read_text())
    (case, by_variant), = data["compile"].items()
    phases = by_variant["graphnet fused"]
    assert phases["cold"]["numba_compiles"] > 0
    assert phases["warm"]["numba_compiles"] == 0


def test_a_disagreeing_variant_is_refused_timing():
    sys.path.insert(0, REPO)
    from bench.__main__ import run_case
    from bench.peers import Runner
    from bench.workloads import all_cases

    case = next(c for c in all_cases(quick=True) if c.task == "momentum")
    builders = {"numpy": lambda c, p: Runner(run=lambda: None, check=lambda: [p["p"]]),
                "off by one": lambda c, p: Runner(run=lambda: None, check=lambda: [p["p"] + 1])}
    settings = {"blocks": 1, "block_seconds": 0.001, "ceilings": {"GB/s": 1.0, "GFLOP/s": 1.0}}
    row = run_case(case, builders, settings, log=lambda msg: None)
    assert row["refused"] and "off by one" in row["check"]["mismatches"]
    assert "timings" not in row


# ----------------------------------------------------------- the peers a run skipped
def test_install_command_names_this_interpreter_and_the_bench_extras_pins():
    sys.path.insert(0, REPO)
    from bench.peers import install_command
    assert install_command(["pytorch", "jax"], python="/env/bin/python") == \
        "/env/bin/python -m pip install 'torch>=2.0' 'jax>=0.4' 'jaxlib>=0.4'"
    assert install_command(["jax"]).startswith(sys.executable)


def test_the_pins_are_the_bench_extras():
    sys.path.insert(0, REPO)
    from setuptools.config.setupcfg import read_configuration
    from bench.peers import PEER_REQUIREMENTS
    bench_extra = read_configuration(os.path.join(REPO, "setup.cfg"))["options"]["extras_require"]["bench"]
    assert {r for pins in PEER_REQUIREMENTS.values() for r in pins} <= set(bench_extra)


def test_a_quick_run_ends_by_naming_the_skipped_peers_and_the_command_that_installs_them(quick_run):
    import importlib.util
    sys.path.insert(0, REPO)
    from bench.peers import install_command
    missing = [name for name, module in (("pytorch", "torch"), ("jax", "jax"))
               if importlib.util.find_spec(module) is None]
    if not missing:
        pytest.skip("PyTorch and JAX are both installed: nothing is skipped")
    proc, _, _ = quick_run
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("peers skipped: ")
    for name in missing:
        assert f"{name} (" in last
    assert f"install them with: {install_command(missing)} and run python -m bench again" in last


def test_the_kernel_variants_script_checks_and_times_each_block_size(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               GRAPHNET_CACHE_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "bench.kernel_variants", "--rows", "9", "--cols", "5",
                           "--rounds", "1", "--cases", "column_sum"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "column_sum" in proc.stdout and "4 rows:" in proc.stdout


def test_the_gemm_strategy_variants_agree_with_numpy_before_they_are_timed():
    from bench.gemm_strategy import measure
    medians = measure((70, 33, 300), rounds=1)    # tiles with remainders in m, n and k
    assert set(medians) == {"blas+pass", "blas only", "tiled numba"} and all(t > 0 for t in medians.values())


def test_the_small_rows_gemm_bench_times_every_variant_once_they_agree():
    from bench.small_rows_gemm import measure
    medians = measure((9, 33, 47), rounds=1)
    assert len(medians) == 6 and all(t > 0 for t in medians.values())


def test_a_variant_timed_in_a_process_of_its_own_reports_its_median():
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "bench.isolated", "--child", "W1-B16", "graphnet fused",
                           "--quick", "--blocks", "2", "--block-seconds", "0.005"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    assert measured["median_s"] > 0 and measured["peers_in_process"] == []


def test_w8_conv_block_runs_each_framework_in_its_process_and_they_agree(quick_run):
    _, _, results = quick_run
    data = json.loads(results[0].read_text())
    summary = data["w8"]["W8b-block-fwd"]
    assert "median_s" in summary["graphnet"], summary
    for framework, result in summary.items():
        if isinstance(result, dict) and "median_s" in result:
            assert result["agrees_with_graphnet"], (framework, result)


def test_the_step_breakdown_times_each_blas_launch_of_a_compiled_step():
    """``bench.step_breakdown`` wraps ``threads.measured_blas`` with its own signature: a wrapper
    that fell behind it broke the full run (a GEMM step passes its background compiles)."""
    import numpy as np

    import graphnet as gn
    from bench.step_breakdown import timed_blas_launches
    samples = []
    a, w = np.ones((6, 5), "float32"), gn.shared(np.full((5, 3), 0.5, "float32"), name="w")
    with timed_blas_launches(samples):
        x = gn.placeholder("x", (None, 5))
        fn = gn.function([x], gn.dot(x, w))
        fn(a)
        fn.wait_compiled()
        got = fn(a)
    np.testing.assert_allclose(got, a @ w.get_value())
    assert (6, 3, 5) in {sample[:3] for sample in samples}


def test_the_w1_floor_times_the_products_the_compiled_step_makes():
    """``bench.w1_floor``'s floor adds up the step's products: the list it times must be the one
    graphnet's compiled step launches (shapes and transposes, read from the program)."""
    from bench.step_breakdown import gemm_operands
    from bench.w1_floor import _case, measure_openblas, products
    from bench.workloads import GraphnetRunner
    case, problem = _case("W1-B16", quick=True)
    runner = GraphnetRunner(case, problem)
    runner.run()
    compiled = sorted(gemm_operands(runner.fn))
    timed = sorted((left.shape[0], left.shape[1], right.shape[1], not left.flags.c_contiguous,
                    not right.flags.c_contiguous) for left, right in products(case).values())
    assert timed == compiled
    measured = measure_openblas(case, problem, blocks=1, block_seconds=0.002)
    assert len(measured["products_s"]) == len(compiled) and all(t > 0 for t in measured["products_s"].values())
    assert measured["params"] == sum(p.size for p in problem["params"].values()) and measured["copy_gbs"] > 0
