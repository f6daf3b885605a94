"""Run one recipe on every backend variant and say where they disagree.

The variants: ``reference`` (NumPy ``perform`` of every node, no passes: the
oracle), ``cpu`` fused and ``cpu`` with ``fuse=False`` (one kernel per op).
All three compile the same graph; shared variables are reset to the recipe's
initial values before each, so SGD updates are compared too.
"""
from __future__ import annotations

import numpy as np

import graphnet as gn

from graph_recipes import build, input_values

VARIANTS = {"reference": dict(backend="reference"), "cpu-fused": dict(backend="cpu", fuse=True),
            "cpu-unfused": dict(backend="cpu", fuse=False)}
#: the numerical guard: each backend must stop (NumericsError) on exactly the same graphs
CHECKED_VARIANTS = {"reference": dict(backend="reference", check_numerics=True),
                    "cpu-fused": dict(backend="cpu", fuse=True, check_numerics=True)}
RTOL = {np.dtype("float32"): 1e-4, np.dtype("float64"): 1e-10}


def graph_rtol(variables):
    """The tolerance of the least precise float in the graph: a float64 output computed
    from float32 values (``minimum(tanh(x32), i64)``) carries float32 rounding."""
    from graphnet.graph import ancestors_toposort
    dtypes = {v.dtype for v in variables} | {o.dtype for n in ancestors_toposort(variables) for o in n.outputs}
    dtypes |= {i.dtype for n in ancestors_toposort(variables) for i in n.inputs}
    return max(RTOL.get(np.dtype(d), 0.0) for d in dtypes)


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
            fn = gn.function(built.placeholders, built.outputs, updates=built.updates or None,
                             training=recipe.training, **options)
            outputs = fn(*[values[p] for p in built.placeholders])
            results[name] = (outputs, [w.get_value() for w, _ in built.updates])
        except Exception as exc:  # noqa: BLE001 - a crash of one variant is a finding like a mismatch
            results[name] = exc
    results["rtol"] = graph_rtol(built.outputs + [e for _, e in built.updates])
    return results


def disagreement(results, oracle="reference"):
    """None when every variant agrees with ``oracle``, else a readable description."""
    expected = results[oracle]
    rtol = results.get("rtol")
    problems = []
    for name, got in results.items():
        if name in (oracle, "rtol"):
            continue
        if isinstance(expected, Exception) or isinstance(got, Exception):
            if not (isinstance(expected, Exception) and isinstance(got, Exception)
                    and type(expected) is type(got)):
                problems.append(f"{name}: {_describe(got)}; {oracle}: {_describe(expected)}")
            continue
        (ref_out, ref_state), (out, state) = expected, got
        labelled = [(f"output {i}", r, g) for i, (r, g) in enumerate(zip(ref_out, out))]
        labelled += [(f"update {i}", r, g) for i, (r, g) in enumerate(zip(ref_state, state))]
        for label, ref, value in labelled:
            reason = array_difference(np.asarray(ref), np.asarray(value), rtol)
            if reason:
                problems.append(f"{name} {label}: {reason}")
    return "\n".join(problems) or None


def array_difference(ref, got, rtol=None):
    """Why ``got`` does not match ``ref`` (shape, dtype, NaN/Inf pattern, values), or None.

    ``rtol`` defaults to the one of ``ref``'s dtype; errors are relative to each
    value and to the output's largest magnitude (``1 + max |ref|``).
    """
    if ref.shape != got.shape:
        return f"shape {got.shape}, expected {ref.shape}"
    if ref.dtype != got.dtype:
        return f"dtype {got.dtype}, expected {ref.dtype}"
    if ref.dtype.kind != "f":
        if not np.array_equal(ref, got):
            return f"values differ at {np.argwhere(ref != got)[:3].tolist()}: {got[ref != got][:3]} vs {ref[ref != got][:3]}"
        return None
    for what, test in (("NaN", np.isnan), ("+Inf", np.isposinf), ("-Inf", np.isneginf)):
        if not np.array_equal(test(ref), test(got)):
            where = np.argwhere(test(ref) != test(got))[:3].tolist()
            return f"{what} pattern differs at {where}: {got[test(ref) != test(got)][:3]} vs {ref[test(ref) != test(got)][:3]}"
    finite = np.isfinite(ref)
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
