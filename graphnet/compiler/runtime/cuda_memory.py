"""Device memory of the CUDA backend: shared variables' device copies kept between calls.

Buffers come from the CPU planner itself (``memory.plan_buffers`` with the
device allocator): a buffer returns to a pool after the last step that reads it and a later write
of the same shape and dtype takes it; what is fetched or updated lives to the
end of the call. Shared variables get one device copy each for the whole
process (:class:`DeviceValues`), so every CUDA function reading a parameter
finds it on the device.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np


# ------------------------------------------------ shared variables on the device
@dataclass(eq=False)
class _DeviceCopy:
    version: int
    host: np.ndarray      # the host array this copy equals (identity, not value)
    array: object         # the device array
    spare: object = None  # the previous device array, reused for the next copied update


class DeviceValues:
    """Device copies of shared variables, shared by every CUDA function of the process.

    A copy is current while the variable's ``version`` and host array are the
    ones it was made from; ``set_value`` (or a CPU function's update) changes
    both, and the next CUDA call uploads again. After a CUDA call updates a
    variable, :meth:`commit` records the copy as current for the version that
    ``Function.__call__`` is about to give it.
    """

    def __init__(self):
        self._copies = weakref.WeakKeyDictionary()

    def array(self, shared, runtime):
        value = shared.get_value(copy=False)
        copy = self._copies.get(shared)
        if copy is not None and copy.version == shared.version and copy.host is value:
            return copy.array
        reuse = copy.array if copy is not None else None
        array = runtime.upload(value, into=reuse)
        self._copies[shared] = _DeviceCopy(shared.version, value, array, copy.spare if copy else None)
        return array

    def spare(self, shared, size, dtype):
        copy = self._copies.get(shared)
        spare = copy.spare if copy is not None else None
        return spare if spare is not None and spare.size == size and spare.dtype == dtype else None

    def commit(self, shared, host, array):
        copy = self._copies.get(shared)
        previous = copy.array if copy is not None and copy.array is not array else None
        spare = previous if previous is not None else (copy.spare if copy is not None else None)
        self._copies[shared] = _DeviceCopy(shared.version + 1, host, array, spare)

    def forget(self, shared):
        self._copies.pop(shared, None)


DEVICE_VALUES = DeviceValues()
