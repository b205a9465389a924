"""What a store's metadata says of where its voxels are: the voxel size (N5 ``resolution`` /
``pixelResolution``, precomputed ``resolution``, OME-NGFF scale) and the offset (precomputed
``voxel_offset``, OME-NGFF ``translation``, N5 ``offset``; client/origin.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from .location import StoreUrl
from .reader import Opened, open_volume, read_json

__all__ = ["read_store_voxel_size", "read_store_offset"]


def _opened(source: StoreUrl) -> Opened | None:
    """``source`` opened for its metadata; None when it cannot be (reported when its data is read)."""
    try:
        return open_volume(source)
    except InputError:
        return None


def read_store_voxel_size(source: StoreUrl) -> Any:
    """The voxel size the metadata states, or None: N5 ``resolution`` + ``units`` or
    ``pixelResolution`` (the dataset's, else its group's times ``downsamplingFactors``),
    precomputed ``resolution`` (nanometres), OME-NGFF scale and units."""
    from ..voxel_size import ome_zarr_voxel_size

    opened = _opened(source)
    if opened is None:
        return None
    meta = opened.attributes
    if opened.format == "precomputed":
        resolution = meta["info"]["scales"][meta["scale"]].get("resolution")
        return _size_by_axes(resolution, "XYZ", "nm")
    if meta.get("multiscales"):
        return ome_zarr_voxel_size(meta["multiscales"], meta.get("level", 0))
    if opened.format == "n5":
        return _n5_voxel_size(opened)
    return None


def read_store_offset(source: StoreUrl) -> Any:
    """The offset the metadata states (client/origin.py), or None: precomputed ``voxel_offset``
    of the scale, OME-NGFF ``translation`` of the level, N5 ``offset`` (physical, in the
    units of ``resolution``, as Paintera and N5-ImageJ write it; voxels without one)."""
    from ..origin import offset_by_axes, ome_zarr_offset

    opened = _opened(source)
    if opened is None:
        return None
    meta = opened.attributes
    if opened.format == "precomputed":
        return offset_by_axes(meta["info"]["scales"][meta["scale"]].get("voxel_offset", [0, 0, 0]), "XYZ")
    if meta.get("multiscales"):
        return ome_zarr_offset(meta["multiscales"], meta.get("level", 0))
    if opened.format == "n5" and meta.get("offset") is not None:
        axes = opened.axes or "XYZ"
        resolution = meta.get("resolution")
        if isinstance(meta.get("pixelResolution"), dict):
            resolution = meta["pixelResolution"].get("dimensions")
        return offset_by_axes(meta["offset"], axes, resolution or [1.0] * len(axes))
    return None


def _n5_voxel_size(opened: Opened) -> Any:
    meta, axes = opened.attributes, opened.axes or "XYZ"
    size = _n5_size(meta, axes)
    if size is not None:
        return size
    url = opened.url
    if "/" not in url.path.strip("/"):
        return None
    parent = StoreUrl(url.text.rsplit("/", 1)[0], url.scheme, url.host, url.path.rstrip("/").rsplit("/", 1)[0], "n5", url.s3_endpoint)
    try:
        group = read_json(parent, "attributes.json") or {}
    except InputError:
        return None
    factors = meta.get("downsamplingFactors") or [1] * len(axes)
    return _n5_size(group, axes, factors)


def _n5_size(attributes: dict[str, Any], axes: str, factors: Any = None) -> Any:
    factors = list(factors or [1] * len(axes))
    if isinstance(attributes.get("pixelResolution"), dict):
        found = attributes["pixelResolution"]
        values, unit = found.get("dimensions"), found.get("unit")
    else:
        values, unit = attributes.get("resolution"), attributes.get("units")
    if values is None:
        return None
    if isinstance(unit, list):
        unit = unit[0] if len(set(unit)) == 1 else None
    try:
        values = [float(v) * float(f) for v, f in zip(values, factors + [1] * (len(values) - len(factors)))]
    except (TypeError, ValueError):
        return None
    return _size_by_axes(values, axes, unit)


def _size_by_axes(values: Any, axes: str, unit: str | None) -> Any:
    """A [`VoxelSize`][skoots_client.VoxelSize] from per-axis ``values`` in the stored order named by ``axes``."""
    from skoots_export.contract.units import length_unit

    from ..voxel_size import VoxelSize

    try:
        by = {a: float(v) for a, v in zip(axes, values)}
        sizes = (by["Y"], by["X"], by["Z"])  # runtime X = rows (file y), Y = columns (file x), Z
    except (KeyError, TypeError, ValueError):
        return None
    if not all(s > 0 and np.isfinite(s) for s in sizes):
        return None
    try:
        name = length_unit(str(unit)) if unit else None
    except InputError:
        name = None
    if name is None and sizes == (1.0, 1.0, 1.0):
        return None
    return VoxelSize(sizes, name)
