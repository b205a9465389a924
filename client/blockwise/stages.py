"""The per-block work of each stage, run in Dask worker processes: read a block (and its halos)
from the work directory, call the step functions of ``postprocess.py``, write the block, mark it.
Intermediates are small (store.py): what a block decides alone is resolved at infer
(resolve.py), kept dense and compressed with the vectors' shell that its neighbours read and
its assigned ids (encoding.py); its skeleton labels stay sparse (sparse.py).

Every function here is a plain function of a picklable `Job` and a block index; the
Dask layer (pipeline.py) only maps them. What cannot travel (endpoints, the open volume, Zarr
handles) is opened once per worker process and cached. A task's writes are idempotent, so a
task rerun after its worker died, or by a second run, writes the same bytes.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import postprocess
from ..atomic import crc
from ..endpoints import open_endpoints
from ..in_memory import infer_pieces, reference_interior
from ..skip import skip_rule
from ..specs import ModelSpec
from ..stores.export import InPlace
from ..volume_read import missing_chunks
from . import encoding, meshing, resolve, sparse
from .blocks import Block, Region, grow
from .destination import Destination, read, write
from .equivalence import face_pairs
from .job import Job, StoredAnswers
from .pyramid import verify as verify_region
from .store import Stage
from .worker import cached, endpoints, report, scratch, set_threads

__all__ = [
    "DENSE", "INFERRED", "infer_block", "stored_answers", "block_pairs", "gather", "assign_block", "region_name", "write_block", "Verifier",
    "verify_infer", "verify_assign", "verify_write", "verify_pyramid", "VERIFIERS",
]


def _endpoints(source: ModelSpec) -> list[Any]:
    def connect() -> list[Any]:
        return open_endpoints(source)[0]

    return endpoints(source, connect)


def _volume(job: Job) -> Any:
    from ..roi import cut
    from ..volume_read import read_volume

    return cached(("volume", job.volume, job.channel, job.axes, job.fill_missing, job.roi),
                  lambda: cut(read_volume(job.volume, job.channel, job.axes, check_finite=False, fill_missing=job.fill_missing), job.roi))


def _local(region: Region, within: Region) -> tuple[slice, slice, slice]:
    return tuple(slice(lo - o, hi - o) for (lo, hi), (o, _) in zip(region, within))  # type: ignore[return-value]


def _extent(region: Region) -> tuple[int, ...]:
    return tuple(hi - lo for lo, hi in region)


# --- infer -----------------------------------------------------------------------------------

def infer_block(job: Job, index: tuple[int, int, int]) -> dict[str, Any]:
    """Steps 1-6 for the crops of one block, and step 7 within it: its stitched vectors and its
    dilated skeleton's own 6-connected labels, kept sparse, with the labels' six boundary planes.
    Crops that ``--mask`` / ``--skip-below`` rule out are not inferred and stay background, as
    in the in-memory mode."""
    started = time.perf_counter()
    set_threads(job.threads)
    block = job.grid.block(index)
    skeleton = scratch("small", _extent(block.region), np.uint8)
    vectors = scratch("vectors", (3, *skeleton.shape), np.float16)
    crops, filled = block.crops, []
    if isinstance(job.source, StoredAnswers):
        skeleton[...], vectors[...] = stored_answers(job.source.path, block.region, job.shape)
    elif block.crops:
        import torch

        from ..volume import release_pages

        torch.set_num_threads(max(1, job.source.threads or job.threads))
        volume = _volume(job)
        before = missing_chunks(volume)
        if job.mask is not None or job.skip_below is not None:
            rule = cached(("skip", job.mask, job.skip_below), lambda: skip_rule(job.mask, job.skip_below)[0])
            crops = tuple(crop for crop in crops if not rule.skips(volume, crop))
        for batch, pieces in infer_pieces(volume, crops, job.parameters, _endpoints(job.source), job.normalization,
                                         batch_size=job.batch_size):
            for crop, piece in zip(batch, pieces):
                where = _local(crop.owned, block.region)
                skeleton[where] = piece.skeleton
                vectors[(slice(None), *where)] = piece.vectors
        release_pages(volume)  # a memory-mapped input's pages read for this block: not this worker's to keep
        filled = sorted(missing_chunks(volume) - before)  # chunks this block read as zeros (--fill-missing), by grid index
    labels, count = postprocess.label_skeleton(skeleton)  # step 7 within the block, while it is at hand
    del skeleton
    p = job.parameters
    own, landed_at, landed_to = resolve.resolve_block(vectors, labels, block.region, job.shape, p.vector_scaling, p.embedding_iterations)
    store = job.store
    at, values = sparse.to_sparse(labels)
    faces = {f"{side}{axis}": np.ascontiguousarray(np.take(labels, i, axis=axis)) for axis in range(3) for side, i in (("lo", 0), ("hi", -1))}
    del labels
    store.save_sparse("labels", block.name, at, values)
    objects = {
        "faces": encoding.encode(np.concatenate([f.ravel() for f in faces.values()]).reshape(1, -1, 1, 1)),
        "own": encoding.encode(own),
        "landed": encoding.encode(np.stack([landed_at.astype(np.int64), landed_to]).reshape(2, -1, 1, 1)),
        "vectors": encoding.encode(resolve.keep_shell(vectors, block.region, job.shape,
                                                      resolve.shell_depths(p.vector_scaling, p.embedding_iterations, job.vector_halo))),
    }
    del own, vectors
    for kind, data in objects.items():
        store.put(_key(kind, block.name), data)
    skipped = len(block.crops) - len(crops)
    # own/landed stay out of the marker's CRC: they go once the block is assigned (and carry their own CRC)
    store.mark("infer", block.name, crc(at, values, *(np.frombuffer(objects[k], np.uint8) for k in ("faces", "vectors"))),
               {"crops": len(block.crops), "skipped": skipped, "count": count})
    return report(started, crops=len(block.crops), skipped=skipped, count=count, filled=filled)


def stored_answers(path: Path, region: Region, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A block of stored answers; answers smaller than the volume repeat periodically (so a
    benchmark can feed a volume too large to store answers for)."""
    import zarr

    answers = cached(("answers", path), lambda: zarr.open_group(str(path), mode="r"))
    skeleton, vectors = answers["skeleton"], answers["vectors"]
    if tuple(skeleton.shape) == tuple(shape):
        return skeleton[tuple(slice(lo, hi) for lo, hi in region)], vectors[(slice(None), *(slice(lo, hi) for lo, hi in region))]
    skeleton, vectors = cached(("answers-whole", path), lambda: (skeleton[...], vectors[...]))
    for axis, ((lo, hi), n) in enumerate(zip(region, skeleton.shape)):
        skeleton = np.take(skeleton, np.arange(lo, hi) % n, axis=axis)
        vectors = np.take(vectors, np.arange(lo, hi) % n, axis=axis + 1)
    return skeleton, vectors


# --- label: joins across faces ---------------------------------------------------------------

def block_pairs(job: Job, index: tuple[int, int, int]) -> list[tuple[tuple[int, int, int], np.ndarray]]:
    """Equivalences across the faces a block shares with the blocks after it."""
    block = job.grid.block(index)
    store = job.store
    out = []
    for axis, after in job.grid.neighbours_up(block):
        out.append((after.index, face_pairs(_faces(store, block)[f"hi{axis}"], _faces(store, after)[f"lo{axis}"])))
    return out


def _faces(store: Any, block: Block) -> dict[str, np.ndarray]:
    """A block's six boundary planes of its labels (``lo0`` .. ``hi2``), as infer stored them."""
    flat = encoding.decode(store.get(_key("faces", block.name))).ravel()
    x, y, z = _extent(block.region)
    out, at = {}, 0
    for axis, plane in enumerate(((y, z), (x, z), (x, y))):
        for side in ("lo", "hi"):
            out[f"{side}{axis}"] = flat[at:at + plane[0] * plane[1]].reshape(plane)
            at += plane[0] * plane[1]
    return out


# --- assign ----------------------------------------------------------------------------------

DENSE = ("vectors", "own", "landed", "assigned", "faces")  # kinds kept as compressed X-slab objects (encoding.py)
INFERRED = ("own", "landed", "vectors", "labels", "faces")  # infer's intermediates: read by label and assign, by nothing after


def _key(kind: str, name: str) -> str:
    return f"{kind}/{name}.bin"


def gather(job: Job, kind: str, region: Region, out: np.ndarray,
           relabel: Callable[[Block, np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """``out`` (zeros over ``region``) filled with the blocks' ``kind`` there, each block's
    values through ``relabel(block, values)`` when given (a block's labels → the volume's).

    Halos are several times a block and mostly background: the skeleton labels are scattered
    from the few nonzero voxels of the X planes they cover; a block's dense kinds (its vectors'
    shell, its assigned ids) are fetched as just the compressed X slabs that hold those planes."""
    for block in job.grid.overlapping(region):
        if kind in DENSE:
            part = tuple(slice(max(w0, b0) - b0, min(w1, b1) - b0) for (w0, w1), (b0, b1) in zip(region, block.region))
            into: tuple[Any, ...] = (Ellipsis, *(slice(max(w0, b0) - w0, min(w1, b1) - w0) for (w0, w1), (b0, b1) in zip(region, block.region)))
            convert = None if relabel is None else functools.partial(relabel, block)
            encoding.read_box(job.store, _key(kind, block.name), part, out[into], convert)
            continue
        at, values = job.store.load_sparse(kind, block.name)
        if relabel is not None:
            values = relabel(block, np.asarray(values))
        sparse.scatter(out, region, block.region, at, values)
    return out


def assign_block(
    job: Job, index: tuple[int, int, int], tables: dict[tuple[int, int, int], np.ndarray], dtype: Any,
    halos: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None,
) -> dict[str, Any]:
    """Steps 8-9 for one block, in global coordinates: the voxels its infer resolved through its
    table, the ones that landed outside it from the labels' halo, the pending ones walked again
    over the vectors' halo (resolve.py); returns each component's first appearance in the
    block. ``halos`` overrides docs/SEMANTICS.md's (tests show they matter)."""
    started = time.perf_counter()
    set_threads(job.threads)
    block = job.grid.block(index)
    label_halo, vector_halo = halos or (job.label_halo, job.vector_halo)
    labels_at = grow(block.region, label_halo, job.shape)
    vectors_at = grow(block.region, vector_halo, job.shape)
    store = job.store
    try:
        own, landed = (encoding.decode(store.get(_key(kind, block.name))) for kind in ("own", "landed"))
    except (OSError, ValueError):  # gone once this block was assigned (a rerun), or damaged: its infer again, bitwise
        infer_block(job, index)
        own, landed = (encoding.decode(store.get(_key(kind, block.name))) for kind in ("own", "landed"))
    landed = landed.reshape(2, -1)
    # Fresh zeros, not scratch: the skeleton is a few per mille of the halo, so most of its pages
    # are never touched (no fault, no memory), where a reused buffer would be all resident.
    components = gather(job, "labels", labels_at, np.zeros(_extent(labels_at), dtype), lambda b, v: tables[b.index][v])
    pending = bool((own == resolve.PENDING).any())
    vectors = gather(job, "vectors", vectors_at, scratch("vectors", (3, *_extent(vectors_at)), np.float16)) if pending else None
    p = job.parameters
    out = resolve.finish(own, tables[block.index], landed, (components, [lo for lo, _ in labels_at]),
                         None if vectors is None else (vectors, [lo for lo, _ in vectors_at]), block.region, job.shape,
                         p.vector_scaling, p.embedding_iterations, scratch("out", _extent(block.region), dtype))
    del vectors, components, own, landed
    if job.reference_borders:  # the reference's unwritten frame stays background
        postprocess.clear_outside(out, block.region, reference_interior(job.shape))
    data = encoding.encode(out)
    for kind in ("own", "landed"):  # read by this block's assign alone: scratch holds them or its ids, never both
        store.delete(_key(kind, block.name))
    store.put(_key("assigned", block.name), data)
    at, ids = sparse.to_sparse(out)
    del out
    values, linear = sparse.volume_first_appearances(at, ids, block.region, job.shape)
    size = postprocess.instance_sizes(ids, values)  # summed over blocks for --min-size
    store.save_npz("firsts", block.name, labels=values, at=linear, size=size)
    store.mark("assign", block.name, crc(np.frombuffer(data, np.uint8)), {"labels": int(len(values))})
    return report(started, labels=values, at=linear, size=size)


# --- renumber + write ------------------------------------------------------------------------

def region_name(region: Region) -> str:
    return ".".join(str(lo) for lo, _ in region)


def write_block(job: Job, region: Region, keys: np.ndarray, values: np.ndarray, dtype: Any, destination: Destination,
                measure: bool = False) -> dict[str, Any]:
    """Step 10 for one write region: each component's number in the volume's order of first
    appearance, written into whole chunks (or shards) of the destination itself. With
    ``measure``, the region's per-label sums for the instance table (with the raw intensities)
    are kept in ``stats/``: the regions are disjoint, so the client adds them up exactly."""
    started = time.perf_counter()
    labels = gather(job, "assigned", region, scratch("out", _extent(region), dtype),
                    lambda _, ids: postprocess.apply_table(ids, keys, values, dtype))
    write(destination, region, labels)
    if measure:
        from ..instances import PartialStats

        (x0, _), (y0, _), (z0, _) = region
        raw = np.asarray(_volume(job).data[tuple(slice(lo, hi) for lo, hi in region)]).transpose(2, 0, 1)
        stats = PartialStats.of_block(labels.transpose(2, 0, 1), (z0, x0, y0), raw)
        job.store.save_npz("stats", region_name(region), **vars(stats))
    labelled = int(np.count_nonzero(labels))
    job.store.mark("write", region_name(region), crc(labels), {"labelled": labelled})
    return report(started, labelled=labelled)


# --- resume: whether a block marked done still holds what its marker's CRC names ---------------

Verifier = Callable[[Job, str, int, Any], bool]  # the last: where the stage wrote (a Destination, a group's path)


def _unreadable_is_undone(check: Verifier) -> Verifier:
    """A stage's check, where anything unreadable means: do this block again."""
    @functools.wraps(check)
    def verify(job: Job, name: str, checksum: int, where: Any = None) -> bool:
        try:
            return check(job, name, checksum, where)
        except Exception:  # noqa: BLE001 - anything unreadable means: do this block again
            return False
    return verify


@_unreadable_is_undone
def verify_infer(job: Job, name: str, checksum: int, array_path: str | None = None) -> bool:
    """An inferred block: its sparse labels, faces and vectors' shell (its resolved labels and landings
    check themselves when assign reads them, and are gone once it is assigned)."""
    store = job.store
    objects = (np.frombuffer(store.get(_key(kind, name)), np.uint8) for kind in ("faces", "vectors"))
    return crc(*store.load_sparse("labels", name), *objects) == checksum


@_unreadable_is_undone
def verify_assign(job: Job, name: str, checksum: int, array_path: str | None = None) -> bool:
    """An assigned block: its ids, and its first appearances (read back by the client when it resumes)."""
    job.store.load_npz("firsts", name)
    return crc(np.frombuffer(job.store.get(_key("assigned", name)), np.uint8)) == checksum


@_unreadable_is_undone
def verify_write(job: Job, name: str, checksum: int, destination: Any = None) -> bool:
    """A written region: the labels in the destination (a `Destination`); a TIFF's regions
    are only measured, so their markers stand (their stats are checked by the client)."""
    if destination.kind == "memory":
        return True
    return crc(read(destination, destination.region(name))) == checksum


@_unreadable_is_undone
def verify_pyramid(job: Job, name: str, checksum: int, where: Any = None) -> bool:
    """A region of a lower resolution level of the output image at ``where`` (its path), or of a
    scale of a precomputed output (``where``: its `InPlace`)."""
    if isinstance(where, InPlace):
        from .precomputed_pyramid import verify

        return verify(where, name, checksum)
    return verify_region(str(where), name, checksum)


VERIFIERS: dict[Stage, Verifier] = {"infer": verify_infer, "assign": verify_assign, "write": verify_write,
                                    "pyramid": verify_pyramid, "mesh": _unreadable_is_undone(meshing.verify),
                                    "manifest": _unreadable_is_undone(meshing.verify_manifests)}
