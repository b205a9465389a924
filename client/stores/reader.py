"""Open N5, Neuroglancer precomputed and Zarr (v2, v3, sharded) volumes with TensorStore for
reading by window, wherever they live (local, HTTP, S3, GCS); their axes and voxel size.

TensorStore reads all three formats on every store with its own parallel I/O and a chunk cache,
which segment's overlapping crops reuse. A local Zarr path stays with zarr-python
(volume_read.py): it reads OME-NGFF group metadata and is as fast there (benchmarks/RESULTS.md).
The engines see an array-like of the stored axis order and letters naming its axes, as for
any other file (volume.XYZView): no format-specific code outside this package. What the
metadata says of the voxel size and offset: metadata.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..levels import dataset_paths, multiscales_of
from .location import StoreUrl, context, explain, is_store, parse
from .windows import CheckedZarr, WindowArray

__all__ = ["DRIVERS", "NAMES", "store_of", "Opened", "read_json", "detect", "open_volume", "zarr_windows", "level"]

DRIVERS = {"n5": "n5", "precomputed": "neuroglancer_precomputed", "zarr2": "zarr", "zarr3": "zarr3"}
NAMES = {"n5": "N5 dataset", "precomputed": "Neuroglancer precomputed volume", "zarr2": "Zarr array", "zarr3": "Zarr array",
         "zarr": "Zarr array"}


def store_of(source: Any) -> StoreUrl | None:
    """``source`` as a store TensorStore reads: a `StoreUrl`, or a local folder holding
    an N5 dataset (``attributes.json``) or a precomputed volume or scale (``info``). None for
    everything else (TIFF, a local Zarr: volume_read reads those)."""
    if is_store(source):
        return source
    path = Path(source)
    if not path.is_dir():
        return None
    zarr = any((path / marker).exists() for marker in ("zarr.json", ".zarray", ".zattrs", ".zgroup"))
    n5 = (path / "attributes.json").is_file() or (path / "s0" / "attributes.json").is_file()  # a dataset, or a group of levels
    if n5 or _precomputed_info(path / "info") or (not zarr and _precomputed_info(path.parent / "info")):
        return parse(str(path))
    return None


def _precomputed_info(path: Path) -> bool:
    """Whether ``path`` is a precomputed ``info`` (JSON with ``scales``), not any file so named."""
    try:
        return path.is_file() and "scales" in json.loads(path.read_text())
    except (OSError, ValueError, TypeError):
        return False


@dataclass(frozen=True)
class Opened:
    """An open volume: the array, the letters of its axes (None: the seed's default reading),
    its format, and its metadata (for the voxel size)."""

    array: Any
    axes: str | None
    format: str
    attributes: dict[str, Any]
    url: StoreUrl


def _read_json(url: StoreUrl, key: str, kvstore: Any = None) -> dict[str, Any] | None:
    """The JSON object at ``key`` below ``url``; None when there is none."""
    import tensorstore as ts

    try:
        kv = kvstore or ts.KvStore.open(url.kvstore(), context=context()).result()
        found = kv.read(key).result()
    except ValueError as e:
        raise explain(e, url, key) from e
    if found.state != "value":
        return None
    try:
        value = json.loads(bytes(found.value))
    except ValueError as e:
        raise InputError(f"{url}: unreadable metadata {key} ({e}); the file is damaged or not JSON") from None
    if not isinstance(value, dict):
        raise InputError(f"{url}: unreadable metadata {key} (not a JSON object)")
    return value


def read_json(url: StoreUrl, key: str) -> dict[str, Any] | None:
    """The JSON object at ``key`` below ``url`` (metadata.py reads a group's attributes); None when there is none."""
    return _read_json(url, key)


def detect(url: StoreUrl) -> tuple[str, StoreUrl, dict[str, Any]]:
    """The format at ``url`` (``n5``, ``precomputed``, ``zarr2``, ``zarr3``), the location of
    the array to open (a Zarr image's first level) and the metadata that says so.

    Raises
    ------
    InputError
        Nothing readable there, a group rather than a dataset, unreadable metadata, a host that
        does not answer.
    """
    import tensorstore as ts

    try:
        kv = ts.KvStore.open(url.kvstore(), context=context()).result()
    except ValueError as e:
        raise explain(e, url, "store") from e
    wanted = url.format
    if wanted in (None, "n5"):
        attributes = _read_json(url, "attributes.json", kv)
        if attributes is not None:
            if "dimensions" not in attributes:
                raise InputError(f"{url} is an N5 group, not a dataset; append the dataset's path{_datasets(url)}")
            return "n5", url, attributes
    if wanted in (None, "precomputed"):
        info = _read_json(url, "info", kv)
        if info is not None:
            return "precomputed", url, {"info": info, "scale": 0}
        scale = _precomputed_scale(url)
        if scale is not None:
            return scale
    if wanted in (None, "zarr", "zarr3"):
        meta = _read_json(url, "zarr.json", kv)
        if meta is not None:
            if meta.get("node_type") == "group":
                return _zarr_image(url, meta.get("attributes", {}))
            return "zarr3", url, _with_image(url, meta)
    if wanted in (None, "zarr", "zarr2"):
        meta = _read_json(url, ".zarray", kv)
        if meta is not None:
            return "zarr2", url, _with_image(url, {**meta, "attributes": _read_json(url, ".zattrs", kv) or {}})
        attributes = _read_json(url, ".zattrs", kv)
        if attributes is not None or _read_json(url, ".zgroup", kv) is not None:
            return _zarr_image(url, attributes or {})
    if wanted in (None, "n5") and _read_json(url.child("s0"), "attributes.json", None) is not None:
        raise InputError(f"{url} is an N5 group, not a dataset; append the dataset's path{_datasets(url)}")
    _check_bucket(url, kv)
    if wanted is not None:
        raise InputError(f"{url}: no {NAMES[wanted]} there ({_markers(wanted)} not found); check the path")
    raise InputError(f"{url}: no N5, Neuroglancer precomputed or Zarr volume there (no attributes.json, info, zarr.json "
                     "or .zarray); check the path")


def _check_bucket(url: StoreUrl, kv: Any) -> None:
    """Raise when ``url``'s bucket does not exist: S3 and GCS read an object of a missing
    bucket as absent, which would say "no volume there" (a list of one key says which)."""
    import tensorstore as ts

    if url.scheme not in ("s3", "gs"):
        return
    try:
        kv.list(ts.KvStore.KeyRange("info", "info\0")).result()
    except ValueError as e:
        raise explain(e, url, "store") from e


def _markers(format: str) -> str:
    return {"n5": "attributes.json", "precomputed": "info", "zarr3": "zarr.json", "zarr2": ".zarray"}.get(format, "zarr.json or .zarray")


def _datasets(url: StoreUrl) -> str:
    """`` (its datasets: s0, s1)`` for a local N5 group; nothing for a remote one (no listing)."""
    if url.local is None or not url.local.is_dir():
        return ", e.g. /s0"
    found = sorted(p.parent.relative_to(url.local).as_posix() for p in url.local.rglob("attributes.json")
                   if p.parent != url.local and "dimensions" in json.loads(p.read_text() or "{}"))
    return f" (its datasets: {', '.join(found[:8])})" if found else ", e.g. /s0"


def _precomputed_scale(url: StoreUrl) -> tuple[str, StoreUrl, dict[str, Any]] | None:
    """``VOLUME/KEY``: scale ``KEY`` of the precomputed volume above, as precomputed names it."""
    if not url.path.strip("/") or "/" not in url.path.strip("/"):
        return None
    parent_path = url.path.rstrip("/").rsplit("/", 1)[0] or "/"
    parent = StoreUrl(url.text.rstrip("/").rsplit("/", 1)[0], url.scheme, url.host, parent_path, url.format, url.s3_endpoint)
    info = _read_json(parent, "info")
    if info is None:
        return None
    keys = [str(s.get("key")) for s in info.get("scales", [])]
    if url.name not in keys:
        raise InputError(f"{url}: {parent} has no scale {url.name}; its scales are {', '.join(keys)}")
    return "precomputed", parent, {"info": info, "scale": keys.index(url.name)}


def _parent(url: StoreUrl) -> StoreUrl | None:
    """The location above ``url``; None at the top of its store."""
    if "/" not in url.path.strip("/"):
        return None
    path = url.path.rstrip("/").rsplit("/", 1)[0] or "/"
    return StoreUrl(url.text.rstrip("/").rsplit("/", 1)[0], url.scheme, url.host, path, url.format, url.s3_endpoint)


def _ome_multiscales(url: StoreUrl) -> tuple[Any, list[str]] | None:
    """The ``multiscales`` of the OME-NGFF image at ``url`` (0.4: ``.zattrs``, 0.5: ``zarr.json``'s
    ``ome``) and its datasets' paths; None when there is none."""
    group = _read_json(url, "zarr.json") or _read_json(url, ".zattrs") or {}
    attributes = group.get("attributes", group)
    multiscales = multiscales_of(attributes)
    try:
        return multiscales, dataset_paths(multiscales)
    except (KeyError, IndexError, TypeError):
        return None


def _with_image(url: StoreUrl, meta: dict[str, Any]) -> dict[str, Any]:
    """A Zarr array's metadata, with ``multiscales`` and ``level`` when it is a level of the
    OME-NGFF image above it (``IMAGE.ome.zarr/s0`` by URL): the image names its axes, scale
    and translation, as it does for a local level (levels.image_of_level)."""
    parent = _parent(url)
    try:
        image = _ome_multiscales(parent) if parent is not None else None
    except InputError:
        return meta
    if image is None or url.name not in image[1]:
        return meta
    return {**meta, "multiscales": image[0], "level": image[1].index(url.name)}


def _zarr_image(url: StoreUrl, attributes: dict[str, Any]) -> tuple[str, StoreUrl, dict[str, Any]]:
    """A Zarr group: an OME-NGFF image's first level (the image names its axes and scale)."""
    multiscales = multiscales_of(attributes)
    try:
        path = dataset_paths(multiscales)[0]
    except (KeyError, IndexError, TypeError):
        raise InputError(f"{url} is a Zarr group without OME multiscales; point at one of its arrays") from None
    format, level, meta = detect(url.child(path))
    return format, level, {**meta, "multiscales": multiscales, "level": 0}


def open_volume(source: StoreUrl, fill_missing: bool | None = False) -> Opened:
    """Open ``source`` for reading by window. A chunk the store does not hold is an error when
    it is read, unless ``fill_missing`` (``--fill-missing``): then it reads as zeros, counted;
    ``None`` reads it as the fill value, uncounted (label volumes).

    Raises
    ------
    InputError
        See `detect`; and data TensorStore cannot decode.
    """
    format, url, meta = detect(source)
    spec: dict[str, Any] = {"driver": DRIVERS[format], "kvstore": url.kvstore(), "open": True}
    if format == "precomputed":
        spec["scale_index"] = meta["scale"]
    store, filler = _open_strict(spec, source, NAMES[format], fill_missing)
    return Opened(WindowArray(store, source, filler), _axes(format, store, meta), format, meta, source)


def _open_strict(spec: dict[str, Any], url: StoreUrl, what: str, fill_missing: bool | None) -> tuple[Any, Any]:
    """The store of ``spec`` that fails on a missing chunk (TensorStore's drivers read one as
    the fill value by default: ``fill_missing_data_reads``), and with ``fill_missing`` the
    one that reads it as zeros; both translated to count windows from the volume's corner
    (a precomputed ``voxel_offset``). ``None``: one store that reads it as the fill value."""
    import tensorstore as ts

    opened = []
    for fill in (True,) if fill_missing is None else (False, True) if fill_missing else (False,):
        try:
            store = ts.open({**spec, "fill_missing_data_reads": fill}, read=True, context=context()).result()
        except ValueError as e:
            raise explain(e, url, what) from e
        opened.append(store[ts.d[:].translate_to[0]])
    return opened[0], opened[1] if fill_missing else None


def _axes(format: str, store: Any, meta: dict[str, Any]) -> str | None:
    """Letters of the stored axes: named ones (N5 ``axes``, Zarr v3 ``dimension_names``, OME
    axes); N5 without names stores x fastest (``XYZ``); precomputed is ``XYZC``."""
    if format == "precomputed":
        return "XYZC"
    names = meta.get("axes") if format == "n5" else meta.get("dimension_names")
    if meta.get("multiscales"):
        try:
            names = [a["name"] if isinstance(a, dict) else a for a in meta["multiscales"][0]["axes"]]
        except (KeyError, IndexError, TypeError):
            names = None
    letters = "".join(str(n)[:1].upper() for n in names) if names and all(n for n in names) else None
    if letters and len(letters) == store.rank and len(set(letters)) == len(letters) and set(letters) <= set("XYZCT"):
        return letters
    if format == "n5":
        return "XYZ" if store.rank == 3 else "XYZC" if store.rank == 4 else None
    return None


def zarr_windows(array: Any, fill_missing: bool | None = False) -> Any:
    """A local zarr-python array read by window through TensorStore instead, when TensorStore
    is installed and opens it alike (same shape and dtype); else ``array`` as it is.

    zarr-python keeps finding the array and its metadata (OME-NGFF axes, levels, scale);
    TensorStore reads the crops, 5x faster in segment's pattern: it decodes chunks in
    parallel and keeps them in its cache for the overlapping crops (benchmarks/RESULTS.md).
    A missing chunk is an error as in `open_volume`, read as zeros and counted with
    ``fill_missing``; ``None`` reads it as the fill value, uncounted (label volumes, whose
    writers skip chunks of background)."""
    root = getattr(getattr(array, "store", None), "root", None)
    if root is None:
        return array
    path = Path(root) / str(getattr(array, "path", "") or "")
    try:
        import tensorstore  # noqa: F401 - installed or not
    except ImportError:
        return array if fill_missing is None else CheckedZarr(array, path, fill_missing)
    url = parse(str(path))
    driver = "zarr" if array.metadata.zarr_format == 2 else "zarr3"
    spec = {"driver": driver, "kvstore": url.kvstore(), "open": True}
    try:
        store, filler = _open_strict(spec, url, "Zarr array", fill_missing)
    except InputError:  # a codec TensorStore lacks: zarr-python reads it, missing chunks checked
        return array if fill_missing is None else CheckedZarr(array, path, fill_missing)
    windows = WindowArray(store, url, filler)
    if windows.shape == tuple(array.shape) and windows.dtype == np.dtype(array.dtype):
        return windows
    return array if fill_missing is None else CheckedZarr(array, path, fill_missing)


def level(source: StoreUrl, index: int) -> StoreUrl:
    """``--level N`` of a multiscale volume by URL: scale ``N`` of a precomputed volume (its
    key appended), the ``N``-th dataset of an OME-Zarr image, dataset ``sN`` of an N5 group
    (the n5-viewer / BigDataViewer layout).

    Raises
    ------
    InputError
        Not a precomputed volume or N5 group, or no level ``N``.
    """
    info = _read_json(source, "info") if source.format in (None, "precomputed") else None
    if info is not None:
        keys = [str(s.get("key")) for s in info.get("scales", [])]
        if not 0 <= index < len(keys):
            raise InputError(f"--level {index}: {source} has scales {', '.join(f'{i} ({k})' for i, k in enumerate(keys))}; choose one of them")
        return source.child(keys[index])
    image = _ome_multiscales(source) if source.format in (None, "zarr", "zarr2", "zarr3") else None
    if image is not None:
        if not 0 <= index < len(image[1]):
            raise InputError(f"--level {index}: {source} has levels {', '.join(f'{i} ({p})' for i, p in enumerate(image[1]))}; "
                             "choose one of them")
        return source.child(image[1][index])
    attributes = _read_json(source, "attributes.json") if source.format in (None, "n5") else None
    if source.format in (None, "n5") and (attributes is None or "dimensions" not in attributes):
        dataset = source.child(f"s{index}")
        found = _read_json(dataset, "attributes.json")
        if found is not None and "dimensions" in found:
            return dataset
        if attributes is not None or _read_json(source.child("s0"), "attributes.json") is not None:
            raise InputError(f"--level {index}: {source} has no dataset s{index}{_datasets(source)}")
    raise InputError(f"--level {index}: {source} is not a precomputed volume, an OME-Zarr image or an N5 group of s0, s1, …; "
                     "point at the level's path instead")
