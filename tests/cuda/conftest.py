"""The CUDA backend's tests.

``device/`` holds the tests that run kernels. The simulator that runs them
without a GPU (``NUMBA_ENABLE_CUDASIM=1``) must be chosen before ``numba.cuda``
is first imported and then serves the whole process, so an ordinary test run
does not set it here: ``test_cuda_in_simulator.py`` runs each ``device/`` file
in a child pytest started with it. The other files here run in this process
and import nothing from ``numba.cuda`` except through a child process or the
backend's own error path.
"""
