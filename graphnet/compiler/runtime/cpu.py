"""A compiled CPU program: the kernel plan lowered to steps with generated Numba code.

Building lowers each planned kernel through ``CPU_LOWERINGS`` (loading its
kernel module from the on-disk cache, compiling only what is new). Running
checks the fed shapes and labels before any kernel runs (so a bad call fails
without touching state), then runs the steps on preallocated buffers (one
memory plan per input-shape signature) and hands back outputs and update values.
"""
from __future__ import annotations

import sys
import time

import numpy as np
from numba.core.errors import NumbaError

from graphnet.compiler.render import cpu as render
from graphnet.compiler.runtime import cache
from graphnet.compiler.runtime.program import DEBUG, CompiledProgram, describe_nodes
from graphnet.compiler.runtime.provenance import node_error
from graphnet.compiler.runtime.steps import CPU_LOWERINGS, non_finite
from graphnet.compiler.schedule.memory import plan_buffers
from graphnet.errors import CompileError, GraphnetError, NumericsError
from graphnet.graph.ir import Constant, SharedVariable


class CpuProgram(CompiledProgram):
    backend = "cpu"

    def __init__(self, fgraph, plan, check_numerics=False, name="function"):
        super().__init__(fgraph, plan, CPU_LOWERINGS, check_numerics=check_numerics, name=name)
        inputs = fgraph.variables()
        # Writable copies: a read-only array is another type to Numba, and another compile.
        self._constants = {v: np.array(v.data) for v in inputs if isinstance(v, Constant)}
        self._shared = [v for v in inputs if isinstance(v, SharedVariable)]
        # Outputs a kernel writes get a fresh array on every call, handed to the
        # caller as is: no copy out of a pooled buffer.
        written = {v for step in self.steps if step.needs_buffers for v in step.writes}
        self._fresh_outputs = [v for v in dict.fromkeys(fgraph.outputs) if v in written and v not in self.in_place]

    @staticmethod
    def load(body):
        return cache.load_module(render.module_source(body), name_hint="k")

    def make_frame(self, shapes, shape_values):
        return shapes, plan_buffers(self.steps, shapes, self.fgraph.roots, self.in_place), shape_values

    # ----------------------------------------------------------------- running
    def run(self, feeds):
        env = dict(feeds)
        env.update(self._constants)
        for var in self._shared:
            env[var] = var.get_value(copy=False)
        shapes, buffers, shape_values = self.frame(env)
        env.update(shape_values)
        self.check_fed_values(env, shapes)
        buffers = dict(buffers)
        for var in self._fresh_outputs:
            buffers[var] = np.empty(shapes[var], var.dtype)
        for expr, shared in self.in_place.items():
            buffers[expr] = shared.get_value(copy=False)   # the graph need not read it
        timing = DEBUG >= 2
        for step in self.steps:
            start = time.perf_counter() if timing else 0.0
            try:
                step.run(env, buffers, shapes)
            except GraphnetError:
                raise
            except NumbaError as exc:  # compiled lazily, on the first call: still a compile error
                raise CompileError(f"Numba could not compile kernel {step.kernel.name} "
                                   f"({describe_nodes(step.nodes)}): {exc}") from exc
            except Exception as exc:  # noqa: BLE001 - re-raised with the node's provenance
                node_error(step.nodes[-1], exc)
            if timing:
                print(f"[graphnet] {step.kernel.name:28s} {1e6 * (time.perf_counter() - start):9.1f} us "
                      f"({', '.join(step.kernel.ops)})", file=sys.stderr)
            if self.check_numerics:
                step.check_numerics(env)
        if self.check_numerics:
            self._check_simplified_roots(env)
        outputs, handed = [], set()
        for var in self.fgraph.outputs:
            fresh = var in self._fresh_outputs and id(var) not in handed
            outputs.append(env[var] if fresh else np.array(env[var], copy=True))
            handed.add(id(var))
        # Pooled buffers are reused next call: an update that was not written in
        # place is handed over as a copy the shared variable can own.
        updates = [env[expr] if expr in self.in_place else np.array(env[expr], copy=True)
                   for _, expr in self.fgraph.updates]
        return outputs, updates

    def _check_simplified_roots(self, env):
        for before, after in self.simplified_roots:
            what = non_finite(env[after])
            if what:
                raise NumericsError(f"check_numerics: {what} in the output of {before.owner.op} "
                                    f"({before.describe()}), built at {before.owner.source} "
                                    f"(simplified to the value of {after.describe()})")
