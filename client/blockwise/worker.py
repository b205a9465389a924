"""What a blockwise worker process keeps between tasks, and what each task reports back.

Endpoints, the open volume and Zarr handles cannot travel with a task: each worker opens them
once and keeps them in its `WorkerState`, with scratch buffers reused across blocks, and
releases them all when a run on a cluster that outlives it ends.
"""

from __future__ import annotations

import math
import os
import resource
import socket
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["WorkerState", "STATE", "cached", "endpoints", "release", "scratch", "set_threads", "peak_rss", "report", "Refused", "run_task"]


@dataclass
class WorkerState:
    """What one worker process keeps between the tasks of a run.

    ``opened``: things made once and reused, keyed by what made them (the block grid, the work
    directory, the input volume, a skip rule, the output array, stored answers); ``endpoints``:
    what answers crops, one list per model source (server channels, or the model loaded in
    this process); ``scratch``: reusable buffers per slot and thread (`scratch`).
    """

    opened: dict[Hashable, Any] = field(default_factory=dict)
    endpoints: dict[Hashable, list[Any]] = field(default_factory=dict)
    scratch: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)

    def release(self) -> None:
        """Close the endpoints and drop everything: a worker of a joined cluster outlives the run."""
        endpoints = [endpoint for group in self.endpoints.values() for endpoint in group]
        self.endpoints.clear()
        self.opened.clear()
        self.scratch.clear()
        for endpoint in endpoints:
            close = getattr(endpoint, "close", None)
            if close:
                close()


STATE = WorkerState()  # this process's: each Dask worker process has its own


def cached(key: Hashable, make: Callable[[], Any]) -> Any:
    """``make()``, made once per worker process for ``key`` and kept until `release`."""
    if key not in STATE.opened:
        STATE.opened[key] = make()
    return STATE.opened[key]


def endpoints(source: Hashable, connect: Callable[[], list[Any]]) -> list[Any]:
    """The endpoints for ``source``, connected (or loaded) once per worker process."""
    if source not in STATE.endpoints:
        STATE.endpoints[source] = connect()
    return STATE.endpoints[source]


def release() -> None:
    """Release this worker's state (run on every worker when a joined cluster's run ends)."""
    STATE.release()


def scratch(slot: str, shape: Sequence[int], dtype: Any) -> np.ndarray:
    """A zeroed array from a buffer this worker thread keeps for ``slot`` across tasks.

    A block's arrays are hundreds of MB: allocated afresh for every block, the first touch of
    each page costs more than the work on it (0.13 s against 0.04 s to zero a reused 279 MB).
    Stages use the same slots, so the buffers never hold more than one stage needs. The
    caller must not keep the array past its task."""
    dtype = np.dtype(dtype)
    size = math.prod(shape) * dtype.itemsize
    key = (slot, threading.get_ident())
    buffer = STATE.scratch.get(key)
    if buffer is None or buffer.nbytes < size:
        STATE.scratch.pop(key, None)  # let the old one go before the larger one is made
        buffer = STATE.scratch[key] = np.empty(size, np.uint8)
    array = buffer[:size].view(dtype).reshape(tuple(shape))
    array.fill(0)
    return array


def set_threads(n: int) -> None:
    """Keep numba (and torch) to the worker's share of the cores."""
    import numba

    # numba.config sets its NUMBA_* names at import time (globals() from the environment): mypy cannot see them
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]


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


@dataclass(frozen=True)
class Refused:
    """What a task returns instead of raising a ``ClientError``: Dask retries a task that raises
    (``retries=``), and a user's mistake or data that cannot be read fails the same on every try."""

    error: BaseException


def run_task(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` as a Dask task whose user errors come back to the client as themselves,
    returned as `Refused` so that Dask does not retry them (other exceptions are raised: retried).

    Dask pickles a task's exception with its causes (tblib); a ``ClientError`` raised from a
    tritonclient or gRPC error drags along a cause that cannot be unpickled, and then reaches
    the client as a bare ``Exception`` with a traceback instead of the one-line error it is.
    So the error is made again here without its causes (bugs keep theirs)."""
    from ..errors import ClientError

    try:
        return fn(*args)
    except ClientError as e:
        try:
            error = type(e)(*e.args)
        except Exception:  # noqa: BLE001 - a subclass with other constructor arguments
            error = ClientError(str(e))
    return Refused(error)  # outside the except block: no __context__ either
