"""The pyramid stage of a blockwise ``precomputed://`` output: its scales above level 0 filled
region by region, each from the scale below, equal bit for bit to the in-memory writer's
(both take `downsample.mode_downsample` of the scale below; stores/writer.py).

A scale's regions are whole shards (or chunks) of it (`export.Scale`), so no two tasks write
one file; a region is made from the scale below's voxels under it, read a layer of that
scale's chunks at a time through TensorStore with the metadata assumed (the ``info`` naming
every scale is written last, by `export.publish`). The scales run one after the other (a scale
reads the one below, whole). A region is marked done with the CRC of what it wrote, as the
other stages' blocks are, so ``--resume`` redoes only the regions unmarked or changed since.
A task holds one region and a layer of the scale below, never the labels.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..atomic import crc
from ..stores.downsample import mode_downsample
from ..stores.export import InPlace, open_chunks, read_region
from ..stores.writer import Region, write_region
from .job import Job
from .store import Stage
from .worker import cached, report

__all__ = ["STAGE", "scale_regions", "scale_region_name", "write_scale_region", "verify"]

STAGE: Stage = "pyramid"  # an .ome.zarr's pyramid stage's markers too: an output is one or the other


def scale_regions(placed: InPlace, scale: int) -> list[Region]:
    """The regions (runtime X, Y, Z; whole shards or chunks) of ``scale`` (1 and up)."""
    return placed.scales[scale - 1].regions()


def scale_region_name(scale: int, region: Region) -> str:
    """The region's done-marker name: ``sSCALE.x0-x1.y0-y1.z0-z1``."""
    return ".".join([f"s{scale}", *(f"{lo}-{hi}" for lo, hi in region)])


def _parse(name: str) -> tuple[int, Region]:
    scale, *axes = name.split(".")
    return int(scale[1:]), tuple(tuple(int(v) for v in a.split("-")) for a in axes)  # type: ignore[return-value]


def _opened(placed: InPlace, scale: int) -> Any:
    import json

    return cached(("pyramid", json.dumps(placed.level(scale), sort_keys=True)), lambda: open_chunks(placed, scale))


def write_scale_region(job: Job, placed: InPlace, scale: int, region: Region) -> dict[str, Any]:
    """Fill ``region`` of ``scale`` from the scale below, one layer of its chunks (along Z) at a
    time, write it, and mark it done."""
    started = time.perf_counter()
    below, level = _opened(placed, scale - 1), _opened(placed, scale)
    factor = placed.scales[scale - 1].factor_xyz
    shape_below = placed.shape_xyz if scale == 1 else placed.scales[scale - 2].shape_xyz
    layer = max(1, int(below.chunk_layout.read_chunk.shape[2]) // factor[2])  # output planes per layer of the chunks below
    (x0, x1), (y0, y1), (z0, z1) = region
    out = np.empty((x1 - x0, y1 - y0, z1 - z0), level.dtype.numpy_dtype)
    for z in range(z0, z1, layer):
        top = min(z + layer, z1)
        source = ((x0 * factor[0], min(x1 * factor[0], shape_below[0])), (y0 * factor[1], min(y1 * factor[1], shape_below[1])),
                  (z * factor[2], min(top * factor[2], shape_below[2])))
        out[:, :, z - z0:top - z0] = mode_downsample(read_region(below, source), factor)
    write_region(level, region, out)
    job.store.mark(STAGE, scale_region_name(scale, region), crc(out))
    return report(started)


def verify(placed: InPlace, name: str, checksum: int) -> bool:
    """Whether the region a marker names still holds the data its CRC names."""
    scale, region = _parse(name)
    return crc(read_region(_opened(placed, scale), region)) == checksum
