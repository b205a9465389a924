"""Blockwise ``segment``: the four stages as Dask computations over blocks, one after the other.

infer (+ each block's own labels) → label (face equivalences, one union-find here) → assign →
renumber + write (→ mesh + manifest with ``--meshes``, meshing.py; skeleton + skeleton-merge with ``--skeletons``,
skeleton_run.py). A block is labelled by the task that inferred it, while its skeleton is in
memory: the skeleton is never stored, and labelling costs no stage of its own (labelling every
block before any is assigned is what the contract needs, and this is where it pays most).
Each stage is a set of independent tasks (stages.py) submitted at once; a stage starts when the
one before it has finished: every block's faces must be joined before any block can be
assigned, and assignment reads neighbouring blocks, so overlapping the later stages would only
pay while the last blocks of a stage run, at the cost of a dependency graph per block that a
resumed run would have to rebuild. Finished blocks are marked in the work directory; a run
with ``--resume`` does only the blocks not marked. This process holds the per-block label
tables and each component's first appearance: O(components + blocks), never a volume.

One entry point, `segment_job`, with the job
built from the plan (`Job.from_plan`); one
function per stage after it. The per-block work is in stages.py, running a stage on the
cluster in stage_runner.py, the cluster in cluster.py, where the labels go in output.py.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import postprocess
from ..errors import BlockFailures, ClientError, Interrupted, OutputError
from ..progress import Cancelled, Watch
from ..run_stats import RunStats
from ..stores.export import InPlace
from . import meshing, stages
from .blocks import grow
from .cluster import dask_client, worker_count, worker_losses
from .equivalence import components, global_order
from .job import Job
from .output import Target, check_tiff_fits, create_target, deliver, discard, gather_labels, kept
from .skeleton_run import keep_tables, run_skeletons
from .stage_runner import StageRunner, still_done
from .store import FORMAT, BlockStore
from .worker import release

__all__ = ["segment_job", "Firsts"]


def segment_job(job: Job, watch: Watch) -> RunStats:
    """Segment ``job.volume`` block by block on a Dask cluster and write the labels to
    ``job.output``'s ``out``, or with ``labels_into`` into ``IMAGE/labels/NAME`` with the
    image's levels, axes and transformations (the in-memory writer's, bitwise). The one entry
    point of the blockwise engine: the stages in order, one function each.

    The work directory (``job.work``) is removed once the labels are in place; after a failure
    it is kept with ``job.resume`` (its finished blocks are reused by the next run with
    ``--resume``) and removed without — except when blocks failed after their retries
    (`BlockFailures`, one line per block, the run's ``RunStats`` as its ``stats``): the other
    blocks of the stage finish, and the work directory is kept, resume or not, so that a run
    with ``--resume`` redoes only the failed and unfinished blocks. The output states ``job.voxel_size`` (an ``.ome.zarr``
    one as NGFF ``ngff_version``) as the in-memory writer does. Raises ``ClientError``
    subclasses. With ``output.table`` the instance table is measured block by block
    (``result.table``; an ``.ome.zarr`` output gets its rows as NGFF properties). Instances of
    fewer than ``min_size`` voxels, summed over the blocks they cross, become background. The
    labels are ``postprocess.labels_dtype(instances, labels_dtype)``, as in memory. A failure
    once the labels are complete keeps the work directory, resume or not, and says where the
    labels are: a run with ``--resume`` finishes writing them. What the run says goes to ``watch``.
    """
    output = job.output
    if output.out is not None:
        check_tiff_fits(output.out, job.shape, labels_dtype=output.labels_dtype.value)
    store = BlockStore(job.work, {**job.fingerprint, "format": FORMAT, "blocks": list(job.per_block)})
    store.check()
    if not job.resume and store.exists():
        raise OutputError(f"work directory {store} is left from an earlier run; pass --resume to continue it, or remove it")
    with dask_client(job.scheduler, workers=job.workers, threads_per_worker=job.threads, say=watch.note, cluster=job.cluster,
                     cluster_options=job.cluster_options, max_jobs=job.max_jobs) as client:
        grid = job.grid
        store.create()
        tile = tuple(max(n, job.parameters.minimum_size) for n in grid.crops[0].size)  # as in memory: padded to the minimum
        result = RunStats(crops=len(grid.crops), blocks=len(grid.blocks), workers=worker_count(client), block=grid.largest,
                          tile=tile)
        result.totals.update(dict.fromkeys(("infer", "label", "assign"), len(grid.blocks)), write=len(grid.write_regions()))
        since = time.time()
        targets: list[Target] = []
        try:
            _stages(StageRunner(client, job, store, result, watch), targets)
        except BaseException as e:
            store.close()
            if isinstance(e, BlockFailures):
                raise  # the finished blocks are kept, resume or not: its message says how to finish them
            error = Interrupted("interrupted") if isinstance(e, KeyboardInterrupt) else e  # Ctrl-C: one line, no traceback
            if result.labels_at is not None and isinstance(error, Exception):  # never lose finished labels
                reason = str(error) if isinstance(error, ClientError) else f"writing the labels failed ({type(error).__name__}: {error})"
                raise OutputError(f"{reason} — {result.labels_at}; run again with --resume to finish writing them from {store}") from e
            if job.resume:
                if isinstance(error, ClientError):
                    raise type(error)(f"{error} — finished blocks are kept in {store}; run again with --resume to continue") from e
            else:
                for target in targets:  # what the write stage wrote, never published
                    discard(target)
                store.remove()
                if isinstance(error, ClientError) and not isinstance(error, Cancelled):
                    raise type(error)(f"{error} — with --resume a run keeps its finished blocks and a rerun continues from them") from e
            raise
        finally:
            result.workers_lost, result.rerun = worker_losses(client, since)  # (0, 0) when the scheduler cannot say
            if job.scheduler is not None:  # workers that outlive this run keep no endpoints, models or buffers
                with contextlib.suppress(Exception):
                    client.run(release)
    store.remove()
    return result


def _stages(stage: StageRunner, targets: list[Target]) -> None:
    """The stages in the order they run, each one's results feeding the next (``targets``: the
    destination once made, for the caller's cleanup)."""
    names = [b.name for b in stage.job.grid.blocks]
    tables: list[np.ndarray] = []
    dtype = np.dtype(np.uint32)
    skeletons = stage.job.output.skeletons
    if len(still_done(stage, "assign", names)) < len(names):
        counts = _infer(stage)
        tables, dtype = _label(stage, counts)
        if skeletons:
            keep_tables(stage.store, names, tables)
    else:  # a resumed run past assign: infer's intermediates are gone, and nothing after needs them
        stage.run("infer", [], len(names))
        stage.result.skipped = sum(note.get("skipped", 0) for _, note in stage.store.done("infer").values())
    firsts = _assign(stage, tables, dtype)
    _drop(stage.store, [k for k in stages.INFERRED if not (skeletons and k == "labels")])  # --skeletons: the skeleton's, kept
    numbering = _order(stage, firsts)
    target = create_target(stage, numbering.dtype)
    targets.append(target)
    labels = _write(stage, target, firsts, numbering)
    if stage.job.output.meshes:
        _meshes(stage, target)
    if target.ome:
        _write_pyramid(stage, target)
    if target.destination.store is not None and target.destination.store.scales:
        _write_scales(stage, target.destination.store)
    lengths = run_skeletons(stage, target, firsts, numbering.keys, numbering.ranks, numbering.dtype) if skeletons else None
    stage.result.labels_at = kept(target, stage.store)
    deliver(stage, target, labels, lengths)


def _drop(store: BlockStore, kinds: Sequence[str]) -> None:
    """Delete every block's intermediates of ``kinds``: once a stage has read them, scratch is
    only what later stages still need."""
    for kind in kinds:
        for key in store.keys(kind):
            store.delete(key)


def _infer(stage: StageRunner) -> dict[str, int]:
    """Infer every block not finished (and label it within); the count of its own labels per block."""
    job, result = stage.job, stage.result
    names = [b.name for b in job.grid.blocks]
    done = still_done(stage, "infer", names)
    inferred = stage.run("infer", [(b.name, stages.infer_block, (job, b.index)) for b in job.grid.blocks if b.name not in done], len(names))
    result.skipped = sum(v[1].get("skipped", 0) for v in done.values()) + sum(v["skipped"] for v in inferred.values())
    # --fill-missing: chunks read as zeros, each once however many blocks (on however many workers) read it
    result.filled = len({tuple(chunk) for v in inferred.values() for chunk in v.get("filled", ())})
    return {**{k: v[1]["count"] for k, v in done.items()}, **{k: v["count"] for k, v in inferred.items()}}


def _label(stage: StageRunner, counts: dict[str, int]) -> tuple[list[np.ndarray], np.dtype]:
    """Join the blocks' labels across their faces: each block's table to the volume's components,
    and the dtype that holds them."""
    grid = stage.job.grid
    names = [b.name for b in grid.blocks]
    order = {b.index: i for i, b in enumerate(grid.blocks)}
    pairs = stage.run("label", [(b.name, stages.block_pairs, (stage.job, b.index)) for b in grid.blocks], len(names))
    started = time.perf_counter()
    edges = [(order[b.index], order[after], p) for b in grid.blocks for after, p in pairs[b.name] if len(p)]
    tables, count = components([counts[n] for n in names], edges)
    stage.result.seconds["label"] += time.perf_counter() - started
    return tables, np.dtype(np.uint32 if count < 2**32 else np.uint64)


Firsts = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # per block: its components, where each first appears, its size


def _assign(stage: StageRunner, tables: list[np.ndarray], dtype: np.dtype) -> Firsts:
    """Assign every block not finished; each block's components' first appearances."""
    job, grid = stage.job, stage.job.grid
    names = [b.name for b in grid.blocks]
    order = {b.index: i for i, b in enumerate(grid.blocks)}
    done = still_done(stage, "assign", names)
    firsts = {n: tuple(v.values()) for n, v in stage.store.load_npz_many("firsts", done, ["labels", "at", "size"]).items()}
    calls = []
    for b in grid.blocks:
        if b.name in done:
            continue
        reach = [nb.index for nb in grid.overlapping(grow(b.region, job.label_halo, job.shape))]
        calls.append((b.name, stages.assign_block, (job, b.index, {i: tables[order[i]] for i in reach}, dtype)))
    for name, value in stage.run("assign", calls, len(names)).items():
        firsts[name] = (value["labels"], value["at"], value["size"])
    return firsts  # type: ignore[return-value]


@dataclass(frozen=True)
class _Numbering:
    """The surviving components in the volume's order of first appearance, and the labels' dtype."""

    keys: np.ndarray
    ranks: np.ndarray
    dtype: np.dtype


def _order(stage: StageRunner, firsts: Firsts) -> _Numbering:
    """Number the components that survive ``--min-size`` in the volume's order of first appearance."""
    job, result = stage.job, stage.result
    started = time.perf_counter()
    names = [b.name for b in job.grid.blocks]
    kept = _large_enough([firsts[n] for n in names], job.output.min_size)
    surviving = []
    for name in names:
        labels, at, _ = firsts[name]
        keep = np.isin(labels, kept)
        surviving.append((labels[keep], at[keep]))
    keys, ranks = global_order(surviving)
    result.instances = len(keys)
    labels_dtype = job.output.labels_dtype.value
    widened = postprocess.labels_dtype_note(len(keys), labels_dtype)
    if widened:
        result.notes.append(widened)
    result.seconds["order"] = time.perf_counter() - started
    return _Numbering(keys, ranks, postprocess.labels_dtype(len(keys), labels_dtype))


def _write(stage: StageRunner, target: Target, firsts: Firsts, numbering: _Numbering) -> np.ndarray | None:
    """Renumber and write every write region not finished straight into the destination
    (measured too, with a table); a TIFF's labels, which the tasks do not write, gathered here."""
    job, result, grid = stage.job, stage.result, stage.job.grid
    started = time.perf_counter()
    measure = job.output.table is not None
    keys, ranks = numbering.keys, numbering.ranks
    destination = target.destination
    regions = destination.regions()
    region_names = [stages.region_name(r) for r in regions]
    tables = {}
    for region, name in zip(regions, region_names):
        present = np.unique(np.concatenate([firsts[b.name][0] for b in grid.overlapping(region)] or [np.zeros(0, keys.dtype)]))
        at = np.minimum(np.searchsorted(keys, present), max(len(keys) - 1, 0))
        tables[name] = (present, np.where(np.isin(present, keys), ranks[at] if len(keys) else 0, 0))  # removed by --min-size: 0
    memory = destination.kind == "memory"
    done = {name: (0, {}) for name in region_names} if memory and not measure else still_done(stage, "write", region_names, destination)
    if measure:  # a block written by a run without --table is written again, and measured
        done = {k: v for k, v in done.items() if stage.store.exists(f"stats/{k}.npz")}
    result.labelled = sum(v[1].get("labelled", 0) for v in done.values())
    calls = [(name, stages.write_block, (job, region, *tables[name], numbering.dtype, destination, measure))
             for region, name in zip(regions, region_names) if name not in done]
    result.seconds["order"] += time.perf_counter() - started
    result.labelled += sum(v["labelled"] for v in stage.run("write", calls, len(regions)).values())
    if not memory:
        return None
    started = time.perf_counter()
    labels = gather_labels(stage, tables, numbering.dtype)
    if not measure:
        result.labelled = int(np.count_nonzero(labels))
    result.seconds["write"] = result.seconds.get("write", 0.0) + time.perf_counter() - started
    return labels


def _meshes(stage: StageRunner, target: Target) -> None:
    """Mesh every write region not finished from its written labels (meshing.py), then write
    the manifests of every meshed id, a group of ids per task."""
    job, destination = stage.job, target.destination
    regions = {stages.region_name(r): r for r in destination.regions()}
    done = still_done(stage, meshing.STAGE, list(regions), destination)
    meshed = [(name, meshing.mesh_region, (job, name, region, destination)) for name, region in regions.items() if name not in done]
    stage.run(meshing.STAGE, meshed, len(regions))
    started = time.perf_counter()
    ids = {name: arrays["ids"] for name, arrays in stage.store.load_npz_many(meshing.IDS, regions, ["ids"]).items()}
    groups = meshing.manifest_groups(ids, regions)
    stage.result.seconds[meshing.STAGE] += time.perf_counter() - started
    done = still_done(stage, meshing.MANIFEST_STAGE, [g.name for g in groups], destination)
    listed = [(g.name, meshing.write_manifest_group, (job, g, destination)) for g in groups if g.name not in done]
    stage.run(meshing.MANIFEST_STAGE, listed, len(groups))


def _large_enough(firsts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], min_size: int) -> np.ndarray:
    """The instances (sorted) whose voxels, summed over the blocks' ``(labels, at, size)``,
    number at least ``min_size``: what survives ``--min-size``, as in the in-memory mode."""
    labels = np.concatenate([f[0] for f in firsts]) if firsts else np.zeros(0, np.uint64)
    sizes = np.concatenate([f[2] for f in firsts]) if firsts else np.zeros(0, np.int64)
    unique, inverse = np.unique(labels, return_inverse=True)
    total = np.bincount(inverse.ravel(), weights=sizes, minlength=len(unique))
    return unique[total >= min_size]


def _write_pyramid(stage: StageRunner, target: Target) -> None:
    """The levels above 0 of an ``.ome.zarr`` (as create_labels_array made them), sampled from
    its written level 0 one region of a level's chunks at a time (pyramid.py)."""
    from .pyramid import level_region_name, level_regions, write_level_region

    axes = stage.job.grid.axes
    levels = target.levels
    regions = level_regions(levels, target.chunks_zxy, (axes[2].write, axes[0].write, axes[1].write))
    if not regions:
        return
    names = [level_region_name(path, region) for path, region in regions]
    done = still_done(stage, "pyramid", names, str(target.path))
    stage.run("pyramid", [(name, write_level_region, (stage.job, str(target.path), path, region, levels[0].path))
                          for name, (path, region) in zip(names, regions) if name not in done], len(names))


def _write_scales(stage: StageRunner, placed: InPlace) -> None:
    """The scales above level 0 of a precomputed output, each from the one below, one scale's
    regions (whole shards or chunks of it) at a time (precomputed_pyramid.py)."""
    from .precomputed_pyramid import scale_region_name, scale_regions, write_scale_region

    result = stage.result
    done_total = resumed_total = total = 0
    for scale in range(1, len(placed.scales) + 1):
        regions = scale_regions(placed, scale)
        names = [scale_region_name(scale, region) for region in regions]
        done = still_done(stage, "pyramid", names, placed)
        stage.run("pyramid", [(name, write_scale_region, (stage.job, placed, scale, region))
                              for name, region in zip(names, regions) if name not in done], len(names))
        done_total, resumed_total, total = done_total + result.done["pyramid"], resumed_total + len(done), total + len(names)
    result.done["pyramid"], result.resumed["pyramid"], result.totals["pyramid"] = done_total, resumed_total, total
