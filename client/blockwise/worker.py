"""What a blockwise worker process keeps between tasks, and what each task reports back.

Endpoints, the open volume and Zarr handles cannot travel with a task: each worker opens them
once and keeps them here, with scratch buffers reused across blocks.
"""

from __future__ import annotations

import math
import os
import resource
import socket
import threading
import time
from typing import Any, Sequence

import numpy as np

_process: dict[Any, Any] = {}


def cached(key: Any, make: Any) -> Any:
    """``make()``, made once per worker process for ``key`` and kept."""
    if key not in _process:
        _process[key] = make()
    return _process[key]


def scratch(slot: str, shape: Sequence[int], dtype: Any) -> np.ndarray:
    """A zeroed array from a buffer this worker thread keeps for ``slot`` across tasks.

    A block's arrays are hundreds of MB: allocated afresh for every block, the first touch of
    each page costs more than the work on it (0.13 s against 0.04 s to zero a reused 279 MB).
    Stages use the same slots, so the buffers never hold more than one stage needs. The
    caller must not keep the array past its task."""
    dtype = np.dtype(dtype)
    size = math.prod(shape) * dtype.itemsize
    key = ("scratch", slot, threading.get_ident())
    buffer = _process.get(key)
    if buffer is None or buffer.nbytes < size:
        _process.pop(key, None)  # let the old one go before the larger one is made
        buffer = _process[key] = np.empty(size, np.uint8)
    array = buffer[:size].view(dtype).reshape(tuple(shape))
    array.fill(0)
    return array


def release_scratch() -> None:
    """Drop this worker's scratch buffers (at the end of a run, on a cluster that outlives it)."""
    for key in [k for k in _process if k[0] == "scratch"]:
        del _process[key]


def set_threads(n: int) -> None:
    """Keep numba (and torch) to the worker's share of the cores."""
    import numba

    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))


def peak_rss() -> int:
    """This process's peak resident set (bytes) since it started its program.

    Linux's ``getrusage`` keeps the high-water mark across ``exec``, so a worker forked from a
    large process (a client that had a volume in memory) would report that process's peak;
    ``VmHWM`` is the worker's own."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def report(started: float, **extra: Any) -> dict[str, Any]:
    """A task's answer: its seconds, this worker's peak memory and name, and ``extra``."""
    return {"seconds": time.perf_counter() - started, "rss": peak_rss(), "process": f"{socket.gethostname()}:{os.getpid()}", **extra}
