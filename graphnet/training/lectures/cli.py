"""``python -m graphnet lectures [NAME|all]``: list the lecture experiments or run them."""
from __future__ import annotations

__all__ = ["add_parser"]


def add_parser(subparsers):
    """Register the ``lectures`` subcommand on an argparse ``subparsers`` object."""
    from graphnet.training.lectures import EXPERIMENTS
    parser = subparsers.add_parser(
        "lectures", help="reproduce the lectures' experiments and figures",
        description="Without NAME: list the experiments. With NAME: run it on the digits or synthetic data, "
                    "write its figures and print whether this run reproduced the lecture's claim.")
    parser.add_argument("name", nargs="?", metavar="NAME", choices=(*EXPERIMENTS, "all"),
                        help=f"one of {', '.join(EXPERIMENTS)}, or all")
    parser.add_argument("--out", default="lectures", help="folder for the figures (default: lectures/)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--tiny", action="store_const", const="tiny", dest="size",
                      help="a few seconds, tiny sizes: a smoke test, not a result")
    size.add_argument("--full", action="store_const", const="full", dest="size",
                      help="the longer run where an experiment has one (pretraining: more seeds and settings)")
    parser.add_argument("--backend", default="cpu", choices=("cpu", "reference", "cuda"),
                        help="graphnet backend (default cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data splits, initialization and shuffling")
    parser.add_argument("--threads", type=int, default=1,
                        help="kernel and BLAS threads (default 1: these nets are small, and on a shared "
                             "2-core machine more threads only wait for each other)")
    parser.set_defaults(func=_main, size="default")
    return parser


def _main(args):
    from graphnet.training.lectures import EXPERIMENTS, experiment, run_experiment
    if args.name is None:
        print("lecture experiments (run one with: python -m graphnet lectures NAME):")
        for name in EXPERIMENTS:
            print(f"  {name:<15} {experiment(name).TITLE}")
        return 0
    if args.threads < 1:
        raise SystemExit("lectures: --threads must be at least 1")
    from graphnet.compiler.runtime.threads import set_num_threads
    set_num_threads(args.threads)
    names = EXPERIMENTS if args.name == "all" else (args.name,)
    outcomes = []
    for name in names:
        out_dir = args.out if len(names) == 1 else f"{args.out}/{name}"
        outcomes.append(run_experiment(name, out_dir, size=args.size, backend=args.backend, seed=args.seed))
        print()
    if len(outcomes) > 1:
        print(f"{sum(o.reproduced for o in outcomes)} of {len(outcomes)} claims reproduced in this run:")
        for o in outcomes:
            print(f"  {o.name:<15} {'reproduced' if o.reproduced else 'NOT reproduced'} ({o.seconds:.0f} s)")
    return 0
