"""Unsupervised pre-training with few labels: deep sigmoid nets, SGD, 3 labels per class.

The experiment is graphnet/training/lectures/pretraining.py (installed with graphnet, so
`python -m graphnet lectures pretraining` finds it anywhere); this script runs the same:

    python examples/lectures/pretraining.py [--out DIR] [--tiny | --full] [--backend cpu] [--seed 0]
"""
import sys

from graphnet.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["lectures", "pretraining", *sys.argv[1:]]))
