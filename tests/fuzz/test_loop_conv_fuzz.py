"""Fuzzed ``scan`` loops, ``conv2d`` and ``pool_2d`` against NumPy references of their own
(``loop_conv_recipes``): values, and gradients by central differences or against the host loop.

CI runs a bounded number of seeds (every fuzz test's ``fuzz-bounded`` count for the convolutions
and pools, a tenth of it for the loops: each compiles six loops); ``--fuzz-long`` or
``GRAPHNET_FUZZ_LONG=1`` runs the long count. A failure names its seed, which reproduces it:
``loop_conv_recipes.check_conv_or_pool(seed)`` / ``check_scan(seed)``.
"""
from conftest import fuzz_examples
from loop_conv_recipes import check_conv_or_pool, check_scan

#: seeds run per fuzz example count: the bounded run is CI's budget (about a minute)
CONV_SHARE, SCAN_SHARE = 0.5, 0.1


def seeds(request, share):
    return range(max(2, int(fuzz_examples(request.config) * share)))


def test_conv2d_and_pool_2d_match_numpy_and_central_differences(request):
    problems = [p for seed in seeds(request, CONV_SHARE) for p in check_conv_or_pool(seed)]
    assert not problems, "\n".join(problems)


def test_scan_loops_in_halves_whole_and_on_the_host_agree_with_numpy(request):
    problems = [p for seed in seeds(request, SCAN_SHARE) for p in check_scan(seed)]
    assert not problems, "\n".join(problems)
