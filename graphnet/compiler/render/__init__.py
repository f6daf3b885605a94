"""Rendering: the kernels of a plan as readable source, for Numba on the CPU and for numba.cuda."""
