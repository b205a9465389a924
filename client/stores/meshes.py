"""Write legacy meshes (client/meshes.py makes them) into a precomputed output, locally or on
S3 / GCS: fragments and manifests under ``mesh/``, then ``mesh/info`` beside the volume's
``info``, which names it last (`add_mesh_key` in memory; export.publish blockwise).

Nothing here makes a volume readable: the in-memory writer writes these into its staged
store, the blockwise workers into the destination before its ``info`` exists.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import OutputError
from ..meshes import MESH_DIR, MESH_INFO, Box, encode_fragment, fragment_name, manifest, mesh_box, read_extent
from .location import StoreUrl, context, done, explain, write_all
from .writer import open_output, write_boxes

__all__ = ["scale_frame", "open_folder", "write_box_meshes", "write_manifests", "write_mesh_info", "add_mesh_key", "mesh_labels"]


def scale_frame(info: Mapping[str, Any]) -> tuple[list[float], list[int]]:
    """The first scale's ``resolution`` (nm) and ``voxel_offset`` of a precomputed ``info``
    (or of a spec's ``scale_metadata``): where its voxels sit, in file order."""
    scale = info["scales"][0] if "scales" in info else info
    return [float(r) for r in scale["resolution"]], [int(v) for v in scale.get("voxel_offset", (0, 0, 0))]


def open_folder(url: StoreUrl) -> Any:
    """The output's key-value store (its keys: ``info``, ``mesh/…``), opened within its deadline."""
    import tensorstore as ts

    try:
        return done(ts.KvStore.open(url.kvstore(), context=context()), url)
    except ValueError as e:
        raise explain(e, url, "store", OutputError) from e


def _write_all(kv: Any, url: StoreUrl, items: Iterable[tuple[str, bytes]]) -> int:
    """`write_all`, a store's failure said in one line."""
    try:
        return write_all(kv, url, items)
    except ValueError as e:
        raise explain(e, url, "store", OutputError) from e


def write_box_meshes(kv: Any, url: StoreUrl, labels_xyz: np.ndarray, box: Box, shape_xyz: Sequence[int],
                     frame: tuple[Sequence[float], Sequence[int]]) -> tuple[np.ndarray, int]:
    """Mesh the labels of ``box`` (read with `read_extent`) and write one fragment per id; the ids
    (sorted) and the bytes written. ``frame``: `scale_frame` of the volume."""
    resolution, offset = frame
    meshes = mesh_box(labels_xyz, box, shape_xyz, resolution, offset)
    ids = np.array(sorted(meshes), np.uint64)
    written = _write_all(kv, url, ((f"{MESH_DIR}/{fragment_name(i, box)}", encode_fragment(*meshes[int(i)])) for i in ids))
    return ids, written


def write_manifests(kv: Any, url: StoreUrl, fragments: Mapping[int, Sequence[str]]) -> int:
    """Write each id's manifest ``mesh/{id}:0`` naming its fragments; the bytes written."""
    return _write_all(kv, url, ((f"{MESH_DIR}/{int(i)}:0", manifest(names)) for i, names in fragments.items()))


def write_mesh_info(kv: Any, url: StoreUrl) -> None:
    """``mesh/info``: the legacy mesh format's."""
    _write_all(kv, url, [(f"{MESH_DIR}/info", json.dumps(MESH_INFO).encode())])


def add_mesh_key(url: StoreUrl) -> None:
    """``mesh/info``, then the volume's ``info`` naming it (the in-memory writer's staged store)."""
    kv = open_folder(url)
    write_mesh_info(kv, url)
    info = json.loads(bytes(done(kv.read("info"), url).value))
    info["mesh"] = MESH_DIR
    _write_all(kv, url, [("info", json.dumps(info).encode())])


def mesh_labels(url: StoreUrl, labels_xyz: np.ndarray) -> int:
    """Mesh runtime ``[X, Y, Z]`` labels held in memory into the precomputed volume at ``url``
    (written, not yet published: `write_store_labels`'s ``before_publish``) box by box, the
    writer's boxes as the blockwise workers mesh their write regions; manifests and the ``mesh``
    key included. The bytes written."""
    kv = open_folder(url)
    boxes = write_boxes(labels_xyz.shape, open_output(url, "precomputed").chunk_layout.write_chunk.shape)
    frame = scale_frame(json.loads(bytes(done(kv.read("info"), url).value)))
    fragments: dict[int, list[str]] = {}
    written = 0
    for box in boxes:
        window = tuple(slice(lo, hi) for lo, hi in read_extent(box, labels_xyz.shape))
        ids, size = write_box_meshes(kv, url, labels_xyz[window], box, labels_xyz.shape, frame)
        written += size
        for i in ids:
            fragments.setdefault(int(i), []).append(fragment_name(int(i), box))
    written += write_manifests(kv, url, fragments)
    add_mesh_key(url)
    return written
