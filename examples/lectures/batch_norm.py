"""Batch norm: final loss over init scale x learning rate, with and without.

The experiment is graphnet/training/lectures/batch_norm.py (installed with graphnet, so
`python -m graphnet lectures batch_norm` finds it anywhere); this script runs the same:

    python examples/lectures/batch_norm.py [--out DIR] [--tiny | --full] [--backend cpu] [--seed 0]
"""
import sys

from graphnet.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["lectures", "batch_norm", *sys.argv[1:]]))
