"""Old module paths, kept importable after the regrouping of the package.

``import graphnet.train`` or ``from graphnet.compiler import cache`` written
against the flat layout still work: each old name resolves, on first import,
to the module that now holds that code (the same module object, not a copy).
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys

#: old dotted path -> where that module lives now
MOVED = {
    "graphnet.fgraph": "graphnet.graph.fgraph",
    "graphnet.autodiff": "graphnet.graph.autodiff",
    "graphnet.gradcheck": "graphnet.graph.gradcheck",
    "graphnet.init": "graphnet.nn.init",
    "graphnet.optim": "graphnet.nn.optim",
    "graphnet.schedules": "graphnet.nn.schedules",
    "graphnet.checkpoint": "graphnet.nn.checkpoint",
    "graphnet.data": "graphnet.nn.data",
    "graphnet.train": "graphnet.training.fit",
    "graphnet.diagnostics": "graphnet.training.diagnostics",
    "graphnet.search": "graphnet.training.search",
    "graphnet.pretrain": "graphnet.training.pretrain",
    "graphnet.report": "graphnet.training.plots",
    "graphnet.demo": "graphnet.training.demo",
    "graphnet.cli_dot": "graphnet.viz.cli",
    "graphnet.rng": "graphnet.ops.rng",
    "graphnet.compiler.passes": "graphnet.compiler.rewrite",
    "graphnet.compiler.passes.fuse": "graphnet.compiler.schedule.fuse",
    "graphnet.compiler.mode": "graphnet.compiler.rewrite.mode",
    "graphnet.compiler.memory": "graphnet.compiler.schedule.memory",
    "graphnet.compiler.program": "graphnet.compiler.runtime.cpu",
    "graphnet.compiler.steps": "graphnet.compiler.runtime.steps",
    "graphnet.compiler.cache": "graphnet.compiler.runtime.cache",
    "graphnet.compiler.threads": "graphnet.compiler.runtime.threads",
}
for _name in ("cse", "fold", "canonicalize", "stabilize", "stabilize_nll"):
    MOVED[f"graphnet.compiler.passes.{_name}"] = f"graphnet.compiler.rewrite.{_name}"


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old name and hands back the module that now holds its code."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        module = importlib.import_module(MOVED[spec.name])
        spec.loader_state = module.__spec__
        return module

    def exec_module(self, module):
        # The import system stamped the old name's spec on the module; it keeps its own.
        module.__spec__ = module.__spec__.loader_state


def install():
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.insert(0, _Alias())   # before the path finder, which would load a second copy
