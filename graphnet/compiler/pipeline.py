"""The compiler's stages on one screen. Each is a folder and reads only the previous stage's output.

    graph ─► rewrite/ ─► schedule/ ─► render/ + runtime/
             passes      KernelPlan   lowered steps, run per call

1. ``rewrite``: an ordered, named list of passes, each FunctionGraph ->
   FunctionGraph, any of which can be switched off by name
   (``gn.function(..., disable_passes=["fold"])``) for debugging and for the
   benchmark. (Resolving training/evaluation mode, ``rewrite/mode.py``, runs
   before them, in ``gn.function``, for every backend.)
2. ``schedule``: :func:`plan_kernels` decides every fusion (groups, GEMM
   epilogues, transpose flags), the in-place updates and a reason for every
   pair left apart: the :class:`KernelPlan`, the same for every backend
   (``fuse=False`` plans one kernel per op, the unfused baseline).
3. ``render`` + ``runtime``: a backend's program lowers each planned kernel
   through its registrations (generated Numba or numba.cuda source, BLAS
   calls, NumPy views) and runs them on buffers planned per input-shape signature.
"""
from __future__ import annotations

from graphnet.compiler.rewrite.canonicalize import canonicalize
from graphnet.compiler.rewrite.cse import merge_equal_nodes
from graphnet.compiler.rewrite.fold import fold_constants
from graphnet.compiler.rewrite.scan import prune_loop_inputs, prune_loops, share_loops
from graphnet.compiler.rewrite.slices import join_slice_gradients
from graphnet.compiler.rewrite.stabilize import stabilize
from graphnet.compiler.rewrite.stabilize_nll import stabilize_nll_idiom
from graphnet.compiler.schedule.plan import plan_kernels
from graphnet.errors import CompileError, GraphnetError

PASSES = [
    ("share_loops", share_loops, "a forward scan its gradient extended with saved values runs once"),
    ("prune_loop_inputs", prune_loop_inputs, "a scan drops the sequences and non-sequences its rewritten body no longer reads"),
    ("prune_loops", prune_loops, "drop a scan's unread stacked outputs; keep only the last value of a state read at [-1]"),
    ("merge", merge_equal_nodes, "merge equal nodes (common subexpressions)"),
    ("canonicalize", canonicalize, "drop x + 0, x * 1, -(-x), redundant broadcasts"),
    ("join_slice_gradients", join_slice_gradients, "the summed gradients of slices tiling an axis -> one concatenate"),
    ("fold", fold_constants, "fold constants and statically known sizes"),
    ("stabilize", stabilize, "log(softmax) -> log_softmax, log(1 + exp) -> softplus"),
    ("stabilize_nll", stabilize_nll_idiom, "-log(softmax(z))[arange(n), y] -> cross-entropy (Theano idiom)"),
    ("canonicalize_again", canonicalize, "simplify what folding and stabilizing exposed"),
    ("fold_again", fold_constants, "fold what canonicalization exposed"),
    ("merge_again", merge_equal_nodes, "merge what the rewrites made equal"),
]

PASS_NAMES = tuple(name for name, _, _ in PASSES)


def optimize(fgraph, disable_passes=()):
    """Stage 1: run every pass not in ``disable_passes``, in order."""
    unknown = set(disable_passes) - set(PASS_NAMES)
    if unknown:
        raise GraphnetError(f"unknown pass(es) {', '.join(sorted(unknown))}; passes are {', '.join(PASS_NAMES)}")
    for name, run_pass, _ in PASSES:
        if name in disable_passes:
            continue
        try:
            fgraph = run_pass(fgraph)
        except CompileError as exc:
            raise CompileError(f"pass {name!r} failed: {exc}") from exc
        except GraphnetError:
            raise
        except Exception as exc:  # noqa: BLE001 - a pass bug must name the pass
            raise CompileError(f"pass {name!r} failed: {type(exc).__name__}: {exc}") from exc
    return fgraph


def compile_graph(fgraph, options, make_program):
    """All stages: rewrite, schedule, then ``make_program(optimized graph, plan)`` lowers and runs it."""
    optimized = optimize(fgraph, options.get("disable_passes", ()))
    check_numerics = options.get("check_numerics", False)
    plan = plan_kernels(optimized, fuse=options.get("fuse", True), check_numerics=check_numerics)
    program = make_program(optimized, plan)
    # A root the passes reduced to an input (W - 0.1 * 0 -> W) is computed by no
    # kernel; check_numerics still checks it, under the name of what it replaced.
    program.simplified_roots = [(before, after) for before, after in zip(fgraph.roots, optimized.roots)
                                if before.owner is not None and after.owner is None]
    return program


def build(fgraph, options):
    """The CPU backend: ``gn.function(..., backend="cpu")``."""
    from graphnet.compiler.runtime.cpu import CpuProgram
    return compile_graph(fgraph, options, lambda graph, plan: CpuProgram(
        graph, plan, check_numerics=options.get("check_numerics", False), name=options.get("name", "function")))
