"""Babysitting: loss curves for four learning rates, update/weight ratios per layer.

The experiment is graphnet/training/lectures/babysitting.py (installed with graphnet, so
`python -m graphnet lectures babysitting` finds it anywhere); this script runs the same:

    python examples/lectures/babysitting.py [--out DIR] [--tiny | --full] [--backend cpu] [--seed 0]
"""
import sys

from graphnet.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["lectures", "babysitting", *sys.argv[1:]]))
