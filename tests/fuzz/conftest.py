"""Hypothesis profiles for the fuzz tests.

By default the fuzz tests run a bounded number of examples (CI). ``pytest
--fuzz-long`` or ``GRAPHNET_FUZZ_LONG=1`` runs 10,000 per fuzz test; the
number can be set with ``GRAPHNET_FUZZ_EXAMPLES``. Compiling is most of the
cost: the kernel cache (``GRAPHNET_CACHE_DIR``) makes a second run faster.
"""
import os
import sys

from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))

BOUNDED_EXAMPLES = 30
LONG_EXAMPLES = 10_000

for _name, _examples in (("fuzz-bounded", BOUNDED_EXAMPLES), ("fuzz-long", LONG_EXAMPLES)):
    settings.register_profile(
        _name, max_examples=_examples, deadline=None, print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])


def pytest_addoption(parser):
    parser.addoption("--fuzz-long", action="store_true", default=False,
                     help="run 10,000 examples per fuzz test (also: GRAPHNET_FUZZ_LONG=1)")


def fuzz_examples(config):
    """How many examples each fuzz test draws in this run."""
    if os.environ.get("GRAPHNET_FUZZ_EXAMPLES"):
        return int(os.environ["GRAPHNET_FUZZ_EXAMPLES"])
    if config.getoption("--fuzz-long") or os.environ.get("GRAPHNET_FUZZ_LONG", "") not in ("", "0"):
        return LONG_EXAMPLES
    return BOUNDED_EXAMPLES
