"""The offset a file states (client/origin.py): OME-Zarr by path here, the stores' formats
through client/stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .levels import image_of_level, multiscales_of
from .origin import ZERO, Offset, ome_zarr_offset

__all__ = ["read_offset"]


def read_offset(path: Any) -> Offset:
    """The offset ``path`` states (precomputed ``voxel_offset``, OME-Zarr ``translation``, N5
    ``offset``; a level named by path or URL takes its image's), else `ZERO`."""
    from . import stores

    store = stores.store_of(path)
    if store is not None:
        return stores.read_store_offset(store) or ZERO
    path = Path(path)
    if path.name.lower().endswith((".tif", ".tiff")):
        return ZERO
    try:
        import zarr

        node = zarr.open(str(path), mode="r")
        multiscales = multiscales_of(node.attrs.asdict())
        if multiscales:
            return ome_zarr_offset(multiscales) or ZERO
        level = image_of_level(path) if isinstance(node, zarr.Array) else None
    except Exception:  # noqa: BLE001 - unreadable files are reported when their data is read
        return ZERO
    if level is not None and level[2] is not None:
        return ome_zarr_offset(level[1], level[2]) or ZERO
    return ZERO
