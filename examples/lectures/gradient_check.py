"""Gradient checking: check_grad on a small net, and on a planted wrong gradient.

The experiment is graphnet/training/lectures/gradient_check.py (installed with graphnet, so
`python -m graphnet lectures gradient_check` finds it anywhere); this script runs the same:

    python examples/lectures/gradient_check.py [--out DIR] [--tiny | --full] [--backend cpu] [--seed 0]
"""
import sys

from graphnet.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["lectures", "gradient_check", *sys.argv[1:]]))
