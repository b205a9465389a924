"""``segment --blockwise --out precomputed://…`` / ``n5://…``: the labels written once, straight
into the destination, with its metadata last.

The workers open the destination with TensorStore's ``assume_metadata`` (the metadata taken
from the spec, neither read nor written) and each writes whole shards (or chunks) of it: no two
tasks write one file or object, and nothing is copied afterwards. Until the client writes the
metadata (`publish`: precomputed ``info`` with every scale of the label pyramid, its
``segment_properties`` before it; N5 ``attributes.json``) no reader sees a volume there, so a run that stops half-way leaves nothing
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
    scale_factors,
    segment_properties,
    spec,
    write_step,
)

__all__ = ["Scale", "InPlace", "in_place", "open_chunks", "read_region", "clear", "publish", "discard"]


@dataclass(frozen=True)
class Scale:
    """One scale above level 0 of a precomputed pyramid: its spec (opened without metadata), its
    shape and write regions' step (runtime X, Y, Z), and the factor from the scale below."""

    spec: dict[str, Any]
    shape_xyz: tuple[int, int, int]
    step_xyz: tuple[int, int, int]
    factor_xyz: tuple[int, int, int]

    def regions(self) -> list[Region]:
        return regions(self.shape_xyz, self.step_xyz)


@dataclass(frozen=True)
class InPlace:
    """A precomputed or N5 volume being written in place: its URL, format, TensorStore spec
    (opened without its metadata) and the write regions (whole shards or chunks, up to 64 MiB);
    a precomputed volume's pyramid ``scales`` above level 0 (written after it)."""

    url: StoreUrl
    format: str
    spec: dict[str, Any]
    shape_xyz: tuple[int, int, int]
    step_xyz: tuple[int, int, int]
    scales: tuple[Scale, ...] = ()

    def regions(self) -> list[Region]:
        return regions(self.shape_xyz, self.step_xyz)

    def level(self, scale: int) -> Any:
        """The spec of level ``scale`` (0: the labels as written)."""
        return self.spec if scale == 0 else self.scales[scale - 1].spec


def in_place(url: StoreUrl, shape_xyz: Sequence[int], dtype: Any, voxel_size: Any, offset: Sequence[float] | None = None,
             **layout: Any) -> InPlace:
    """The volume at ``url`` as `spec` makes it (``layout``: ``chunk``, ``shard_log2``,
    ``shard_past``), with write regions of whole shards (or chunks), and a precomputed
    volume's pyramid scales, each with regions of whole shards (or chunks) of it whose part of
    the scale below is at most 64 MiB of uint32 (or one shard)."""
    format = output_format(url)
    created = spec(url, format, shape_xyz, dtype, voxel_size, offset=offset, **layout)
    shape = tuple(int(n) for n in shape_xyz)
    step = write_step(shape, _write_chunk(created, url))
    scales = []
    for k, factor in enumerate(scale_factors(created), 1):
        shape = tuple(-(-n // f) for n, f in zip(shape, factor))
        level = spec(url, format, shape_xyz, dtype, voxel_size, offset=offset, scale=k, **layout)
        most = (64 << 20) // (factor[0] * factor[1] * factor[2])  # a task reads the scale below: at most 64 MiB of it per box
        scales.append(Scale(_opened_as(level), shape, write_step(shape, _write_chunk(level, url), most=most), factor))  # type: ignore[arg-type]
    return InPlace(url, format, _opened_as(created), tuple(int(n) for n in shape_xyz), step, tuple(scales))  # type: ignore[arg-type]


def _opened_as(created: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in created.items() if k != "create"}


def _write_chunk(created: dict[str, Any], url: StoreUrl) -> Any:
    import tensorstore as ts

    try:
        return ts.open({**created, "kvstore": {"driver": "memory"}}, context=ts.Context()).result().chunk_layout.write_chunk.shape
    except ValueError as e:
        raise explain(e, url, "output", OutputError) from e


def open_chunks(target: InPlace, scale: int = 0) -> Any:
    """The destination (its pyramid's ``scale``) for reading and writing chunks, its metadata
    assumed from the spec (not read, not written); indices count from its first voxel."""
    import tensorstore as ts

    try:
        store = done(ts.open(target.level(scale), open=True, assume_metadata=True, context=context()), target.url)
    except ValueError as e:
        raise explain(e, target.url, "output", OutputError) from e
    return store[ts.d[:].translate_to[0]]


def read_region(store: Any, region_xyz: Sequence[tuple[int, int]]) -> np.ndarray:
    """Runtime ``[X, Y, Z]`` labels at ``region_xyz`` of the destination (unwritten chunks: 0)."""
    (x0, x1), (y0, y1), (z0, z1) = region_xyz
    data = np.asarray(store[y0:y1, x0:x1, z0:z1].read().result())
    return (data[..., 0] if data.ndim == 4 else data).transpose(1, 0, 2)


def _metadata(target: InPlace) -> dict[str, Any]:
    """The metadata TensorStore writes for ``target``'s spec (every scale of its pyramid), made
    in memory (not at the destination)."""
    import tensorstore as ts

    made = ts.Context()  # one memory store that each scale's open adds to
    for scale in range(len(target.scales) + 1):
        store = ts.open({**target.level(scale), "create": True, "kvstore": {"driver": "memory"}}, context=made).result()
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
            properties: Sequence[dict[str, Any]] | None = None, skeletons: bool = False, meshes: bool = False) -> None:
    """Write the metadata that makes the written chunks a volume, last: N5 ``attributes.json``
    (with ``offset``), or precomputed ``segment_properties/info`` (``properties``: the instance
    table's, `label_properties`), ``skeletons/info`` (with ``skeletons``: the objects are
    written by then), ``mesh/info`` (``meshes``: the mesh stages wrote the rest) and then ``info``."""
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
        if target.format == "precomputed" and skeletons:
            from .skeleton_objects import SKELETON_INFO, name_skeletons, skeleton_info_object

            for key, data in skeleton_info_object(SKELETON_INFO).items():
                done(kv.write(key, data), url)
            metadata = name_skeletons(metadata)
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

