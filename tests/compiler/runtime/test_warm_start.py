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


LOOP_SCRIPT = textwrap.dedent("""
    import json, numpy as np, graphnet as gn
    from graphnet.compiler.runtime.cache import count_numba_compiles, count_numba_cache_hits
    rng = np.random.default_rng(0)
    seq, h0 = gn.placeholder("seq", (None, 8, 16)), gn.placeholder("h0", (8, 32))
    Wx = gn.shared((0.3 * rng.standard_normal((16, 32))).astype("float32"), name="Wx")
    Wh = gn.shared((0.3 * rng.standard_normal((32, 32))).astype("float32"), name="Wh")
    hs, _ = gn.scan(lambda x_t, h: gn.tanh(gn.dot(x_t, Wx) + gn.dot(h, Wh)), sequences=seq, outputs_info=h0)
    fn = gn.function([seq, h0], hs[-1])
    out = fn(rng.standard_normal((5, 8, 16)).astype("float32"), np.zeros((8, 32), "float32"))
    step = next(s for s in fn.program.steps if getattr(s, "_loops", None))
    loop = next(iter(step._loops.values())).program
    print(json.dumps({"out": float(out.sum()), "calls_blas": "gemm_into" in loop.source,
                      "compiles": count_numba_compiles(loop.function), "hits": count_numba_cache_hits(loop.function)}))
""")


def test_a_second_process_loads_a_compiled_loop_that_calls_numpys_blas_from_the_cache(tmp_path):
    """The loop's products call NumPy's OpenBLAS through a symbol registered by name
    (``blas_symbols``), which Numba's disk cache keeps (a ctypes pointer would not be cached)."""
    env = dict(os.environ, GRAPHNET_CACHE_DIR=str(tmp_path), GRAPHNET_TIERED="0")
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", LOOP_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    cold, warm = runs
    assert cold["calls_blas"] and cold["compiles"] == 1
    assert warm["compiles"] == 0 and warm["hits"] == 1
    assert warm["out"] == cold["out"]
