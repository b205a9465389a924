"""Where the write stage writes the labels: the destination itself, in regions of its whole
write chunks, so each voxel is written once and nothing is copied afterwards.

* ``zarr``: a local ``.zarr`` / ``.ome.zarr`` (or the label image of ``--labels-into``), built
  in a hidden ``.NAME.partial-…`` folder beside the destination and renamed into place when
  finished (output.py); regions are the grid's write regions (whole Zarr chunks).
* ``store``: a precomputed or N5 volume at a path or URL, written in place without its
  metadata (stores/export.py); regions are whole shards (or chunks).
* ``memory``: a TIFF, written by the client from labels it gathers from the work store: the
  stage's tasks only measure (``--table``) and write nothing.

A `Destination` is picklable: the tasks get it by value and open it once per worker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..ngff import read_zyx, write_zyx
from ..stores.export import InPlace, open_chunks, read_region
from ..stores.writer import Region, regions, write_region
from .worker import cached

__all__ = ["Kind", "Destination", "write", "read", "window"]

Kind = Literal["zarr", "store", "memory"]


@dataclass(frozen=True)
class Destination:
    """The labels' destination as the write stage sees it: ``array_path`` (``zarr``: level 0,
    ``[Z, X, Y]`` or an image's ``[T, Z, Y, X]``-like axes), or ``store`` (``store``), and the
    step of its write regions (runtime X, Y, Z)."""

    kind: Kind
    shape_xyz: tuple[int, int, int]
    step_xyz: tuple[int, int, int]
    array_path: str = ""
    store: InPlace | None = None

    def regions(self) -> list[Region]:
        """The write regions, whole chunks or shards of the destination, tiling the volume."""
        return regions(self.shape_xyz, self.step_xyz)

    def region(self, name: str) -> Region:
        """The write region whose corner `region_name` names."""
        corner = tuple(int(v) for v in name.split("."))
        return next(r for r in self.regions() if tuple(lo for lo, _ in r) == corner)


def _opened(destination: Destination, mode: str) -> Any:
    if destination.kind == "zarr":
        import zarr

        return cached(("destination", destination.array_path, mode), lambda: zarr.open_array(destination.array_path, mode=mode))
    import json

    placed = destination.store
    assert placed is not None
    return cached(("destination", json.dumps(placed.spec, sort_keys=True), mode), lambda: open_chunks(placed))


def write(destination: Destination, region: Region, labels_xyz: np.ndarray) -> None:
    """Write runtime ``[X, Y, Z]`` labels at ``region`` (whole chunks or shards) of the destination."""
    if destination.kind == "memory":
        return
    if destination.kind == "zarr":
        (x0, x1), (y0, y1), (z0, z1) = region
        write_zyx(_opened(destination, "r+"), ((z0, z1), (x0, x1), (y0, y1)), labels_xyz.transpose(2, 0, 1))
    else:
        write_region(_opened(destination, "r+"), region, labels_xyz)


def read(destination: Destination, region: Region) -> np.ndarray:
    """The runtime ``[X, Y, Z]`` labels at ``region`` of the destination (never published yet)."""
    if destination.kind == "zarr":
        (x0, x1), (y0, y1), (z0, z1) = region
        return read_zyx(_opened(destination, "r"), (slice(z0, z1), slice(x0, x1), slice(y0, y1))).transpose(1, 2, 0)
    if destination.kind == "store":
        return read_region(_opened(destination, "r"), region)
    raise ValueError("a TIFF's labels are gathered by the client, not read back")


def window(destination: Destination) -> Callable[[tuple[slice, slice, slice]], np.ndarray]:
    """``[Z, X, Y]`` slices → labels there, from the written destination (the instance table's
    skeleton lengths)."""
    def at(box: tuple[slice, slice, slice]) -> np.ndarray:
        z, x, y = box
        region = tuple((s.start, s.stop) for s in (x, y, z))
        return read(destination, region).transpose(2, 0, 1)  # type: ignore[arg-type]
    return at
