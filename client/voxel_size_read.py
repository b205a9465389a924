"""The voxel size a file states (OME-Zarr, OME-TIFF, ImageJ TIFF, our plain Zarr attributes,
the stores' own metadata), and which one a run uses when ``--voxel-size`` is also given."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from skoots_export.contract.errors import OptionError
from skoots_export.contract.units import LENGTH_UNITS, length_unit

from .errors import InputError
from .levels import image_of_level, multiscales_of
from .volume import TIFF_SUFFIXES
from .volume_read import tifffile_log
from .voxel_size import UNKNOWN_VOXEL_SIZE, UnitOption, VoxelSize, ome_zarr_voxel_size

__all__ = ["read_voxel_size", "resolve_voxel_size"]

if TYPE_CHECKING:
    from .stores import StoreUrl


def _tiff_voxel_size(path: Path) -> VoxelSize | None:
    """OME-TIFF ``PhysicalSize{X,Y,Z}`` (+ unit, default µm), else ImageJ ``spacing`` and
    X/Y resolution tags (pixels per unit) with its ``unit``, else the ``voxel_size_zyx`` and
    ``unit`` of tifffile's JSON description (our uint64 labels)."""
    import xml.etree.ElementTree as ElementTree

    import tifffile

    with tifffile_log(), tifffile.TiffFile(path) as tif:
        if tif.is_ome and tif.ome_metadata:
            pixels = next((e for e in ElementTree.fromstring(tif.ome_metadata).iter() if e.tag.endswith("Pixels")), None)
            if pixels is None or "PhysicalSizeX" not in pixels.attrib:
                return None
            # runtime X = rows (OME Y), Y = columns (OME X), Z
            rows, columns, slices = (float(pixels.attrib.get(f"PhysicalSize{axis}", 1.0)) for axis in "YXZ")
            units = {pixels.attrib.get(f"PhysicalSize{axis}Unit", "µm") for axis in "YXZ"}
            try:
                unit = length_unit(units.pop()) if len(units) == 1 else None
            except OptionError:
                unit = None
            return VoxelSize((rows, columns, slices), unit) if unit else None
        if tif.is_imagej:
            meta = tif.imagej_metadata or {}
            tags = tif.pages[0].tags

            def size(tag: str) -> float:
                value = tags[tag].value if tag in tags else (1, 1)
                return float(value[1]) / float(value[0]) if value[0] else 1.0

            sizes = (size("YResolution"), size("XResolution"), float(meta.get("spacing", 1.0)))
            try:
                unit = length_unit(str(meta["unit"])) if "unit" in meta else None
            except OptionError:
                unit = None
            if unit is None:
                return None
            return VoxelSize(sizes, unit)
        meta = tif.shaped_metadata[0] if tif.is_shaped and tif.shaped_metadata else {}
        if "voxel_size_zyx" in meta:  # ours for uint64 labels (label_write): as a plain Zarr's attributes
            z, x, y = (float(v) for v in meta["voxel_size_zyx"])
            return VoxelSize((x, y, z), meta.get("unit"))
    return None




def read_voxel_size(path: str | Path | StoreUrl) -> VoxelSize | None:
    """The voxel size a file states (OME-Zarr scale and units, OME-TIFF physical sizes,
    ImageJ spacing/resolution, our plain Zarr attributes), or None when it states none."""
    from . import stores

    if isinstance(path, stores.StoreUrl):  # N5, precomputed, Zarr by URL: their own metadata (client/stores)
        return stores.read_store_voxel_size(path)
    store = stores.store_of(path)
    if store is not None:  # a local N5 or precomputed folder
        return stores.read_store_voxel_size(store)
    path = Path(path)
    try:
        if path.name.lower().endswith(TIFF_SUFFIXES):
            return _tiff_voxel_size(path)
        import zarr

        node = zarr.open(str(path), mode="r")
    except Exception:  # noqa: BLE001 - unreadable files are reported when their data is read
        return None
    attrs: dict[str, Any] = node.attrs.asdict()  # JSON as the file states it, checked where read
    multiscales = multiscales_of(attrs)
    if multiscales:
        return ome_zarr_voxel_size(multiscales)
    level = image_of_level(path) if isinstance(node, zarr.Array) else None
    if level is not None and level[2] is not None:
        return ome_zarr_voxel_size(level[1], level[2])
    if "voxel_size_zyx" in attrs:
        z, x, y = (float(v) for v in attrs["voxel_size_zyx"])
        return VoxelSize((x, y, z), attrs.get("unit"))
    return None


def resolve_voxel_size(
    option: VoxelSize | UnitOption | None, stated: VoxelSize | None, path: Path | StoreUrl, warn: Any = None
) -> VoxelSize:
    """The voxel size to use: ``--voxel-size`` wins over what ``path`` states; a disagreement
    is reported through ``warn`` (one line). Unknown when neither says. ``--unit`` alone
    (`UnitOption`) names the unit of a scale ``path`` states without one."""
    if isinstance(option, UnitOption):
        symbol = LENGTH_UNITS[option.unit][0]
        if stated is None:
            raise InputError(f"--unit needs --voxel-size: {path} states no scale for {symbol} to apply to; "
                             f"give both, e.g. --voxel-size 0.5,0.5,2 --unit {symbol}")
        if stated.unit is not None and stated.unit != option.unit:
            raise InputError(f"--unit {symbol}: {path} states its voxel size in {stated.unit} ({stated.describe()}); "
                             "drop --unit, or give --voxel-size with it")
        return VoxelSize(stated.xyz, option.unit)
    if option is not None and stated is not None and warn is not None:
        same = (option.unit is None) == (stated.unit is None) and np.allclose(option.in_metres(), stated.in_metres(), rtol=1e-6, atol=0)
        if not same:
            warn(f"--voxel-size {option.describe()} differs from {path}'s metadata {stated.describe()}; using --voxel-size")
    return option or stated or UNKNOWN_VOXEL_SIZE
