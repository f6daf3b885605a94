"""A second process loads compiled kernels from the disk cache instead of compiling."""
import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, numpy as np, graphnet as gn
    from graphnet.compiler.runtime.cache import count_numba_compiles, count_numba_cache_hits
    x = gn.placeholder("x", (None, 7))
    W = gn.shared(np.full((7, 3), 0.5, "float32"), name="W")
    b = gn.shared(np.zeros(3, "float32"), name="b")
    loss = gn.mean(gn.tanh(gn.dot(x, W) + b) ** 2)
    gW, gb = gn.grad(loss, [W, b])
    fn = gn.function([x], [loss, gW, gb], backend="cpu")
    out = fn(np.ones((4, 7), "float32"))
    kernels = {id(k.compiled): k.compiled for k in fn.kernels if k.compiled is not None}
    print(json.dumps({"loss": float(out[0]),
                      "compiles": sum(count_numba_compiles(d) for d in kernels.values()),
                      "hits": sum(count_numba_cache_hits(d) for d in kernels.values())}))
""")


def run_fresh_process(cache_dir):
    env = dict(os.environ, GRAPHNET_CACHE_DIR=str(cache_dir))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_compiles_nothing(tmp_path):
    cold = run_fresh_process(tmp_path)
    warm = run_fresh_process(tmp_path)
    assert cold["compiles"] > 0
    assert warm["compiles"] == 0 and warm["hits"] == cold["compiles"]
    assert warm["loss"] == cold["loss"]
