"""The examples run as a newcomer runs them, and leave nothing behind.

Each runs in a subprocess from an empty working directory, with TMPDIR pointed
at an empty folder: whatever the example writes shows up in one of the two.
"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_example(name, *args, tmp_path):
    work, scratch = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch), PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), *args], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, sorted(os.listdir(work)), sorted(os.listdir(scratch))


def test_mlp_layers_writes_no_checkpoint_unless_asked(tmp_path):
    out, in_work, in_tmp = run_example("mlp_layers.py", "--epochs", "1", tmp_path=tmp_path)
    assert in_work == [] and in_tmp == []
    assert "--checkpoint best.npz would save its parameters" in out
    assert out.strip().splitlines()[-1].startswith("test accuracy: ")



def test_char_rnn_trains_a_scan_lstm_and_its_loss_falls(tmp_path):
    out, in_work, in_tmp = run_example("char_rnn.py", "--steps", "40", "--hidden", "16", "--plot", "",
                                       tmp_path=tmp_path)
    assert in_work == [] and in_tmp == []
    line = next(l for l in out.splitlines() if l.startswith("loss: first"))
    first, last = float(line.split()[2]), float(line.split()[-1])
    assert last < first - 0.2, line
    assert out.strip().splitlines()[-1].startswith("sample: T")
