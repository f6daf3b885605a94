"""Random vs grid search on learning rate x weight decay, then coarse-to-fine.

The experiment is graphnet/training/lectures/search.py (installed with graphnet, so
`python -m graphnet lectures search` finds it anywhere); this script runs the same:

    python examples/lectures/search.py [--out DIR] [--tiny | --full] [--backend cpu] [--seed 0]
"""
import sys

from graphnet.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["lectures", "search", *sys.argv[1:]]))
