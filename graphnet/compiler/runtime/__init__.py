"""Running compiled plans: the CPU and CUDA programs, the reference backend, the kernel cache, threads."""
