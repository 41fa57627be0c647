"""One OpenMP runtime per process: Numba's thread pool starts before PyTorch loads its own.

Numba's ``omp`` threading layer links the system's ``libgomp``; PyTorch wheels ship
their own copy under the same soname. Whichever library loads first is the one the
process uses, *unless* PyTorch comes first: Numba then asks for the system file by
its full name and a second OpenMP runtime comes in, and the two crash the process
(segmentation faults and heap corruption, typically in a PyTorch backward pass after
a parallel Numba kernel has run).

:func:`start_numba_threads` runs when :mod:`vj` is imported. If PyTorch is not loaded
yet it starts Numba's pool, and a later ``import torch`` reuses that ``libgomp``. If
PyTorch is already loaded (and ``NUMBA_THREADING_LAYER`` is not set) it selects
Numba's own ``workqueue`` layer, which uses no OpenMP; that layer serves one calling
thread at a time, so code that calls kernels from several threads at once asks
:func:`concurrent_calls_safe` first.
"""

from __future__ import annotations

import os
import sys

import numba

__all__ = ["concurrent_calls_safe", "start_numba_threads"]


def start_numba_threads() -> str:
    """Start Numba's thread pool (once) and return the threading layer in use."""
    try:
        return numba.threading_layer()
    except ValueError:  # not started yet
        pass
    if "torch" in sys.modules and not os.environ.get("NUMBA_THREADING_LAYER"):
        numba.config.THREADING_LAYER = "workqueue"
    numba.get_num_threads()  # starts the pool
    return numba.threading_layer()


def concurrent_calls_safe() -> bool:
    """Whether parallel kernels may be called from several threads at the same time."""
    return start_numba_threads() != "workqueue"
