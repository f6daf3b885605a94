"""Weight initialization: activations through 10 tanh/ReLU layers of 500 units.

The experiment is graphnet/training/lectures/initialization.py (installed with graphnet, so
`python -m graphnet lectures initialization` finds it anywhere); this script runs the same:

    python examples/lectures/initialization.py [--out DIR] [--tiny | --full] [--backend cpu] [--seed 0]
"""
import sys

from graphnet.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["lectures", "initialization", *sys.argv[1:]]))
