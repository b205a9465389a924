"""A Dask worker preload for the local cluster: the worker process ignores SIGINT once it runs.

Ctrl-C in a terminal signals the whole foreground process group, workers included; each would
print its own traceback. The client process takes the interrupt alone, stops the run with one
line, and closes the cluster (which stops the workers)."""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["dask_setup"]


def dask_setup(worker: Any) -> None:
    """Called by Dask in the worker process as it starts."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
