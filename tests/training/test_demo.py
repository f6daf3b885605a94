"""``python -m graphnet demo``: a short in-process run reaches a sane accuracy and writes the report."""
import json
import re

import pytest

from graphnet.__main__ import build_parser, main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    """Run ``demo --quick`` once through the command line entry point; return (stdout lines, report dir)."""
    import contextlib
    import io
    report = tmp_path_factory.mktemp("report")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["demo", "--quick", "--epochs", "4", "--backend", "reference", "--quiet",
                       "--report-dir", str(report)])
    assert status == 0
    return out.getvalue().splitlines(), report


def test_quick_demo_ends_with_a_sane_test_accuracy(quick_demo):
    lines, _ = quick_demo
    match = re.fullmatch(r"test accuracy: (0\.\d{4}|1\.0000)", lines[-1])
    assert match, lines[-1]
    assert float(match.group(1)) > 0.9


def test_quick_demo_prints_one_progress_line_per_epoch(quick_demo):
    lines, _ = quick_demo
    epochs = [line for line in lines if line.startswith("epoch")]
    assert len(epochs) == 4
    assert all("val acc" in line for line in epochs)


def test_quick_demo_writes_the_plots_and_a_summary(quick_demo):
    _, report = quick_demo
    for name in ("training_curves.png", "activations.png"):
        path = report / name
        assert path.read_bytes()[:8] == PNG_SIGNATURE, name
        assert path.stat().st_size > 10_000, name      # a drawn figure, not an empty canvas
    summary = json.loads((report / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.9
    assert len(summary["history"]["epoch"]) == 4


def test_the_command_line_has_a_demo_subcommand_with_its_options():
    args = build_parser().parse_args(["demo", "--epochs", "7", "--report-dir", "out", "--backend", "reference"])
    assert (args.command, args.epochs, args.report_dir, args.backend, args.quick) == ("demo", 7, "out", "reference",
                                                                                      False)
    with pytest.raises(SystemExit):
        build_parser().parse_args([])


def test_the_convnet_demo_trains_one_epoch_and_reports_it(tmp_path):
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["demo", "--model", "cnn", "--epochs", "1", "--backend", "reference", "--quiet",
                       "--report-dir", str(tmp_path)])
    lines = out.getvalue().splitlines()
    assert status == 0 and any(line.startswith("model: ConvNet") for line in lines)
    assert float(lines[-1].split(": ")[1]) > 0.85     # one epoch of the ConvNet already beats 85%
    assert (tmp_path / "activations.png").read_bytes()[:8] == PNG_SIGNATURE
    assert json.loads((tmp_path / "summary.json").read_text())["model"] == "convnet"


def test_the_demo_refuses_an_unknown_model():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--model", "resnet"])


# --------------------------------------------------------------------------- a plain install

PEERS_OF_THE_DEMO_EXTRA = ("matplotlib", "sklearn", "tqdm")


@pytest.fixture(scope="module")
def demo_on_a_plain_install(tmp_path_factory):
    """``demo`` run as after a plain ``pip install graphnet``: importing a demo-extra package fails."""
    import builtins
    import contextlib
    import io
    real_import = builtins.__import__

    def without_the_demo_extra(name, *args, **kwargs):
        if name.split(".")[0] in PEERS_OF_THE_DEMO_EXTRA:
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    report = tmp_path_factory.mktemp("plain")
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.setattr(builtins, "__import__", without_the_demo_extra)
        status = main(["demo", "--epochs", "1", "--backend", "reference", "--report-dir", str(report)])
    return status, out.getvalue().splitlines(), report


def test_demo_runs_to_its_test_accuracy_without_the_demo_extra(demo_on_a_plain_install):
    status, lines, _ = demo_on_a_plain_install
    assert status == 0
    assert re.fullmatch(r"test accuracy: 0\.\d{4}", lines[-1]), lines[-1]


def test_demo_without_matplotlib_says_in_one_line_how_to_get_the_plots(demo_on_a_plain_install):
    _, lines, report = demo_on_a_plain_install
    skipped = [line for line in lines if line.startswith("plots skipped")]
    assert skipped == ["plots skipped: matplotlib is not installed (pip install matplotlib, or "
                       "pip install 'graphnet[demo]', draws them)"]
    assert sorted(path.name for path in report.iterdir()) == ["summary.json"]


def test_demo_with_matplotlib_prints_no_skip_line(quick_demo):
    lines, _ = quick_demo
    assert not any(line.startswith("plots skipped") for line in lines)
