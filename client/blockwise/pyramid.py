"""The pyramid stage of a blockwise ``.ome.zarr``: its levels above ``0`` filled region by region
from the written level ``0``, equal to the in-memory writer's (ngff.write_label_image).

A coarse voxel is the level-0 voxel under its centre, one `ngff.nearest_indices` per axis,
so a region of a level needs only the level-0 planes, rows and columns its own indices name:
one orthogonal selection, which decodes just the chunks holding them. Each level is sampled
from level 0 itself, never from the level before it (sampling twice picks other voxels). A
region is whole chunks of its level, so no two tasks write a chunk; it is marked done with the
CRC of what it wrote, as the other stages' blocks are (store.py), so ``--resume`` redoes only
the regions unmarked or changed since. A task holds one region, never the labels.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..atomic import crc
from ..ngff import Level, nearest_indices, read_zyx, write_zyx
from .job import Job
from .store import Stage
from .worker import report

__all__ = ["STAGE", "ZyxRegion", "level_regions", "sampled_indices", "level_region_name", "write_level_region", "verify"]

STAGE: Stage = "pyramid"
ZyxRegion = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]  # (start, stop) along the arrays' z, y, x


def level_regions(levels: Sequence[Level], chunks_zyx: Sequence[int], size_zyx: Sequence[int]) -> list[tuple[str, ZyxRegion]]:
    """``(level path, region)`` for every level above ``0``: along each axis, runs of ``size_zyx``
    voxels from 0 rounded down to whole chunks (at least one) of the level, whose chunks are
    ``chunks_zyx`` capped by its shape as `ngff.create_label_image` makes them."""
    regions: list[tuple[str, ZyxRegion]] = []
    for level in levels[1:]:
        per_axis: list[list[tuple[int, int]]] = []
        for n, c, s in zip(level.shape[-3:], chunks_zyx, size_zyx):
            chunk = min(n, c)
            step = max(1, s // chunk) * chunk
            per_axis.append([(lo, min(lo + step, n)) for lo in range(0, n, step)])
        regions.extend((level.path, (z, y, x)) for z, y, x in itertools.product(*per_axis))
    return regions


def sampled_indices(shape0: Sequence[int], shape: Sequence[int], region: ZyxRegion) -> tuple[np.ndarray, ...]:
    """The level-0 indices, per axis, that the voxels of ``region`` of a level of ``shape`` take."""
    return tuple(nearest_indices(n0, n, lo, hi) for n0, n, (lo, hi) in zip(shape0, shape, region))


def level_region_name(path: str, region: ZyxRegion) -> str:
    """The region's done-marker name: ``LEVEL.z0-z1.y0-y1.x0-x1``."""
    return ".".join([path, *(f"{lo}-{hi}" for lo, hi in region)])


def _parse(name: str) -> tuple[str, ZyxRegion]:
    path, *axes = name.split(".")
    return path, tuple(tuple(int(v) for v in a.split("-")) for a in axes)  # type: ignore[return-value]


def _slices(region: ZyxRegion) -> tuple[slice, ...]:
    return tuple(slice(lo, hi) for lo, hi in region)


def write_level_region(job: Job, group: str, path: str, region: ZyxRegion, first: str = "0") -> dict[str, Any]:
    """Fill ``region`` of level ``path`` of the label image at ``group`` from its level ``first``
    (read: only the sampled voxels), and mark it done. Leading axes of length 1 (an image's
    time axis) are kept."""
    import zarr

    started = time.perf_counter()
    full, level = zarr.open_array(f"{group}/{first}", mode="r"), zarr.open_array(f"{group}/{path}", mode="r+")
    data = read_zyx(full, sampled_indices(full.shape[-3:], level.shape[-3:], region))
    write_zyx(level, region, data)
    job.store.mark(STAGE, level_region_name(path, region), crc(data))
    return report(started)


def verify(group: str, name: str, checksum: int) -> bool:
    """Whether the region a pyramid marker names still holds the data its CRC names."""
    import zarr

    path, region = _parse(name)
    return crc(read_zyx(zarr.open_array(f"{group}/{path}", mode="r"), _slices(region))) == checksum
