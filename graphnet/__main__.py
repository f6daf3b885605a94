"""``python -m graphnet COMMAND``: the command-line entry points.

Each command lives in its own module, which provides ``add_parser(subparsers)``
registering its subcommand and setting ``func(args) -> exit status``. To add a
command, add its module to ``COMMANDS``.

A :class:`~graphnet.errors.GraphnetError` is a message for the user, not a
bug: the command prints it as one line on stderr and exits with status 2 (the
status argparse uses for a bad command line). ``--traceback`` shows the whole
trace instead, for a bug report.
"""
from __future__ import annotations

import argparse
import importlib
import re
import sys

#: The exit status of a command stopped by a GraphnetError (as argparse's for a bad command line).
USER_ERROR_STATUS = 2

#: Modules that each register one subcommand.
COMMANDS = ("graphnet.training.demo", "graphnet.training.lectures.cli", "graphnet.viz.cli",
            "graphnet.compat.theano_command")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m graphnet",
                                     description="graphnet: a define-then-run deep-learning compiler")
    parser.add_argument("--traceback", action="store_true",
                        help="on an error, show the whole Python traceback instead of one line")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        importlib.import_module(module).add_parser(subparsers)
    return parser


def one_line(message):
    """``message`` on one line: the line breaks (and the indentation after them) become single spaces."""
    return re.sub(r"\s*\n\s*", " ", str(message)).strip()


def main(argv=None):
    from graphnet.errors import GraphnetError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GraphnetError as exc:
        if args.traceback:
            raise
        print(f"python -m graphnet {args.command}: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return USER_ERROR_STATUS


if __name__ == "__main__":
    sys.exit(main())
