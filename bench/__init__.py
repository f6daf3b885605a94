"""The benchmark harness: graphnet fused vs unfused vs NumPy, PyTorch and JAX.

Run ``python -m bench`` (``--quick`` for the CI smoke test); see bench/README.md.
This package imports nothing at import time, so ``python -m bench`` can fix
the thread budget (:mod:`bench.env`) before NumPy loads.
"""
