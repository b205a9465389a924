"""``--skeletons`` blockwise: two stages after the write, each a set of independent tasks.

``skeleton``, per write region (+ one voxel on its far faces, so neighbouring fragments share
a plane of vertices: kimimaro's ``fix_borders`` centres them there alike): the region's
predicted skeleton voxels (infer's sparse ``labels``, kept for this stage) through the label
tables to their components, through the write stage's numbering to final ids, kept where the
voxel itself was assigned to that id (as in memory, client/in_memory.py); traced on the worker
(client/skeletons.py), fragments stored in the work store bucketed by id.
``skeleton-merge``, per id bucket: the bucket's fragments joined (osteoid ``simple_merge`` +
``consolidate``: the shared vertices become one), ``skeletons/{id}`` written into the output
in place (no reader sees them before ``publish`` writes the ``info``), each graph's length kept
for the table. No task holds more than a region or a bucket's graphs; done-markers make
``--resume`` skip finished ones.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from io import BytesIO
from typing import Any

import numpy as np

from .. import postprocess
from ..atomic import crc
from . import stages
from .blocks import Region
from .job import Job
from .store import Stage
from .worker import report, set_threads

__all__ = ["IDS_PER_BUCKET", "buckets_for", "grown", "region_table", "skeleton_region", "merge_bucket",
           "verify_skeleton", "verify_merge", "VERIFIERS", "FRAGMENTS", "LENGTHS"]

IDS_PER_BUCKET = 256  # ids per merge task: ~a few MB of fragments, and few objects per region
FRAGMENTS = "skeleton_fragments"  # FRAGMENTS/{bucket}/{region}: one region's graphs of a bucket's ids
LENGTHS = "skeleton_lengths"  # LENGTHS/{bucket}.npz: the merged graphs' lengths (nm), for the table


def buckets_for(instances: int) -> int:
    """How many merge tasks: one per `IDS_PER_BUCKET` ids (id ``i`` is in bucket ``i % n``)."""
    return max(1, -(-instances // IDS_PER_BUCKET))


def grown(region: Region, shape: Sequence[int]) -> Region:
    """``region`` with one more voxel on each far face (within the volume): the shared plane."""
    return tuple((lo, min(hi + 1, n)) for (lo, hi), n in zip(region, shape))  # type: ignore[return-value]


def region_table(firsts: Sequence[np.ndarray], keys: np.ndarray, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The components the blocks' first appearances name (``firsts``: each block's), and their
    final ids by the volume's numbering (``keys`` sorted, ``ranks``); 0 for those removed."""
    present = np.unique(np.concatenate(list(firsts) or [np.zeros(0, keys.dtype)]))
    at = np.minimum(np.searchsorted(keys, present), max(len(keys) - 1, 0))
    return present, np.where(np.isin(present, keys), ranks[at] if len(keys) else 0, 0)


def _lookup(values: np.ndarray, keys: np.ndarray, mapped: np.ndarray) -> np.ndarray:
    """``values`` through the sorted ``keys`` → ``mapped``; 0 and values not among the keys → 0."""
    if len(keys) == 0:
        return np.zeros(values.shape, mapped.dtype if mapped.size else np.uint32)
    at = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
    return np.where(keys[at] == values, mapped[at], 0)


def skeleton_region(job: Job, region: Region, tables: Mapping[tuple[int, int, int], np.ndarray], component_dtype: Any,
                    present: np.ndarray, final: np.ndarray, dtype: Any, buckets: int) -> dict[str, Any]:
    """Trace one write region's (grown by `grown`) instance skeletons and store them as
    fragments, one object per bucket of ids; mark the region done."""
    from ..skeletons import skeletonize

    started = time.perf_counter()
    set_threads(job.threads)
    box = grown(region, job.shape)
    extent = tuple(hi - lo for lo, hi in box)
    components = stages.gather(job, "labels", box, np.zeros(extent, component_dtype), lambda b, v: tables[b.index][v])
    ids = _lookup(components, present, final).astype(dtype, copy=False)
    del components
    assigned = stages.gather(job, "assigned", box, np.zeros(extent, dtype),
                             lambda _, v: postprocess.apply_table(v, present, final, dtype))
    ids[assigned != ids] = 0  # each instance's own skeleton: the voxels assigned to it
    del assigned
    origin = [int(o) + lo for o, (lo, _) in zip(job.offset or (0, 0, 0), box)]
    graphs = skeletonize(ids, job.voxel_size, origin, fix_borders=True)
    name = stages.region_name(region)
    by_bucket: dict[int, dict[int, Any]] = {}
    for segid, skeleton in graphs.items():
        by_bucket.setdefault(segid % buckets, {})[segid] = skeleton
    for bucket, part in sorted(by_bucket.items()):
        job.store.put(f"{FRAGMENTS}/{bucket}/{name}", _pack(part))
    job.store.mark("skeleton", name, crc(np.array(sorted(by_bucket), np.int64)), {"buckets": sorted(by_bucket)})
    return report(started, graphs=len(graphs))


def _pack(skeletons: Mapping[int, Any]) -> bytes:
    """Graphs as one npz: ids, vertex and edge counts, then everyone's vertices, edges, radii."""
    ids = np.array(sorted(skeletons), np.uint64)
    parts = [skeletons[int(i)] for i in ids]
    buffer = BytesIO()
    np.savez(buffer, ids=ids, nv=np.array([len(s.vertices) for s in parts], np.int64),
             ne=np.array([len(s.edges) for s in parts], np.int64),
             vertices=np.concatenate([np.asarray(s.vertices, np.float32).reshape(-1, 3) for s in parts] or [np.zeros((0, 3), np.float32)]),
             edges=np.concatenate([np.asarray(s.edges, np.uint32).reshape(-1, 2) for s in parts] or [np.zeros((0, 2), np.uint32)]),
             radius=np.concatenate([np.asarray(s.radius, np.float32) for s in parts] or [np.zeros(0, np.float32)]))
    return buffer.getvalue()


def _unpack(data: bytes) -> dict[int, Any]:
    from osteoid import Skeleton

    with np.load(BytesIO(data)) as f:
        ids, nv, ne, vertices, edges, radius = (f[k] for k in ("ids", "nv", "ne", "vertices", "edges", "radius"))
    out, v0, e0 = {}, 0, 0
    for segid, n, m in zip(ids.tolist(), nv.tolist(), ne.tolist()):
        skeleton = Skeleton(vertices[v0:v0 + n], edges[e0:e0 + m], radii=radius[v0:v0 + n], segid=segid, space="physical")
        skeleton.radius = radius[v0:v0 + n].astype(np.float32)
        out[int(segid)] = skeleton
        v0, e0 = v0 + n, e0 + m
    return out


def merge_bucket(job: Job, bucket: int, buckets: int, instances: int, url: Any) -> dict[str, Any]:
    """Join bucket ``bucket``'s fragments per id, write ``skeletons/{id}`` for each of its ids
    (an empty graph where none was traced) into the output at ``url``, keep their lengths, mark it."""
    from ..skeletons import encoded_objects, graph_lengths, merge_fragments
    from ..stores.skeleton_objects import skeleton_objects, write_objects
    from ..voxel_size import UNKNOWN_VOXEL_SIZE

    started = time.perf_counter()
    fragments: dict[int, list[Any]] = {}
    for key in job.store.keys(f"{FRAGMENTS}/{bucket}/"):
        for segid, skeleton in _unpack(job.store.get(key)).items():
            fragments.setdefault(segid, []).append(skeleton)
    merged = {segid: merge_fragments(parts) for segid, parts in fragments.items()}
    ids = np.arange(bucket if bucket else buckets, instances + 1, buckets, dtype=np.int64)
    written = write_objects(url, skeleton_objects(encoded_objects(merged, ids.tolist())))
    lengths = graph_lengths(merged, ids, UNKNOWN_VOXEL_SIZE)  # nm: the vertices' own unit
    job.store.save_npz(LENGTHS, str(bucket), ids=ids, lengths=lengths)
    job.store.mark("skeleton-merge", str(bucket), crc(lengths), {"bytes": written})
    return report(started, bytes=written)


def verify_skeleton(job: Job, name: str, checksum: int, where: Any = None) -> bool:
    """A traced region: its fragments are all still in the work store."""
    buckets = job.store.done("skeleton")[name][1].get("buckets", [])
    return all(job.store.exists(f"{FRAGMENTS}/{b}/{name}") for b in buckets)


def verify_merge(job: Job, name: str, checksum: int, where: Any = None) -> bool:
    """A merged bucket: its lengths, whose CRC the marker names (the objects went in before it)."""
    return crc(job.store.load_npz(LENGTHS, name)["lengths"]) == checksum


VERIFIERS: dict[Stage, stages.Verifier] = {"skeleton": verify_skeleton, "skeleton-merge": verify_merge}
