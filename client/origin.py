"""Where a volume sits: the offset of its first voxel in its own voxel grid, as the file states it,
so that the labels written from it overlay it.

An offset is counted in voxels along the runtime's ``[X, Y, Z]`` (the file's rows, columns,
slices; docs/AXES.md). The formats state it as precomputed ``voxel_offset`` (voxels), OME-NGFF
``translation`` (physical, the scale's units) and N5 ``offset`` (physical, in the units of
``resolution``: what Paintera and N5-ImageJ write); each writer states it back in its own
terms (label_write.py, ngff.py, stores/writer.py). Reading a file's: origin_read.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Offset", "ZERO", "offset_by_axes", "ome_zarr_offset", "describe_offset", "is_integral"]

Offset = tuple[float, float, float]  # voxels along the runtime's X (rows), Y (columns), Z
ZERO: Offset = (0.0, 0.0, 0.0)


def offset_by_axes(values: Any, axes: str, divide_by: Any = None) -> Offset | None:
    """An `Offset` from per-axis ``values`` in the stored order that ``axes`` names
    (letters ``X``, ``Y``, ``Z`` of the file), divided by ``divide_by`` (a physical offset over
    the voxel size) where given. None when they do not name the three spatial axes."""
    try:
        values = [float(v) for v in values]
        if divide_by is not None:
            values = [v / float(d) for v, d in zip(values, divide_by)]
        by = dict(zip(axes, values))
        offset = (by["Y"], by["X"], by["Z"])  # runtime X = rows (file y), Y = columns (file x), Z
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return offset if all(np.isfinite(offset)) else None


def ome_zarr_offset(multiscales: Any, level: int = 0) -> Offset | None:
    """The offset of dataset ``level`` in its own voxels: its ``translation`` (and the
    multiscale's own scale and translation, applied after it) over its scale."""
    try:
        first = multiscales[0]
        names = "".join(str(a["name"] if isinstance(a, dict) else a)[:1].upper() for a in first["axes"])
        n = len(names)
        scale, translation = np.ones(n), np.zeros(n)
        for transforms in (first["datasets"][level].get("coordinateTransformations", []), first.get("coordinateTransformations", [])):
            for t in transforms:
                if t.get("type") == "scale":
                    factor = np.asarray(t["scale"], dtype=float)
                    scale, translation = scale * factor, translation * factor
                elif t.get("type") == "translation":
                    translation = translation + np.asarray(t["translation"], dtype=float)
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return offset_by_axes(translation, names, scale)


def describe_offset(offset: Offset) -> str:
    """As Fiji and napari name the axes: ``z 100, y 2000, x 1000 voxels``."""
    x, y, z = offset
    return f"z {z:g}, y {x:g}, x {y:g} voxels"


def is_integral(offset: Offset) -> bool:
    return all(float(v).is_integer() for v in offset)
