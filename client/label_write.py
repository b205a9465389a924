"""Write label volumes (TIFF, Zarr, OME-Zarr; precomputed and N5 through client/stores) and
intermediates, atomically and with their voxel size; keep the labels somewhere when writing fails.

Labels arrive as the runtime's ``[X, Y, Z]`` and are written as ``[Z, X, Y]`` (``[Z, Y, X]`` in
Fiji's and napari's letters), one slab at a time.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .atomic import staged
from .destinations import check_destination
from .errors import OutputError
from .volume import TIFF_SUFFIXES, ZARR_SUFFIXES
from .voxel_size import UNKNOWN_VOXEL_SIZE, VoxelSize

__all__ = [
    "intermediates_path", "check_output_path", "write_labels", "keep_labels", "create_labels_array", "voxel_size_attrs",
    "write_intermediates",
]

if TYPE_CHECKING:
    from .stores import StoreUrl


def intermediates_path(out: Path) -> Path:
    """Where ``--save-intermediates`` writes: ``<out stem>_intermediates.zarr`` beside ``out``."""
    return out.with_name(out.name.split(".")[0] + "_intermediates.zarr")


def check_output_path(path: Path, overwrite: bool) -> None:
    """Fail before any work if the labels cannot be written at ``path``."""
    check_destination("--out", path, TIFF_SUFFIXES + ZARR_SUFFIXES, "unknown extension; use .tif, .tiff, .zarr or .ome.zarr")
    if path.exists() and not overwrite:
        raise OutputError(f"--out {path} exists; pass --overwrite to replace it")


@contextlib.contextmanager
def _staged_output(path: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a private path beside ``path`` to write to; on success move it into place.

    Nothing is left at ``path`` or beside it if writing fails.
    """
    check_output_path(path, overwrite)
    try:
        with staged(path) as target:
            yield target
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e


def write_labels(
    path: str | Path | StoreUrl, labels_xyz: np.ndarray, *, overwrite: bool = False, voxel_size: VoxelSize | None = None,
    properties: list[dict[str, Any]] | None = None, ngff_version: str = "0.4", offset: Sequence[float] | None = None,
    skeletons: tuple[dict[str, Any], dict[int, bytes]] | None = None,
    meshes: bool = False,
) -> Path | StoreUrl:
    """Write ``[X, Y, Z]`` labels as ``[Z, X, Y]`` at ``path``, atomically, with their voxel size.

    ``.tif``: zlib-compressed; ImageJ hyperstack metadata (axes ZYX, spacing, resolution and
    unit, so Fiji shows physical sizes) for uint8/uint16, an OME-TIFF (``PhysicalSize*``) for
    uint32 (ImageJ format has no 32-bit integers), a plain TIFF with the voxel size in tifffile's
    JSON description for uint64 (OME has no 64-bit integers). ``.ome.zarr``: an OME-NGFF label image with a
    multiscale pyramid, scale and units (napari opens it as labels), NGFF ``ngff_version``, with
    ``properties`` (one dict per label) in its ``image-label``; ``.zarr``: a plain array with the
    voxel size in its attributes. Planes are transposed one slab at a time. ``offset`` (voxels
    along the runtime's X, Y, Z; client/origin.py) is where the labels' first voxel sits: an
    NGFF translation on every level, precomputed ``voxel_offset``, N5 ``offset``. ``meshes``:
    each instance's legacy mesh too, into a precomputed output (client/stores/meshes.py).
    ``skeletons`` (info and encoded objects, client/skeletons.py) go into a precomputed output's ``skeletons/``.
    """
    from . import stores
    from .ngff import pyramid, spatial_axes, write_label_image

    path = stores.Location.of(path).target
    if isinstance(path, stores.StoreUrl):  # precomputed:// or n5:// (client/stores)
        from .stores.meshes import mesh_labels

        with_meshes = functools.partial(mesh_labels, labels_xyz=labels_xyz) if meshes else None
        return stores.write_store_labels(path, labels_xyz, overwrite=overwrite, voxel_size=voxel_size, properties=properties,
                                   offset=offset, skeletons=skeletons, before_publish=with_meshes)
    size = voxel_size or UNKNOWN_VOXEL_SIZE
    with _staged_output(path, overwrite) as target:
        if path.name.lower().endswith(TIFF_SUFFIXES):
            _write_tiff(target, labels_xyz, size)
        elif path.name.lower().endswith(".ome.zarr"):
            write_label_image(target, labels_xyz, pyramid(_zxy_shape(labels_xyz), size.zyx, offset_zyx=_zyx(offset)),
                              spatial_axes(size.unit),
                              version=ngff_version, properties=properties)
        else:
            _write_zarr(target, labels_xyz, size)
    return path


def _zyx(offset_xyz: Sequence[float] | None) -> tuple[float, float, float] | None:
    """An offset along the runtime's X, Y, Z in the file's order (slices, rows, columns)."""
    if offset_xyz is None:
        return None
    x, y, z = offset_xyz
    return (z, x, y)


def _zxy_shape(labels_xyz: np.ndarray) -> tuple[int, int, int]:
    x, y, z = labels_xyz.shape
    return (z, x, y)


def _tiff_size_metadata(size: VoxelSize, imagej: bool, ome: bool = True) -> dict[str, Any]:
    """tifffile arguments stating ``size``: ImageJ spacing/unit + resolution, OME sizes, or
    (``ome`` False: uint64, which neither ImageJ nor OME holds) resolution + tifffile's JSON
    description with `voxel_size_attrs`."""
    if size.unit is None:
        return {"metadata": {"axes": "ZYX"}}
    x, y, z = size.xyz  # file columns are the runtime's Y: TIFF X resolution is 1 / Y size
    if imagej:
        return {"resolution": (1 / y, 1 / x), "metadata": {"axes": "ZYX", "spacing": z, "unit": size.symbol}}
    if not ome:
        return {"resolution": (1 / y, 1 / x), "metadata": {"axes": "ZYX", **voxel_size_attrs(size)}}
    unit = "µm" if size.unit == "micrometer" else size.symbol.replace("A", "Å")
    return {"ome": True, "metadata": {"axes": "ZYX", "PhysicalSizeX": y, "PhysicalSizeY": x, "PhysicalSizeZ": z,
                                      **{f"PhysicalSize{a}Unit": unit for a in "XYZ"}}}


def _write_tiff(path: Path, labels_xyz: np.ndarray, size: VoxelSize) -> None:
    import tifffile

    imagej = labels_xyz.dtype in (np.uint8, np.uint16)
    tifffile.imwrite(
        path,
        (np.ascontiguousarray(labels_xyz[:, :, z]) for z in range(labels_xyz.shape[2])),
        shape=_zxy_shape(labels_xyz),
        dtype=labels_xyz.dtype,
        imagej=imagej,
        compression="zlib",
        photometric="minisblack",
        **_tiff_size_metadata(size, imagej, ome=labels_xyz.dtype.itemsize <= 4),
    )


def _write_zarr(path: Path, labels_xyz: np.ndarray, size: VoxelSize) -> None:
    shape = _zxy_shape(labels_xyz)
    chunks = (min(shape[0], 32), min(shape[1], 256), min(shape[2], 256))
    array = create_labels_array(path, shape, labels_xyz.dtype, chunks, voxel_size=size)
    for z in range(0, shape[0], chunks[0]):  # one slab of whole chunks at a time
        array[z : z + chunks[0]] = labels_xyz[:, :, z : z + chunks[0]].transpose(2, 0, 1)


def keep_labels(error: BaseException, labels_xyz: np.ndarray, voxel_size: VoxelSize, destinations: Sequence[Path],
                folders: Sequence[Path] = (), written: Sequence[Path | StoreUrl] = ()) -> OutputError:
    """The one-line error for a write that failed after the labels were computed, with the
    labels kept: saved as a plain Zarr array ``NAME.partial-XXXX.zarr`` in the first folder of
    the destinations' own, then ``folders``, then the temporary folder, that takes it.

    Labels cost a whole inference; a full disk, a destination that went away or a writer's bug
    must not throw them away. ``error`` is the failure (a ``ClientError`` keeps its text,
    anything else is named by its type)."""
    from .errors import ClientError

    reason = str(error) if isinstance(error, ClientError) else (
        f"writing the labels failed ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no message'})")
    if written:
        return OutputError(f"{reason} — the labels were written to {written[0]}")
    stem = destinations[0].name.split(".")[0] if destinations else "labels"
    tried = []
    for folder in [*(d.parent for d in destinations), *folders, Path(tempfile.gettempdir())]:
        try:
            saved = Path(tempfile.mkdtemp(prefix=f"{stem}.partial-", suffix=".zarr", dir=folder))
        except OSError as e:
            tried.append(f"{folder}: {e.strerror or e}")
            continue
        try:
            _write_zarr(saved, labels_xyz, voxel_size)
        except Exception as e:  # noqa: BLE001 - try the next place
            shutil.rmtree(saved, ignore_errors=True)
            tried.append(f"{folder}: {e.strerror if isinstance(e, OSError) and e.strerror else e}")
            continue
        return OutputError(f"{reason} — the labels are kept in {saved} (a Zarr array [Z, Y, X] with the voxel size; "
                           "napari, zarr and skoots-client measure open it); free the destination and copy them from there")
    return OutputError(f"{reason} — and the labels could not be kept anywhere ({'; '.join(tried)})")


def create_labels_array(
    path: Path, shape_zxy: tuple[int, int, int], dtype: Any, chunks: tuple[int, int, int], *,
    voxel_size: VoxelSize | None = None, ngff_version: str = "0.4", offset: Sequence[float] | None = None,
) -> Any:
    """An empty ``[Z, X, Y]`` label array at ``path`` for writing block by block, stating its
    voxel size as `write_labels` does: a plain Zarr array (``voxel_size_attrs``), or for
    ``.ome.zarr`` an NGFF ``ngff_version`` label image with `write_labels`'s levels, scales
    and translations (``offset`` as there), whose level ``0`` is returned. Every level is chunked by ``chunks``
    (capped by its shape), so the coarser levels can be filled region by region from level 0
    once it is written (blockwise/pyramid.py)."""
    from .ngff import create_label_image, pyramid, spatial_axes

    size = voxel_size or UNKNOWN_VOXEL_SIZE
    if not path.name.lower().endswith(".ome.zarr"):
        import zarr

        array = zarr.open_array(str(path), mode="w", shape=shape_zxy, chunks=chunks, dtype=dtype)
        array.attrs.update(voxel_size_attrs(size))
        return array
    return create_label_image(path, pyramid(shape_zxy, size.zyx, offset_zyx=_zyx(offset)), spatial_axes(size.unit), dtype,
                              version=ngff_version, chunks_zyx=chunks)[0]


def voxel_size_attrs(size: VoxelSize) -> dict[str, Any]:
    """Attributes of a plain Zarr output that state its voxel size (read back by read_voxel_size)."""
    return {"voxel_size_zyx": list(size.zyx), "unit": size.unit}


def write_intermediates(out: Path, arrays: dict[str, Any], *, overwrite: bool = False, voxel_size: VoxelSize | None = None) -> Path:
    """Write skeleton, vectors and probability as arrays of ``<out stem>_intermediates.zarr``."""
    import zarr

    path = intermediates_path(out)
    with _staged_output(path, overwrite) as target:
        group = zarr.open_group(str(target), mode="w")
        for key, array in arrays.items():
            host = array.get() if hasattr(array, "get") else np.asarray(array)
            zyx = host.transpose(*range(host.ndim - 3), host.ndim - 1, host.ndim - 3, host.ndim - 2)
            group.create_array(key, data=np.ascontiguousarray(zyx))
        group.attrs["axes"] = "([C,] Z, X, Y) as the input"
        group.attrs.update(voxel_size_attrs(voxel_size or UNKNOWN_VOXEL_SIZE))
    return path
