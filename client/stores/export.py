"""``segment --blockwise --out precomputed://…`` / ``n5://…``: the labels written once, straight
into the destination, with its metadata last.

The workers open the destination with TensorStore's ``assume_metadata`` (the metadata taken
from the spec, neither read nor written) and each writes whole shards (or chunks) of it: no two
tasks write one file or object, and nothing is copied afterwards. Until the client writes the
metadata (`publish`: precomputed ``info``, its ``segment_properties`` before it; N5
``attributes.json``) no reader sees a volume there, so a run that stops half-way leaves nothing
readable, and ``--resume`` finishes it in place. An existing volume replaced with
``--overwrite`` is removed first, its metadata before its chunks (`clear`), so it is never seen
mixed with the new one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import OutputError
from .location import StoreUrl, context, explain
from .writer import (
    METADATA,
    Region,
    done,
    offset_attribute,
    output_format,
    regions,
    segment_properties,
    spec,
    write_step,
)

__all__ = ["InPlace", "in_place", "open_chunks", "read_region", "clear", "publish", "discard"]


@dataclass(frozen=True)
class InPlace:
    """A precomputed or N5 volume being written in place: its URL, format, TensorStore spec
    (opened without its metadata) and the write regions (whole shards or chunks, up to 64 MiB)."""

    url: StoreUrl
    format: str
    spec: dict[str, Any]
    shape_xyz: tuple[int, int, int]
    step_xyz: tuple[int, int, int]

    def regions(self) -> list[Region]:
        return regions(self.shape_xyz, self.step_xyz)


def in_place(url: StoreUrl, shape_xyz: Sequence[int], dtype: Any, voxel_size: Any, offset: Sequence[float] | None = None,
             **layout: Any) -> InPlace:
    """The volume at ``url`` as `spec` makes it (``layout``: ``chunk``, ``shard_log2``,
    ``shard_past``), with write regions of whole shards (or chunks)."""
    import tensorstore as ts

    format = output_format(url)
    created = spec(url, format, shape_xyz, dtype, voxel_size, offset=offset, **layout)
    made = {k: v for k, v in created.items() if k != "create"}
    try:
        write_chunk = ts.open({**created, "kvstore": {"driver": "memory"}}, context=ts.Context()).result().chunk_layout.write_chunk.shape
    except ValueError as e:
        raise explain(e, url, "output", OutputError) from e
    shape = tuple(int(n) for n in shape_xyz)
    return InPlace(url, format, made, shape, write_step(shape, write_chunk))  # type: ignore[arg-type]


def open_chunks(target: InPlace) -> Any:
    """The destination for reading and writing chunks, its metadata assumed from the spec (not
    read, not written); indices count from its first voxel."""
    import tensorstore as ts

    try:
        store = done(ts.open(target.spec, open=True, assume_metadata=True, context=context()), target.url)
    except ValueError as e:
        raise explain(e, target.url, "output", OutputError) from e
    return store[ts.d[:].translate_to[0]]


def read_region(store: Any, region_xyz: Sequence[tuple[int, int]]) -> np.ndarray:
    """Runtime ``[X, Y, Z]`` labels at ``region_xyz`` of the destination (unwritten chunks: 0)."""
    (x0, x1), (y0, y1), (z0, z1) = region_xyz
    data = np.asarray(store[y0:y1, x0:x1, z0:z1].read().result())
    return (data[..., 0] if data.ndim == 4 else data).transpose(1, 0, 2)


def _metadata(target: InPlace) -> dict[str, Any]:
    """The metadata TensorStore writes for ``target``'s spec, made in memory (not at the destination)."""
    import tensorstore as ts

    store = ts.open({**target.spec, "create": True, "kvstore": {"driver": "memory"}}, context=ts.Context()).result()
    kv = store.kvstore
    assert kv is not None
    return json.loads(bytes(kv.read(METADATA[target.format]).result().value))


def clear(target: InPlace, overwrite: bool) -> None:
    """Make the destination empty before a fresh write: a volume there (with ``overwrite``)
    loses its metadata first, so it is never seen half-replaced, then every other object.

    Raises
    ------
    OutputError
        A volume or other objects there without ``overwrite``.
    """
    import tensorstore as ts

    url, key = target.url, METADATA[target.format]
    try:
        kv = done(ts.KvStore.open(url.kvstore(), context=context()), url)
        volume = done(kv.read(key), url).state == "value"
        if not overwrite and volume:
            raise OutputError(f"--out {url} exists; pass --overwrite to replace it")
        if not overwrite and done(kv.list(), url):
            raise OutputError(f"--out {url} holds objects but no volume (a run that did not finish?); pass --overwrite to "
                              "replace them, or --resume to finish that run")
        done(kv.delete_range(ts.KvStore.KeyRange(key, key + "\0")), url)
        done(kv.delete_range(ts.KvStore.KeyRange()), url)
    except ValueError as e:
        raise explain(e, url, "store", OutputError) from e


def publish(target: InPlace, *, voxel_size: Any, offset: Sequence[float] | None = None,
            properties: Sequence[dict[str, Any]] | None = None, meshes: bool = False) -> None:
    """Write the metadata that makes the written chunks a volume, last: N5 ``attributes.json``
    (with ``offset``), or precomputed ``segment_properties/info`` (``properties``: the instance
    table's, `label_properties`), ``mesh/info`` (``meshes``: the mesh stages wrote the rest) and
    then ``info``."""
    import tensorstore as ts

    url = target.url
    metadata = _metadata(target)
    try:
        kv = done(ts.KvStore.open(url.kvstore(), context=context()), url)
        if target.format == "n5" and offset is not None and any(offset):
            metadata["offset"] = offset_attribute(offset, voxel_size)
        if target.format == "precomputed" and properties:
            done(kv.write("segment_properties/info", json.dumps(segment_properties(properties)).encode()), url)
            metadata["segment_properties"] = "segment_properties"
        if target.format == "precomputed" and meshes:
            from ..meshes import MESH_DIR, MESH_INFO

            done(kv.write(f"{MESH_DIR}/info", json.dumps(MESH_INFO).encode()), url)
            metadata["mesh"] = MESH_DIR
        done(kv.write(METADATA[target.format], json.dumps(metadata).encode()), url)
    except ValueError as e:
        raise explain(e, url, "store", OutputError) from e


def discard(target: InPlace) -> None:
    """Remove what a run that will not be resumed wrote (never published: no metadata)."""
    import contextlib

    import tensorstore as ts

    with contextlib.suppress(Exception):
        kv = done(ts.KvStore.open(target.url.kvstore(), context=context()), target.url)
        if done(kv.read(METADATA[target.format]), target.url).state != "value":
            done(kv.delete_range(ts.KvStore.KeyRange()), target.url)

