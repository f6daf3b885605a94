"""Sanity checks: initial loss ~ log(10), overfitting 50 examples, a planted saturated init.

The experiment is graphnet/training/lectures/sanity_checks.py (installed with graphnet, so
`python -m graphnet lectures sanity_checks` finds it anywhere); this script runs the same:

    python examples/lectures/sanity_checks.py [--out DIR] [--tiny | --full] [--backend cpu] [--seed 0]
"""
import sys

from graphnet.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["lectures", "sanity_checks", *sys.argv[1:]]))
