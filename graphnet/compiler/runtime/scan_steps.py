"""The CPU lowering of a loop (``scan``): its body compiled once, run at every step.

The body is a graph like any function's: it goes through the same passes and
kernel plan and becomes a :class:`CpuProgram` (fused loops, BLAS calls with
their epilogues), built when the outer function is. The loop over the steps
is :func:`graphnet.ops.scan.run_loop`, shared with the reference backend: a
host loop that feeds each step's slices to the compiled body and writes its
results into the states' preallocated buffers and the stacked outputs.

What this is not yet: one compiled Numba function looping over time with the
body's kernels inlined (the issue's target). The step's cost is the body
program's call overhead plus its kernels; see docs/architecture.md.
"""
from __future__ import annotations

from graphnet.compiler.runtime.steps import CPU_LOWERINGS, Step, kernel_record
from graphnet.compiler.schedule.plan import ScanKernel
from graphnet.ops.scan import run_loop


class ScanStep(Step):
    """A Scan node: the host loop over its compiled body."""

    kind = "loop"
    needs_buffers = False   # the loop makes its own buffers (states, stacked outputs)

    def __init__(self, planned, kernel, body):
        super().__init__(planned, kernel)
        self.node, self.body = planned.node, body

    def run(self, env, buffers, shapes):
        node, body = self.node, self.body
        results = run_loop(node.op, [env[v] for v in node.inputs], lambda feeds: body.run(feeds)[0])
        for var, value in zip(node.outputs, results):
            env[var] = value


@CPU_LOWERINGS.register(ScanKernel)
def lower_scan(planned, program, index):
    from graphnet.compiler import pipeline
    op = planned.node.op
    body = pipeline.build(op.body, {"check_numerics": program.check_numerics,
                                    "name": f"{program.name}/{op.scan_name}"})
    listing = "\n\n".join(f"# {k.name}: {', '.join(k.ops)}\n{k.source}" for k in body.kernels)
    kernel = kernel_record(planned, f"k{index}_scan", kind="loop",
                           source=f"# {op}: a host loop over n_steps calling the compiled body, whose "
                                  f"kernels are:\n{listing}")
    return ScanStep(planned, kernel, body)
