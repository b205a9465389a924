"""Write labels as a Neuroglancer precomputed segmentation or an N5 dataset, locally or on
S3 / GCS, staged and then published: nothing half-written is ever visible at the destination.

Precomputed: ``uint32`` (``uint64`` past 2**32 instances), ``compressed_segmentation``
encoding (8x8x8 blocks, what Neuroglancer and Igneous write for labels), 64**3 chunks,
``resolution`` in nanometres from the voxel size, and ``segment_properties`` from the instance
table so Neuroglancer lists each object's volume and length; a pyramid of downsampled scales
(downsample.py) so a large volume opens at overview resolution. Each scale is sharded past
`SHARD_PAST` voxels: an unsharded volume is one object per chunk, 4096 per Gvoxel, so
a 10**11-10**12 voxel volume would be 0.4-4 million objects (slow to list, copy and delete,
and a PUT each on S3); a shard of 4x4x4 chunks (256**3 voxels) makes those 6000-60000 files.
A shard is what one blockwise export task holds (64 MiB of uint32, and its copy in file order),
which fits beside nothing else in a worker's budget; 512**3 shards would be 512 MiB each.
Below the threshold every reader (older CloudVolume too) opens the simpler unsharded layout.

N5: the labels' dtype, 64**3 gzip blocks, ``axes`` x, y, z and ``resolution`` / ``units``
(TensorStore's N5 attributes, which Neuroglancer and n5-viewer read).

The in-memory mode's writes (`write_store_labels`): local outputs are written into a hidden
folder beside the destination and renamed into place (as label_write's writers do). On S3 and
GCS, which cannot rename, they are written under a hidden ``.NAME.partial-XXXX`` prefix beside
the destination and copied into place, the metadata (``info`` / ``attributes.json``) last: a
reader sees no volume until it is whole. A blockwise run writes in place instead, once, its
metadata last (export.py).

Not split: the layout (`spec`, `sharding`, the write boxes) and the staged write that uses it
are one contract with export.py, which imports them; the pyramid's arithmetic is downsample.py.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import math
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ClientError, OutputError
from .location import DEADLINE, StoreUrl, check_credentials, context, done, explain, write_all

__all__ = [
    "SHARD_PAST", "CHUNK", "SHARD_LOG2", "METADATA", "DEADLINE", "Region", "output_format", "check_store_destination",
    "check_bucket", "done", "sharding", "spec", "add_offset", "open_output", "write_region", "segment_properties",
    "add_properties", "staged_store", "publish", "regions", "write_step", "write_boxes", "write_store_labels", "offset_attribute",
    "scale_factors",
]

SHARD_PAST = 1 << 30  # voxels: past this a precomputed output is sharded (see the module's docstring)
CHUNK = 64  # voxels per chunk side, precomputed and N5
SHARD_LOG2 = 2  # a shard is 2**2 chunks per axis: 256**3 voxels
METADATA = {"precomputed": "info", "n5": "attributes.json"}
Region = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]  # (start, stop) per runtime axis X, Y, Z


def output_format(url: StoreUrl) -> str:
    """``precomputed`` or ``n5``: what ``--out`` names (a URL without a format: precomputed)."""
    return url.format or "precomputed"


def check_store_destination(url: StoreUrl, overwrite: bool, inputs: Sequence[Path] = ()) -> None:
    """Fail before any work if labels cannot be written at ``url``: a format this writes, a
    writable store (not HTTP), credentials for S3, a folder that exists and takes a file, a
    bucket that exists and takes an object (a probe written and deleted), not the input, and
    ``--overwrite`` for a volume already there.

    Raises
    ------
    OutputError
        One line naming ``--out`` and what to do.
    """
    from ..destinations import check_not_input, check_writable

    format = output_format(url)
    if format not in METADATA:
        raise OutputError(f"--out {url}: Zarr is written to a local NAME.zarr or NAME.ome.zarr path; "
                          "to a URL write precomputed:// or n5://")
    if url.scheme in ("http", "https"):
        raise OutputError(f"--out {url}: HTTP is read-only; write to a path, s3:// or gs://")
    try:
        check_credentials(url, "--out", writing=True)
    except ClientError as e:  # no credentials: a problem of the output here
        raise OutputError(str(e)) from None
    if url.local is not None:
        check_not_input("--out", url.local, inputs)
        parent = url.local.parent
        if not parent.is_dir():
            raise OutputError(f"--out {url}: folder {parent} does not exist; create it first")
        check_writable("--out", url, parent)
        volume = (url.local / METADATA[format]).exists() or (url.local.exists() and not url.local.is_dir())
        if volume and not overwrite:  # a folder without metadata: a blockwise run to resume, else refused by export.clear
            raise OutputError(f"--out {url} exists; pass --overwrite to replace it")
        return
    check_bucket(url)
    if _exists(url, format) and not overwrite:
        raise OutputError(f"--out {url} exists; pass --overwrite to replace it")


def check_bucket(url: StoreUrl) -> None:
    """Write a probe object below ``url`` and delete it: the bucket exists and takes objects
    (and one answer, not a retry loop, says when not).

    Raises
    ------
    OutputError
        No such bucket, access denied, a store that does not answer in `DEADLINE` seconds.
    """
    import tensorstore as ts

    kv = _kv(url)
    key = f".skoots-write-probe-{uuid.uuid4().hex[:8]}"
    try:
        done(kv.write(key, b"probe"), url)
        done(kv.delete_range(ts.KvStore.KeyRange(key, key + "\0")), url)
    except ValueError as e:
        if "NoSuchBucket" in str(e):
            raise OutputError(f"--out {url}: bucket {url.host} does not exist; create it first, or check the name "
                              "(and --s3-endpoint)") from None
        raise explain(e, url, "store", OutputError) from None


def _kv(url: StoreUrl) -> Any:
    import tensorstore as ts

    try:
        return done(ts.KvStore.open(url.kvstore(), context=context()), url)
    except ValueError as e:
        raise explain(e, url, "store", OutputError) from e


def _exists(url: StoreUrl, format: str) -> bool:
    try:
        return done(_kv(url).read(METADATA[format]), url).state == "value"
    except ValueError as e:
        raise explain(e, url, "store", OutputError) from e


def sharding(grid: Sequence[int], shard_log2: int = SHARD_LOG2) -> dict[str, Any]:
    """A ``neuroglancer_uint64_sharded_v1`` spec whose shards are aligned boxes of up to
    ``2**shard_log2`` chunks per axis of a volume of ``grid`` chunks: the identity hash of the
    compressed Morton code, whose low bits interleave the axes that still have bits."""
    bits = [max(0, math.ceil(math.log2(n))) if n > 1 else 0 for n in grid]
    low = sum(min(shard_log2, b) for b in bits)  # chunk bits inside a shard
    preshift = min(low, 3)  # minishards of up to 8 chunks: one index read serves neighbours
    return {"@type": "neuroglancer_uint64_sharded_v1", "hash": "identity", "preshift_bits": preshift,
            "minishard_bits": low - preshift, "shard_bits": sum(bits) - low,
            "minishard_index_encoding": "gzip", "data_encoding": "gzip"}


def _file_order(shape_xyz: Sequence[int]) -> list[int]:
    """The runtime's ``[X (rows), Y (columns), Z]`` as the formats order axes: x (columns), y, z."""
    x, y, z = (int(n) for n in shape_xyz)
    return [y, x, z]


def _nanometres(voxel_size: Any) -> list[float]:
    """The voxel size per file axis in nm; a size without a unit is taken as nm as it is."""
    x, y, z = voxel_size.in_metres() if voxel_size.unit else voxel_size.xyz
    scale = 1e9 if voxel_size.unit else 1.0
    return [float(y) * scale, float(x) * scale, float(z) * scale]


def spec(url: StoreUrl, format: str, shape_xyz: Sequence[int], dtype: Any, voxel_size: Any, *, chunk: int = CHUNK,
         shard_log2: int = SHARD_LOG2, shard_past: int = SHARD_PAST, offset: Sequence[float] | None = None,
         scale: int = 0) -> dict[str, Any]:
    """The TensorStore spec that creates the output at ``url``, in file order (x, y, z[, c]);
    a precomputed output's ``voxel_offset`` is ``offset`` (runtime X, Y, Z voxels) rounded to
    whole voxels (an N5 output gets it from `add_offset`). ``scale`` > 0: the spec of that scale
    of the precomputed pyramid (`scale_factors`, `downsample.scale_geometry`), which TensorStore
    adds to the ``info``, its ``key`` made from its resolution (``16_16_40``, as CloudVolume's)."""
    size = _file_order(shape_xyz)
    dtype = np.dtype(np.uint64 if np.dtype(dtype).itemsize > 4 else np.uint32) if format == "precomputed" else np.dtype(dtype)
    if format == "precomputed":
        voxel_offset = _file_order([int(v) for v in offset or (0, 0, 0)])
        resolution = _nanometres(voxel_size)
        if scale:
            from .downsample import scale_geometry

            size, resolution, voxel_offset = scale_geometry(size, resolution, voxel_offset, chunk, scale)
        chunks = [min(chunk, n) for n in size]
        scale_metadata: dict[str, Any] = {"size": size, "resolution": resolution, "encoding": "compressed_segmentation",
                                          "compressed_segmentation_block_size": [8, 8, 8], "chunk_size": chunks,
                                          "voxel_offset": voxel_offset}
        if math.prod(size) > shard_past:
            scale_metadata["sharding"] = sharding([math.ceil(n / c) for n, c in zip(size, chunks)], shard_log2)
        return {"driver": "neuroglancer_precomputed", "kvstore": url.kvstore(), "create": True,
                "multiscale_metadata": {"type": "segmentation", "data_type": dtype.name, "num_channels": 1},
                "scale_metadata": scale_metadata}
    chunks = [min(chunk, n) for n in size]
    schema: dict[str, Any] = {"domain": {"labels": ["x", "y", "z"]}}
    if voxel_size.unit:
        from skoots_export.contract.units import LENGTH_UNITS

        symbol = LENGTH_UNITS[voxel_size.unit][0]
        x, y, z = voxel_size.xyz
        schema["dimension_units"] = [[y, symbol], [x, symbol], [z, symbol]]
    return {"driver": "n5", "kvstore": url.kvstore(), "create": True, "schema": schema,
            "metadata": {"dimensions": size, "blockSize": chunks, "dataType": dtype.name, "compression": {"type": "gzip"}}}


def scale_factors(created: dict[str, Any]) -> list[tuple[int, int, int]]:
    """The factors (runtime X, Y, Z) from each scale of the output `spec` ``created`` (level 0)
    makes to the next, one per scale above level 0 (downsample.py); none for N5."""
    from .downsample import scale_sizes

    made = created.get("scale_metadata")  # its chunk: `spec`'s, capped by a size no larger (then no scale is added)
    return [(f[1], f[0], f[2]) for _, f in scale_sizes(made["size"], made["resolution"], max(made["chunk_size"]))[1:]] if made else []


def _file_order_values(values_xyz: Sequence[float]) -> list[float]:
    x, y, z = (float(v) for v in values_xyz)
    return [y, x, z]


def offset_attribute(offset: Sequence[float], voxel_size: Any) -> list[float]:
    """An N5 ``offset`` attribute: ``offset`` (runtime X, Y, Z voxels) physical, x, y, z, in the
    units of its ``resolution`` (voxels without one), the convention Paintera and N5-ImageJ read."""
    sizes = _file_order_values(voxel_size.xyz) if voxel_size is not None and voxel_size.unit else [1.0, 1.0, 1.0]
    return [float(f"{o * s:.12g}") for o, s in zip(_file_order_values(offset), sizes)]


def add_offset(url: StoreUrl, format: str, offset: Sequence[float] | None, voxel_size: Any) -> None:
    """State ``offset`` in an N5 output's ``attributes.json`` (`offset_attribute`).
    Precomputed outputs carry it in `spec`."""
    if format != "n5" or offset is None or not any(offset):
        return
    kv = _kv(url)
    attributes = json.loads(bytes(kv.read("attributes.json").result().value))
    attributes["offset"] = offset_attribute(offset, voxel_size)
    kv.write("attributes.json", json.dumps(attributes).encode()).result()


def open_output(url: StoreUrl, format: str) -> Any:
    """The output at ``url`` (being written) in file order, for writing regions into; indices
    count from its first voxel (a precomputed ``voxel_offset`` is metadata only)."""
    import tensorstore as ts

    try:
        store = done(ts.open({"driver": "neuroglancer_precomputed" if format == "precomputed" else "n5", "kvstore": url.kvstore(),
                             "open": True}, write=True, context=context()), url)
        return store[ts.d[:].translate_to[0]]  # regions count from the corner, whatever the voxel_offset
    except ValueError as e:
        raise explain(e, url, "output", OutputError) from e


def write_region(store: Any, region_xyz: Sequence[tuple[int, int]], labels_xyz: np.ndarray) -> None:
    """Write runtime ``[X, Y, Z]`` labels at ``region_xyz`` of an output in file order."""
    (x0, x1), (y0, y1), (z0, z1) = region_xyz
    data = np.ascontiguousarray(labels_xyz.transpose(1, 0, 2)).astype(store.dtype.numpy_dtype, copy=False)
    if store.rank == 4:
        data = data[..., None]
    store[y0:y1, x0:x1, z0:z1].write(data).result()


def segment_properties(properties: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Neuroglancer ``segment_properties`` from the instance table's rows (``label-value`` and
    columns): every numeric column as a ``number`` property, and a ``label`` that names each
    object's volume and skeleton length, which Neuroglancer shows beside its id."""
    ids = [str(int(row["label-value"])) for row in properties]
    columns = [k for k in (properties[0] if properties else {}) if k != "label-value"]
    numbers = []
    for key in columns:
        values = [row[key] for row in properties]
        if not all(isinstance(v, (int, float, bool, np.number, np.bool_)) for v in values):
            continue
        numbers.append({"id": key, "type": "number", "data_type": "float32", "values": [float(v) for v in values]})
    volume = next((k for k in columns if k.startswith("volume")), None)
    length = next((k for k in columns if k.startswith("skeleton_length")), None)
    named = [(what, k, k.rsplit("_", 1)[-1]) for what, k in (("volume", volume), ("length", length)) if k is not None]
    labels = [", ".join(f"{what} {row[k]:.4g} {unit}" for what, k, unit in named) for row in properties]
    inline: dict[str, Any] = {"ids": ids, "properties": [{"id": "label", "type": "label", "values": labels}, *numbers]}
    return {"@type": "neuroglancer_segment_properties", "inline": inline}


def add_properties(url: StoreUrl, properties: Sequence[dict[str, Any]] | None) -> None:
    """Write ``segment_properties/info`` and name it in the precomputed ``info``."""
    if not properties:
        return
    kv = _kv(url)
    info = json.loads(bytes(done(kv.read("info"), url).value))
    done(kv.write("segment_properties/info", json.dumps(segment_properties(properties)).encode()), url)
    info["segment_properties"] = "segment_properties"
    done(kv.write("info", json.dumps(info).encode()), url)


@contextlib.contextmanager
def staged_store(url: StoreUrl, overwrite: bool) -> Iterator[StoreUrl]:
    """Yield a hidden location beside ``url`` to write to; on success publish it at ``url``.
    A failure leaves nothing at ``url`` and removes the staging location."""
    from ..atomic import replace

    format = output_format(url)
    if url.local is not None:
        folder = Path(tempfile.mkdtemp(prefix=f".{url.name}.partial-", dir=url.local.parent))
        try:
            yield StoreUrl(str(folder / url.name), "file", "", str(folder / url.name), format)
            if url.local.exists() and any(url.local.iterdir()) and not overwrite:  # an empty folder is replaced
                raise OutputError(f"--out {url} exists; pass --overwrite to replace it")
            replace(folder / url.name, url.local)
        except OSError as e:
            raise OutputError(f"cannot write {url}: {e.strerror or e}") from e
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    parent = url.path.rstrip("/").rsplit("/", 1)[0] if "/" in url.path.strip("/") else ""
    hidden = f"{parent}/.{url.name}.partial-{uuid.uuid4().hex[:8]}".lstrip("/")
    staging = StoreUrl(f"{url.scheme}://{url.host}/{hidden}", url.scheme, url.host, hidden, format, url.s3_endpoint)
    check_bucket(url)  # a bucket gone since the run began: one line, not TensorStore's create loop on it
    try:
        yield staging
        publish(staging, url, format, overwrite)
    finally:
        _delete_all(staging)


def _delete_all(url: StoreUrl) -> None:
    import tensorstore as ts

    with contextlib.suppress(Exception):
        done(_kv(url).delete_range(ts.KvStore.KeyRange()), url)


def publish(staging: StoreUrl, url: StoreUrl, format: str, overwrite: bool) -> None:
    """Copy every object of ``staging`` to ``url`` (S3 and GCS have no rename), the metadata
    last; what was at ``url`` (with ``overwrite``) is removed first, its metadata first."""
    import tensorstore as ts

    source, target = _kv(staging), _kv(url)
    try:
        old = done(target.read(METADATA[format]), url).state == "value"
        if old and not overwrite:
            raise OutputError(f"--out {url} exists; pass --overwrite to replace it")
        if old or done(target.list(), url):
            done(target.delete_range(ts.KvStore.KeyRange(METADATA[format], METADATA[format] + "\0")), url)
            done(target.delete_range(ts.KvStore.KeyRange()), url)
        # The metadata last, once every chunk is in: a reader never opens a half-copied volume.
        keys = done(source.list(), url)
        for last in (False, True):
            batch = [key for key in keys if (key.decode() == METADATA[format]) == last]
            write_all(target, url, ((key, done(source.read(key), url).value) for key in batch), in_flight=32)
    except ValueError as e:
        raise explain(e, url, "store", OutputError) from e


def regions(shape_xyz: Sequence[int], step_xyz: Sequence[int]) -> list[Region]:
    """The boxes of ``step_xyz`` (a shard or chunk, in the runtime's X, Y, Z) tiling the volume."""
    starts = [range(0, n, s) for n, s in zip(shape_xyz, step_xyz)]
    return [tuple((lo, min(lo + s, n)) for lo, s, n in zip(at, step_xyz, shape_xyz)) for at in itertools.product(*starts)]  # type: ignore[misc]


def write_step(shape_xyz: Sequence[int], write_chunk: Sequence[int], most: int = 64 << 20) -> tuple[int, int, int]:
    """A box of whole shards (or chunks), grown along the runtime's Y and X while it holds at
    most ``most`` bytes of uint32: each is copied once to file order, so writing never holds
    more than one box beside the labels."""
    fx, fy, fz = (int(n) for n in write_chunk[:3])  # file order: x (the runtime's Y), y, z
    step = [fy, fx, fz]
    for axis in (1, 0):
        while step[axis] < shape_xyz[axis] and 8 * step[0] * step[1] * step[2] <= most:
            step[axis] *= 2
    return step[0], step[1], step[2]


def write_boxes(shape_xyz: Sequence[int], write_chunk: Sequence[int], most: int = 64 << 20) -> list[Region]:
    """The boxes of `write_step` tiling the volume."""
    return regions(shape_xyz, write_step(shape_xyz, write_chunk, most))


def write_store_labels(url: StoreUrl, labels_xyz: np.ndarray, *, overwrite: bool = False, voxel_size: Any = None,
                 properties: Sequence[dict[str, Any]] | None = None, offset: Sequence[float] | None = None,
                 skeletons: tuple[dict[str, Any], dict[int, bytes]] | None = None,
                 before_publish: Callable[[StoreUrl], Any] | None = None, **layout: Any) -> StoreUrl:
    """Write runtime ``[X, Y, Z]`` labels at ``url`` as precomputed or N5, staged then published,
    their first voxel at ``offset`` (runtime X, Y, Z voxels); with ``skeletons`` (their info and
    encoded objects by id) a precomputed output's ``skeletons/`` source too. ``before_publish``
    is called with the staged volume once it is whole, to add to it (the meshes: stores/meshes.py).
    ``layout`` overrides ``chunk``, ``shard_log2`` and ``shard_past`` (tests, benchmarks)."""
    import tensorstore as ts

    from ..voxel_size import UNKNOWN_VOXEL_SIZE
    from .downsample import mode_downsample

    format = output_format(url)
    check_store_destination(url, overwrite)
    with staged_store(url, overwrite) as target:
        made = functools.partial(spec, target, format, labels_xyz.shape, labels_xyz.dtype, voxel_size or UNKNOWN_VOXEL_SIZE,
                                 offset=offset, **layout)
        level = labels_xyz
        for scale, factor in enumerate([(1, 1, 1), *scale_factors(made())]):  # the precomputed pyramid's scales, level 0 first
            level = mode_downsample(level, factor) if scale else level
            try:
                store = done(ts.open(made(scale=scale), context=context()), url)
                store = store[ts.d[:].translate_to[0]]  # regions count from the corner, whatever the voxel_offset
            except ValueError as e:
                raise explain(e, url, "output", OutputError) from e
            for region in write_boxes(level.shape, store.chunk_layout.write_chunk.shape):
                write_region(store, region, level[tuple(slice(lo, hi) for lo, hi in region)])
        add_offset(target, format, offset, voxel_size)
        if format == "precomputed":
            if skeletons is not None:
                from .skeleton_objects import add_skeletons

                add_skeletons(target, *skeletons)
            add_properties(target, properties)
        if before_publish is not None:
            before_publish(target)
    return url
