"""The compiler: ``pipeline.py`` lists its stages, each a folder that reads only
the previous stage's output.

- ``rewrite/``: graph-to-graph passes (mode, CSE, folding, canonical and stable forms);
- ``schedule/``: fusion planning and memory planning -> a backend-neutral ``KernelPlan``;
- ``render/``: a ``KernelPlan``'s kernels as readable Numba (CPU) or numba.cuda source;
- ``runtime/``: the compiled call path, the kernel cache, threads, device memory.
"""
