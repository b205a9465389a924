"""How much memory a run needs and the machine has: what decides in memory or blockwise."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["available_memory", "in_memory_bytes"]


def available_memory() -> int:
    """The memory this machine has available now (bytes)."""
    import psutil

    return int(psutil.virtual_memory().available)


def in_memory_bytes(shape: Sequence[int]) -> int:
    """The in-memory mode's peak for a volume (benchmarks/RESULTS.md (d): ~14 B per voxel)."""
    return 14 * math.prod(shape)
