"""How much memory a run needs and the machine has: what decides in memory or blockwise."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["WORKER_BUDGET", "HEADROOM", "available_memory", "in_memory_bytes", "inference_budget", "gpu_memory_free"]


def available_memory() -> int:
    """The memory this machine has available now (bytes)."""
    import psutil

    return int(psutil.virtual_memory().available)


def in_memory_bytes(shape: Sequence[int]) -> int:
    """The in-memory mode's peak for a volume (benchmarks/RESULTS.md (d): ~14 B per voxel)."""
    return 14 * math.prod(shape)


WORKER_BUDGET = 1536 << 20  # what a blockwise worker's block may take (client/blockwise/blocks.py sizes blocks to it)
HEADROOM = 0.75  # of the memory left for inference, what a tile may take: other processes; the estimate is already 24-95 % high
# (benchmarks/RESULTS.md, the activation estimate), so a tile it admits peaks at ~40-60 % of what was available


def inference_budget(reserved: int, *, share: int = 1, memory_available: int | None = None) -> int:
    """Bytes one in-process inference may take: the memory available (``memory_available``,
    else the machine's) split over ``share`` processes, less what each ``reserved`` for the rest
    of the run (the in-memory post-processing of the volume, or a blockwise worker's block),
    times `HEADROOM`."""
    have = memory_available if memory_available is not None else available_memory()
    return max(0, int(HEADROOM * (have // max(1, share) - reserved)))


def gpu_memory_free() -> int | None:
    """Free memory of the CUDA GPU torch would run on (bytes), or None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.mem_get_info()[0])
