"""The OpenBLAS builds of this process, as ``threads`` and ``blas_symbols`` find them."""
import os

import numpy as np  # noqa: F401  (loads NumPy's BLAS)
import pytest

from graphnet.compiler.runtime.openblas import loaded_openblas

threadpoolctl = pytest.importorskip("threadpoolctl")


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="Linux lists the mapped files")
def test_every_openblas_threadpoolctl_sees_is_found_once_and_opened():
    expected = {os.path.realpath(info["filepath"]) for info in threadpoolctl.threadpool_info()
                if info.get("internal_api") == "openblas"}
    found = loaded_openblas()
    paths = [path for path, _ in found]
    assert len(paths) == len(set(paths)) and paths == sorted(paths)
    assert expected <= {os.path.realpath(path) for path in paths}
    assert all(hasattr(library, "openblas_get_config") or hasattr(library, "scipy_openblas_get_config64_")
               or hasattr(library, "scipy_openblas_get_config") for _, library in found)
