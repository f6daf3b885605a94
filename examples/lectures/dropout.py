"""Dropout: the train/validation accuracy gap over epochs, with and without.

The experiment is graphnet/training/lectures/dropout.py (installed with graphnet, so
`python -m graphnet lectures dropout` finds it anywhere); this script runs the same:

    python examples/lectures/dropout.py [--out DIR] [--tiny | --full] [--backend cpu] [--seed 0]
"""
import sys

from graphnet.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["lectures", "dropout", *sys.argv[1:]]))
