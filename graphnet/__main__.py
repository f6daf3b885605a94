"""``python -m graphnet COMMAND``: the command-line entry points.

Each command lives in its own module, which provides ``add_parser(subparsers)``
registering its subcommand and setting ``func(args) -> exit status``. To add a
command, add its module to ``COMMANDS``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

#: Modules that each register one subcommand.
COMMANDS = ("graphnet.training.demo", "graphnet.training.lectures.cli", "graphnet.viz.cli",
            "graphnet.compat.theano_command")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m graphnet",
                                     description="graphnet: a define-then-run deep-learning compiler")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        importlib.import_module(module).add_parser(subparsers)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
