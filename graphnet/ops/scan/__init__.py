"""Loops in the graph: Theano's ``scan`` (``gn.scan``), its op and its backward loop.

Modules: ``frontend`` (``scan()``: taps, hoisting, random streams -> one
node), ``op`` (the :class:`Scan` op and the loop every backend runs),
``grad`` (backpropagation through time as a second, reversed Scan).
"""
from graphnet.ops.scan.frontend import foldl, foldr, scan, scan_map, scan_reduce  # noqa: F401
from graphnet.ops.scan.op import Scan, check_lengths, loop_outputs, run_loop, state_buffers, step_count  # noqa: F401
