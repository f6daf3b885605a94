"""Dead ReLUs: units that never activate over the training set, moderate vs too-high rate.

The experiment is graphnet/training/lectures/dead_relus.py (installed with graphnet, so
`python -m graphnet lectures dead_relus` finds it anywhere); this script runs the same:

    python examples/lectures/dead_relus.py [--out DIR] [--tiny | --full] [--backend cpu] [--seed 0]
"""
import sys

from graphnet.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["lectures", "dead_relus", *sys.argv[1:]]))
