"""What `view` shows: an output's labels and a raw volume as Neuroglancer layer sources.

A store Neuroglancer reads itself (precomputed, N5, Zarr / OME-Zarr through ``zarr://``) becomes
a source URL: remote ones (HTTP, S3, GCS) as they are, local folders through a static file
server on 127.0.0.1 (view.py starts it; here they are only named). A TIFF, which Neuroglancer
cannot read, is read whole into memory and served by the Neuroglancer server itself
(``LocalVolume``), up to `TIFF_LIMIT` bytes. Nothing here imports ``neuroglancer``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .stores import Location, StoreUrl, open_volume, store_of
from .stores.reader import read_json
from .view_link import neuroglancer_source
from .volume import TIFF_SUFFIXES
from .volume_read import open_labels, read_volume
from .voxel_size import VoxelSize
from .voxel_size_read import read_voxel_size

__all__ = ["TIFF_LIMIT", "MOST_SELECTED", "Source", "label_sources", "raw_source", "nanometres_zyx"]

TIFF_LIMIT = 2 << 30  # bytes: a TIFF is held in memory to be served; past this, convert it to OME-Zarr or N5
MOST_SELECTED = 5000  # segment ids selected at start (meshes and skeletons show only selected objects)
_NG_FORMATS = {"precomputed": "precomputed", "n5": "n5", "zarr2": "zarr", "zarr3": "zarr3", "zarr": "zarr"}


@dataclass(frozen=True)
class Source:
    """One layer: its name, ``segmentation`` or ``image``, and either a Neuroglancer source URL
    (``{served}`` standing for the static server's URL of the ``serve`` folder) or an in-memory
    ``array`` ``[Z, Y, X]`` with its voxel size in nm. ``shape_zyx`` (zeros for a raw store,
    which is not read) and ``nm_zyx`` place the view; ``segments`` are the ids to select (from the output's segment properties)."""

    name: str
    kind: str
    shape_zyx: tuple[int, int, int]
    nm_zyx: tuple[float, float, float]
    url: str | None = None
    serve: Path | None = None
    array: np.ndarray | None = None
    segments: tuple[int, ...] = ()
    corner_xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)  # a precomputed output's voxel_offset (Neuroglancer's x, y, z)


def nanometres_zyx(size: VoxelSize | None) -> tuple[float, float, float]:
    """A voxel size in nm, slices, rows, columns; a size without a unit is taken as nm as it is."""
    if size is None:
        return (1.0, 1.0, 1.0)
    x, y, z = size.in_metres() if size.unit else size.xyz
    scale = 1e9 if size.unit else 1.0
    return (float(z) * scale, float(x) * scale, float(y) * scale)


def _target(text: str, option: str) -> Path | StoreUrl:
    target = Location.parse(text, option=option).target
    if isinstance(target, Path) and not target.exists():
        raise InputError(f"{option} {text}: no such file or folder; give the path (or URL) of {_what(option)}")
    if isinstance(target, StoreUrl) and target.local is not None and not Path(target.path).exists():
        raise InputError(f"{option} {text}: no such file or folder; give the path (or URL) of {_what(option)}")
    if isinstance(target, Path) and target.is_dir():  # a local N5 or precomputed folder: a store
        return store_of(target) or target
    return target


def _what(option: str) -> str:
    return "a volume" if option == "--raw" else "segment's output (--out)"


def _store_url(url: StoreUrl, format: str) -> tuple[str, Path | None]:
    """A store as Neuroglancer names it, and the local folder to serve (None when remote)."""
    scheme = _NG_FORMATS[format]
    if url.local is not None:
        return f"{scheme}://{{served}}", url.local
    return neuroglancer_source(url, scheme), None


def _zarr_attributes(path: Path | StoreUrl) -> dict[str, Any]:
    """A Zarr group's attributes (v2 ``.zattrs``, v3 ``zarr.json``'s, OME 0.5 ``ome`` unwrapped)."""
    if isinstance(path, Path):
        found = [json.loads(f.read_text()) for f in (path / "zarr.json", path / ".zattrs") if f.is_file()]
        group = found[0] if found else {}
    else:
        group = read_json(path, "zarr.json") or read_json(path, ".zattrs") or {}
    attributes = group.get("attributes", group)
    return attributes.get("ome", attributes)


def _zarr_format(path: Path) -> str:
    return "zarr3" if (path / "zarr.json").is_file() else "zarr2"


def _segments_of(properties: list[dict[str, Any]] | None) -> tuple[int, ...]:
    ids = [int(p["label-value"]) for p in properties or [] if "label-value" in p]
    return tuple(ids) if len(ids) <= MOST_SELECTED else ()


def _precomputed_segments(url: StoreUrl, info: dict[str, Any]) -> tuple[int, ...]:
    key = info.get("segment_properties")
    if not key:
        return ()
    properties = read_json(url.child(key), "info") or {}
    ids = properties.get("inline", {}).get("ids", [])
    return tuple(int(i) for i in ids) if len(ids) <= MOST_SELECTED else ()


def _placed(volume: Any, target: Path | StoreUrl, like: Source | None = None) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """A volume's shape and voxel size (nm), ``[Z, Y, X]``; the size of ``like`` (the labels) when
    the file states none (segment wrote the labels at the --voxel-size it was given)."""
    x, y, z = volume.shape
    size = read_voxel_size(target)
    return (z, x, y), like.nm_zyx if size is None and like is not None else nanometres_zyx(size)


def _tiff(target: Path, name: str, kind: str, option: str, like: Source | None = None) -> Source:
    volume = open_labels(target) if kind == "segmentation" else read_volume(target, check_finite=False)
    if int(np.prod(volume.shape)) * volume.dtype.itemsize > TIFF_LIMIT:
        raise InputError(f"{option} {target}: a TIFF is shown from memory, up to {TIFF_LIMIT / 2**30:g} GiB; convert it to "
                         "OME-Zarr or N5 (or write segment's output as precomputed://) to view it")
    shape, nm = _placed(volume, target, like)
    array = np.ascontiguousarray(np.asarray(volume.data).transpose(2, 0, 1))  # runtime [X, Y, Z] -> [Z, Y, X]
    segments = tuple(int(v) for v in np.unique(array) if v) if kind == "segmentation" else ()
    return Source(name, kind, shape, nm, array=array, segments=segments if len(segments) <= MOST_SELECTED else ())


def _no_labels(option: str, text: str, why: str) -> InputError:
    return InputError(f"{option} {text} holds no labels ({why}); give segment's output (a label volume), "
                      "and the image as --raw")


def label_sources(text: str, option: str = "OUT") -> tuple[list[Source], Source | None]:
    """The label layers of segment's output ``text`` (a path or URL), and the image beside
    them when ``text`` is an OME-Zarr image with ``labels/`` (None otherwise).

    Raises
    ------
    InputError
        Nothing there, or no labels there (an intensity image, a precomputed ``image``).
    """
    target = _target(text, option)
    if isinstance(target, Path) and target.suffix.lower() in TIFF_SUFFIXES:
        return [_tiff(target, "labels", "segmentation", option)], None
    if isinstance(target, Path) or target.format in (None, "zarr", "zarr2", "zarr3"):
        attributes = _zarr_attributes(target)
        names = _zarr_attributes(_child(target, "labels")).get("labels") if "multiscales" in attributes else None
        if names and "image-label" not in attributes:  # an image with labels/ inside (--labels-into)
            layers = [_one_label(_child(target, f"labels/{n}"), text, n, option) for n in names]
            return layers, raw_source(str(target) if isinstance(target, Path) else target.text, "image", like=layers[0])
    return [_one_label(target, text, "labels", option)], None


def _child(target: Path | StoreUrl, key: str) -> Path | StoreUrl:
    return target / key if isinstance(target, Path) else target.child(key)


def _one_label(target: Path | StoreUrl, text: str, name: str, option: str) -> Source:
    volume = open_labels(target)  # refuses float data: "holds float32 values; ... give labels"
    shape, nm = _placed(volume, target)
    if isinstance(target, Path):  # a local Zarr array or OME-Zarr label image
        attributes = _zarr_attributes(target)
        if "multiscales" in attributes and "image-label" not in attributes:
            raise _no_labels(option, text, "an OME-Zarr image without image-label or labels/")
        url = f"{_NG_FORMATS[_zarr_format(target)]}://{{served}}"
        return Source(name, "segmentation", shape, nm, url=url, serve=target,
                      segments=_segments_of(attributes.get("image-label", {}).get("properties")))
    opened = open_volume(target)
    segments: tuple[int, ...] = ()
    corner = (0.0, 0.0, 0.0)
    if opened.format == "precomputed":
        info = opened.attributes["info"]
        if info.get("type") != "segmentation":
            raise _no_labels(option, text, f"a precomputed {info.get('type')} volume")
        segments = _precomputed_segments(target, info)
        x, y, z = info["scales"][opened.attributes["scale"]].get("voxel_offset", [0, 0, 0])
        corner = (float(x), float(y), float(z))
    url, serve = _store_url(target, opened.format)
    return Source(name, "segmentation", shape, nm, url=url, serve=serve, segments=segments, corner_xyz=corner)


def raw_source(text: str, name: str = "raw", like: Source | None = None) -> Source:
    """The image layer of ``--raw`` (any volume segment reads: TIFF, Zarr, OME-Zarr, N5,
    precomputed, by path or URL); a TIFF that states no voxel size takes that of ``like``.

    Raises
    ------
    InputError
        Nothing there, unreadable, or a TIFF over `TIFF_LIMIT`.
    """
    target = _target(text, "--raw")
    if isinstance(target, Path) and target.suffix.lower() in TIFF_SUFFIXES:
        return _tiff(target, name, "image", "--raw", like)
    if isinstance(target, Path):  # a local Zarr array or OME-Zarr image
        if not any((target / marker).exists() for marker in ("zarr.json", ".zarray", ".zattrs", ".zgroup")):
            raise InputError(f"--raw {text}: not a volume (no TIFF, Zarr, N5 or precomputed there); give the volume "
                             "that was segmented")
        return Source(name, "image", (0, 0, 0), nanometres_zyx(read_voxel_size(target)),
                      url=f"{_NG_FORMATS[_zarr_format(target)]}://{{served}}", serve=target)
    url, serve = _store_url(target, open_volume(target).format)  # Neuroglancer reads any dtype: not read_volume's check
    return Source(name, "image", (0, 0, 0), nanometres_zyx(read_voxel_size(target)), url=url, serve=serve)
