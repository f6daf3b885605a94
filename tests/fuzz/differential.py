"""Run one recipe on every backend variant and say where they disagree.

The variants: ``reference`` (NumPy ``perform`` of every node, no passes, not
even the NLL rewrite the reference backend applies by default: the oracle), ``reference-optimized`` (the same, on the graph after the cpu
backend's passes), ``cpu`` fused and ``cpu`` with ``fuse=False`` (one kernel
per op). All compile the same graph; shared variables are reset to the
recipe's initial values before each, so updates are compared too.

Two comparisons, so a difference says where it comes from:

* fusion and code generation: both cpu variants against ``reference-optimized``,
  exactly up to rounding, NaN and Inf in the same places;
* the passes: ``reference-optimized`` against ``reference``, equal up to
  rounding except in one documented direction: arithmetic on a *structural*
  gradient zero (a dead train/eval branch, ``canonicalize.py``) is dropped, so
  where the reference computes ``0 * NaN = NaN`` the passes give 0. A NaN or
  Inf the passes introduce, or any finite value they change, is a mismatch.
"""
from __future__ import annotations

import numpy as np

import graphnet as gn

from graph_recipes import build, input_values

# The reference backend applies the NLL rewrite unless told not to (Theano's idiom is not
# finite without it); the oracle must not share the code it checks.
VARIANTS = {"reference": dict(backend="reference", disable_passes=("stabilize_nll",)), "reference-optimized": dict(backend="reference-optimized"),
            "cpu-fused": dict(backend="cpu", fuse=True), "cpu-unfused": dict(backend="cpu", fuse=False)}
#: the numerical guard: each backend must stop (NumericsError) on the same graphs
CHECKED_VARIANTS = {name: dict(options, check_numerics=True) for name, options in VARIANTS.items()
                    if name != "cpu-unfused"}
#: (variant, oracle, how): "exact" up to rounding, or "passes" (see the module docstring)
COMPARISONS = [("cpu-fused", "reference-optimized", "exact"), ("cpu-unfused", "reference-optimized", "exact"),
               ("reference-optimized", "reference", "passes")]
RTOL = {np.dtype("float32"): 1e-4, np.dtype("float64"): 1e-10}


def graph_rtol(variables):
    """The tolerance of the least precise float in the graph: a float64 output computed
    from float32 values (``minimum(tanh(x32), i64)``) carries float32 rounding."""
    from graphnet.graph import ancestors_toposort
    dtypes = {v.dtype for v in variables} | {o.dtype for n in ancestors_toposort(variables) for o in n.outputs}
    dtypes |= {i.dtype for n in ancestors_toposort(variables) for i in n.inputs}
    return max(RTOL.get(np.dtype(d), 0.0) for d in dtypes)


class OptimizedReference:
    """The reference backend on the graph the cpu passes make (with the cpu backend's
    check of roots the passes reduced to an input, ``pipeline.build``)."""

    def __init__(self, fgraph, check_numerics):
        from graphnet.compiler import pipeline
        from graphnet.compiler.runtime import reference
        self.fgraph = pipeline.optimize(fgraph)
        self.program = reference.build(self.fgraph, {"check_numerics": check_numerics})
        self.check_numerics = check_numerics
        self.simplified = [(before, after) for before, after in zip(fgraph.roots, self.fgraph.roots)
                           if before.owner is not None and after.owner is None]

    def run(self, feeds):
        outputs, updates = self.program.run(feeds)
        values = dict(zip(self.fgraph.roots, list(outputs) + list(updates)))
        for before, after in self.simplified if self.check_numerics else ():
            if np.asarray(values[after]).dtype.kind == "f" and not np.isfinite(values[after]).all():
                raise gn.NumericsError(f"check_numerics: NaN or Inf in the output of {before.owner.op}")
        return outputs, updates


def compile_variant(built, recipe, backend, **options):
    if backend != "reference-optimized":
        return gn.function(built.placeholders, built.outputs, updates=built.updates or None,
                           training=recipe.training, backend=backend, **options)
    fn = gn.function(built.placeholders, built.outputs, updates=built.updates or None,
                     training=recipe.training, backend="reference", **options)
    fn.program = OptimizedReference(fn.fgraph, options.get("check_numerics", False))
    fn.fgraph = fn.program.fgraph
    return fn


def run_variants(recipe, variants=VARIANTS):
    """{variant: (outputs, new shared values) or the exception it raised}."""
    built = build(recipe)
    values = input_values(recipe, built)
    shared = [v for v in built.values if isinstance(v, gn.SharedVariable)]
    results = {}
    for name, options in variants.items():
        for var in shared:
            var.set_value(values[var])
        try:
            fn = compile_variant(built, recipe, **options)
            outputs = fn(*[values[p] for p in built.placeholders])
            results[name] = (outputs, [w.get_value() for w, _ in built.updates])
        except Exception as exc:  # noqa: BLE001 - a crash of one variant is a finding like a mismatch
            results[name] = exc
    results["rtol"] = graph_rtol(built.outputs + [e for _, e in built.updates])
    return results


def disagreement(results, comparisons=COMPARISONS):
    """None when every comparison holds (see the module docstring), else a readable description."""
    rtol = results.get("rtol")
    problems = []
    for name, oracle, how in comparisons:
        if name not in results or oracle not in results:
            continue
        got, expected = results[name], results[oracle]
        if isinstance(expected, Exception) or isinstance(got, Exception):
            same = (isinstance(expected, Exception) and isinstance(got, Exception)
                    and type(expected) is type(got))
            # The passes may drop a dead branch's NaN that stopped the reference.
            dropped = how == "passes" and isinstance(expected, gn.NumericsError) and not isinstance(got, Exception)
            if not (same or dropped):
                problems.append(f"{name}: {_describe(got)}; {oracle}: {_describe(expected)}")
            continue
        (ref_out, ref_state), (out, state) = expected, got
        labelled = [(f"output {i}", r, g) for i, (r, g) in enumerate(zip(ref_out, out))]
        labelled += [(f"update {i}", r, g) for i, (r, g) in enumerate(zip(ref_state, state))]
        for label, ref, value in labelled:
            reason = array_difference(np.asarray(ref), np.asarray(value), rtol,
                                      finite_may_replace_nan=how == "passes")
            if reason:
                problems.append(f"{name} vs {oracle}, {label}: {reason}")
    return "\n".join(problems) or None


def array_difference(ref, got, rtol=None, finite_may_replace_nan=False):
    """Why ``got`` does not match ``ref`` (shape, dtype, NaN/Inf pattern, values), or None.

    ``rtol`` defaults to the one of ``ref``'s dtype; errors are relative to each
    value and to the output's largest magnitude (``1 + max |ref|``).
    ``finite_may_replace_nan``: where ``ref`` is NaN or Inf, ``got`` may be finite,
    and where ``ref`` is NaN, ``got`` may be Inf: the passes dropped arithmetic on a
    structural zero (``0 * NaN``), and what the other terms give remains (an update
    ``inf - 0.1 * 0`` is ``inf`` where the plain reference has ``inf - 0.1 * NaN``).
    Never the other way round: a NaN or Inf the passes introduce is a mismatch.
    """
    if ref.shape != got.shape:
        return f"shape {got.shape}, expected {ref.shape}"
    if ref.dtype != got.dtype:
        return f"dtype {got.dtype}, expected {ref.dtype}"
    if ref.dtype.kind != "f":
        if not np.array_equal(ref, got):
            return f"values differ at {np.argwhere(ref != got)[:3].tolist()}: {got[ref != got][:3]} vs {ref[ref != got][:3]}"
        return None
    compared = np.ones(ref.shape, bool)
    if finite_may_replace_nan:
        compared = ~((~np.isfinite(ref) & np.isfinite(got)) | (np.isnan(ref) & ~np.isnan(got)))
    for what, test in (("NaN", np.isnan), ("+Inf", np.isposinf), ("-Inf", np.isneginf)):
        differs = (test(ref) != test(got)) & compared
        if differs.any():
            return f"{what} pattern differs at {np.argwhere(differs)[:3].tolist()}: {got[differs][:3]} vs {ref[differs][:3]}"
    finite = np.isfinite(ref) & np.isfinite(got)
    rtol = rtol or RTOL[ref.dtype]
    scale = 1.0 + (np.abs(ref[finite]).max() if finite.any() else 0.0)
    err = np.abs(got[finite].astype(np.float64) - ref[finite])
    allowed = rtol * np.abs(ref[finite]) + rtol * scale
    if (err > allowed).any():
        worst = int(np.argmax(err - allowed))
        return (f"values differ: {got[finite][worst]!r} vs {ref[finite][worst]!r} "
                f"(|diff| {err[worst]:.3g} > {allowed[worst]:.3g}; {int((err > allowed).sum())} of {err.size})")
    return None


def _describe(result):
    if isinstance(result, Exception):
        return f"raised {type(result).__name__}: {str(result).splitlines()[0] if str(result) else ''}"
    return "ran"
