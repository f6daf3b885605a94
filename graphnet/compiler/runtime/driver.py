"""The whole step as one compiled function: a small frame's second tier.

A frame's entry (``entry.py``) launches each kernel from Python, which costs
about a microsecond a launch: nothing beside a training step at batch 128, but
most of a step whose kernels run in microseconds (a 4x10 softmax step's eight
kernels). For such a frame, once it has been called ``DRIVER_AFTER`` times,
the program compiles a *driver*: one ``njit`` function calling the same
compiled kernels and products (``blas_symbols.gemm_into``, each on the OpenBLAS
build measured faster at its shape) in the same order on the same arrays, so a
call crosses from Python into compiled code once; the entry sets NumPy's BLAS
to one thread first (``threads.compiled_code_blas``). The driver's text depends on the
step's structure only (shapes and the frame's arrays are its arguments), so
one compile serves every frame of the program, and Numba's disk cache serves
the next process.

A frame gets one when every step is a compiled kernel or a BLAS product small
enough for one thread (no NumPy fallback step, no check inside
the step, no kernel large enough for the measured thread choice) and the
frame moves at most ``DRIVER_MAX_BYTES``; ``GRAPHNET_STEP_DRIVER=0`` turns
drivers off.
"""
from __future__ import annotations

import os
import sys

import numba
import numpy as np

from graphnet.compiler.runtime import blas_symbols, threads
from graphnet.compiler.runtime.entry import EntryWriter, NotExpressible, Ref, return_line, define, head_lines
from graphnet.compiler.runtime.program import DEBUG
from graphnet.errors import GraphnetError

#: calls of a frame before its driver is compiled (short scripts and tests never pay the compile)
DRIVER_AFTER = int(os.environ.get("GRAPHNET_STEP_DRIVER_AFTER", "100"))
#: frames moving more bytes than this keep the Python entry: their kernels outweigh launching them
DRIVER_MAX_BYTES = int(os.environ.get("GRAPHNET_STEP_DRIVER_MAX_BYTES", str(1 << 18)))
ENABLED = os.environ.get("GRAPHNET_STEP_DRIVER", "1") != "0"


def wants_driver(program, traffic):
    """Whether a frame moving ``traffic`` bytes (per step: read, written) is worth a driver."""
    return ENABLED and not program.step_by_step and sum(r + w for r, w in traffic) <= DRIVER_MAX_BYTES


class DriverSource:
    """Writes the driver's source: a line per call, a parameter per distinct array, and every
    integer (row counts, chunk counts, lengths) read from one int64 array ``n``: each
    argument costs Numba's dispatcher ~50 ns to unbox, and a small step has dozens.
    A compiled loop (``compiled_loop.py``) writes its body's calls with the same writer."""

    def __init__(self):
        self.params, self.values = ["n"], [None]    # parameter names, and the entry's text for each
        self.ints, self.imports, self.lines = [], {}, []
        self._by_text = {}

    def parameter(self, text):
        name = self._by_text.get(text)
        if name is None:
            name = self._by_text[text] = f"a{len(self.params)}"
            self.params.append(name)
            self.values.append(text)
        return name

    def integer(self, value):
        self.ints.append(int(value))
        return f"n[{len(self.ints) - 1}]"

    def function(self, fn):
        if fn is np.dot:
            return "np.dot"
        if not isinstance(fn, numba.core.dispatcher.Dispatcher):
            raise NotExpressible(fn)
        key = (fn.__module__, fn.__name__)
        if key not in self.imports:
            self.imports[key] = f"f{len(self.imports)}"
        return self.imports[key]

    def argument(self, writer, arg):
        if isinstance(arg, (int, np.integer)) and not isinstance(arg, bool):
            return self.integer(arg)
        if isinstance(arg, blas_symbols.Library):   # a product's BLAS, measured now
            return self.integer(arg.value)
        if not isinstance(arg, Ref):
            raise NotExpressible(arg)
        shape = arg.shape
        if arg.var not in writer.locals or shape is None or tuple(shape) == writer.frame.shapes.get(arg.var):
            # fixed for the frame (reshaped once, by the entry's writer) or already of that shape
            return self.parameter(writer.argument(Ref(arg.var, shape))) + (".T" if arg.transpose else "")
        # a value that changes per call, viewed in another shape: reshaped inside, with the
        # lengths as arguments (so that the driver's text, and its compile, fit every frame)
        dims = "".join(f"{self.integer(d)}, " for d in shape)
        return f"{self.parameter(writer.argument(Ref(arg.var)))}.reshape(({dims}))" + (".T" if arg.transpose else "")

    def multiplies(self):
        """Whether the calls run matrix products (``gemm_into``, or Numba's ``np.dot``)."""
        return ("graphnet.compiler.runtime.blas_symbols", "gemm_into") in self.imports or any(
            "np.dot(" in line for line in self.lines)

    def blas_note(self):
        """A comment naming the BLAS the products call: the cache keys a module by its text, so a
        process whose NumPy has other BLAS symbols gets its own compile."""
        return f"# matrix products: {blas_symbols.DESCRIPTION}\n" if self.multiplies() else ""

    def source(self):
        imports = "".join(f"from {module} import {name} as {alias}\n" for (module, name), alias in self.imports.items())
        return (f"import numba\nimport numpy as np\n{self.blas_note()}{imports}\n\n"
                f"@numba.njit(cache=True, nogil=True, error_model=\"numpy\")\n"
                f"def step({', '.join(self.params)}):\n" + "\n".join(self.lines) + "\n")


def driver_failed(program, frame, python_entry, feeds, exc):
    """After a driver raised: when Numba could not compile it (before it ran anything), the
    frame goes back to its Python entry, which runs this call; anything else is an error of
    the step (kernels raise none once their inputs passed the checks up front)."""
    if not isinstance(exc, numba.core.errors.NumbaError):
        raise GraphnetError(f"{program.name}: the compiled step failed: {type(exc).__name__}: {exc}") from exc
    if DEBUG:
        print(f"[graphnet] {program.name}: no compiled driver, Numba could not compile it: {exc}", file=sys.stderr)
    frame.entry = python_entry
    return python_entry(feeds)


def write_driver_entry(program, frame):
    """``frame``'s entry calling one compiled driver for all its steps, or None when a step
    is not a compiled kernel or a product that can run inside ``njit``."""
    writer, driver = EntryWriter(frame), DriverSource()
    writer.lines.extend(head_lines(program, frame, writer))
    try:
        for step in program.steps:
            compiled = step.compiled_step(program)
            if compiled is not step:   # a 0-d group, compiled now: its outputs get arrays of the frame
                for var in compiled.writes:
                    writer.locals[var] = writer.constant(np.empty(frame.shapes[var], var.dtype))
            calls = compiled.calls(frame)
            if calls is None:
                return None
            for call in calls:
                if call.results or call.compiled is None:
                    raise NotExpressible(call.fn)
                fn = driver.function(call.compiled)
                driver.lines.append(f"    {fn}({', '.join(driver.argument(writer, a) for a in call.args)})")
        returned = return_line(program, writer)
    except NotExpressible:
        return None
    module = program.load_driver(driver.source())
    kernels = " ".join(step.kernel.name for step in program.steps)
    driver.values[0] = writer.constant(np.array(driver.ints, np.int64))
    fallback = ", ".join(writer.constant(v) for v in (program, frame, frame.entry))
    if driver.multiplies():   # its products run on one BLAS thread (threads.compiled_code_blas)
        blas = writer.constant(threads.compiled_code_blas())
        writer.lines.append(f"    if {blas}.current != 1:\n        {blas}.use(1)")
    writer.lines.append(f"    try:\n        {writer.constant(module.step)}({', '.join(driver.values)})\n"
                        f"    except Exception as exc:  # the driver of: {kernels}\n"
                        f"        return driver_failed({fallback}, feeds, exc)")
    writer.names["driver_failed"] = driver_failed
    writer.lines.append(returned)
    run = define(writer, program.name)
    run.driver = module.step
    return run
