"""Blockwise ``segment``: the four stages as Dask computations over blocks, one after the other.

infer (+ each block's own labels) → label (face equivalences, one union-find here) → assign →
renumber + write. A block is labelled by the task that inferred it, while its skeleton is in
memory: the skeleton is never stored, and labelling costs no stage of its own (labelling every
block before any is assigned is what the contract needs, and this is where it pays most).
Each stage is a set of independent tasks (stages.py) submitted at once; a stage starts when the
one before it has finished: every block's faces must be joined before any block can be
assigned, and assignment reads neighbouring blocks, so overlapping the later stages would only
pay while the last blocks of a stage run, at the cost of a dependency graph per block that a
resumed run would have to rebuild. Finished blocks are marked in the work directory; a run
with ``--resume`` does only the blocks not marked. This process holds the per-block label
tables and each component's first appearance: O(components + blocks), never a volume.

One entry point, [`segment_job`][skoots_client.blockwise.pipeline.segment_job], with the job
built from the plan ([`Job.from_plan`][skoots_client.blockwise.job.Job.from_plan]); one
function per stage after it.

Not split: the stages in the order they run, with the checks and resume logic around them;
the per-block work is in stages.py, the cluster in cluster.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .. import memory as host, postprocess
from ..atomic import move_into_place
from ..errors import ClientError, Interrupted, OutputError
from ..progress import Cancelled, Watch
from ..run_stats import RunStats
from ..instances import label_properties
from ..ngff import Level, add_label_properties, create_labels_into, image_layout, install_labels, pyramid, read_zyx
from ..stores import is_store
from ..stores.export import export_labels
from ..label_write import create_labels_array, write_labels
from ..volume import TIFF_SUFFIXES
from ..voxel_size import VoxelSize
from . import stages
from .blocks import grow
from .cluster import ClusterError, dask_client, worker_count, worker_losses
from .equivalence import components, global_order
from .job import Job
from .store import FORMAT, BlockStore, Stage
from .worker import release, run_task


def check_tiff_fits(out: Path, shape: Sequence[int], memory: int | None = None, labels_dtype: str = "uint32") -> None:
    """A TIFF is written from labels in memory: refuse one that would not fit (naming .zarr)."""
    if out.name.lower().endswith(TIFF_SUFFIXES):
        need = np.dtype(labels_dtype).itemsize * int(np.prod(shape))
        if need > (memory if memory is not None else host.available_memory()) // 2:
            raise OutputError(
                f"--out {out}: a TIFF is written from labels held in memory ({need / 2**30:.1f} GiB) — use --out NAME.zarr or NAME.ome.zarr"
            )


class _Stage:
    """Submit one stage's tasks, draw its progress, gather results and worker peaks; with what
    every stage works on (the job, its work directory's store, the run's result)."""

    def __init__(self, client: Any, job: Job, store: BlockStore, result: RunStats, watch: Watch) -> None:
        self.client, self.job, self.store, self.result, self.watch = client, job, store, result, watch

    def run(self, name: str, calls: list[tuple[str, Callable[..., Any], tuple[Any, ...]]], total: int) -> dict[str, Any]:
        from distributed import KilledWorker, as_completed

        started = time.perf_counter()
        progress = self.watch.stage(name, f"{name} blocks")
        done = total - len(calls)
        progress(done, total)
        futures = {self.client.submit(run_task, fn, *args, key=_task_key(fn)): key for key, fn, args in calls}
        results: dict[str, Any] = {}
        try:
            for future, value in as_completed(futures, with_results=True):
                results[futures[future]] = value
                if isinstance(value, dict) and "rss" in value:
                    peaks = self.result.peaks
                    peaks[value["process"]] = max(peaks.get(value["process"], 0), value["rss"])
                done += 1
                progress(done, total)
        except KilledWorker as e:
            self.client.cancel(list(futures))
            raise ClusterError(
                f"Dask workers kept dying on {name} blocks ({e}) — out of memory? Give the workers more memory or pass a smaller --block"
            ) from e
        except BaseException as e:
            self.client.cancel(list(futures))
            if isinstance(e, Exception):  # a failure or Cancelled, not Ctrl-C: wait for what the caller will remove
                _wait_until_stopped(self.client, {future.key for future in futures})
            raise
        self.result.seconds[name] = self.result.seconds.get(name, 0.0) + time.perf_counter() - started
        self.result.done[name] = len(calls)
        self.result.resumed[name] = total - len(calls)
        return results


def _task_key(fn: Callable[..., Any]) -> str:
    """A unique task key named after the stage's function (what the dashboard shows)."""
    import uuid

    return f"{getattr(fn, '__name__', 'task')}-{uuid.uuid4().hex}"


def _executing(dask_worker: Any) -> list[str]:
    """The keys of the tasks a worker is running, those cancelled but not yet returned included."""
    return [str(task.key) for task in dask_worker.state.executing]


def _wait_until_stopped(client: Any, keys: set[Any], timeout: float = 120.0) -> None:
    """Wait (at most ``timeout`` seconds) until no worker runs any of ``keys``: Dask cannot stop a
    task that has started, and one still running would write into a work directory being removed."""
    keys = {str(k) for k in keys}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            running = client.run(_executing)
        except Exception:  # noqa: BLE001 - the cluster is gone: nothing runs
            return
        if not keys & {k for found in running.values() for k in found}:
            return
        time.sleep(0.05)


def _still_done(stage: _Stage, name: Stage, names: Sequence[str], array_path: str | None = None) -> dict[str, tuple[int, dict[str, Any]]]:
    """The markers of stage ``name`` among ``names`` whose data still checks out (checked on the workers)."""
    marked = {k: v for k, v in stage.store.done(name).items() if k in set(names)}
    if not marked:
        return {}
    client = stage.client
    futures = {client.submit(run_task, stages.verify, stage.job, name, k, v[0], array_path, key=_task_key(stages.verify)): k
               for k, v in marked.items()}
    ok = dict(zip(futures.values(), client.gather(list(futures))))
    return {k: v for k, v in marked.items() if ok[k]}


def segment_job(job: Job, watch: Watch) -> RunStats:
    """Segment ``job.volume`` block by block on a Dask cluster and write the labels to
    ``job.output``'s ``out``, or with ``labels_into`` into ``IMAGE/labels/NAME`` with the
    image's levels, axes and transformations (the in-memory writer's, bitwise). The one entry
    point of the blockwise engine: the stages in order, one function each.

    The work directory (``job.work``) is removed once the labels are in place; after a failure
    it is kept with ``job.resume`` (its finished blocks are reused by the next run with
    ``--resume``) and removed without. The output states ``job.voxel_size`` (an ``.ome.zarr``
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
    if not job.resume and store.path.exists():
        raise OutputError(f"work directory {store.path} is left from an earlier run; pass --resume to continue it, or remove it")
    with dask_client(job.scheduler, workers=job.workers, threads_per_worker=job.threads, say=watch.note) as client:
        grid = job.grid
        store.create()
        result = RunStats(crops=len(grid.crops), blocks=len(grid.blocks), workers=worker_count(client), block=grid.largest)
        since = time.time()
        try:
            _stages(_Stage(client, job, store, result, watch))
        except BaseException as e:
            store.close()
            error = Interrupted("interrupted") if isinstance(e, KeyboardInterrupt) else e  # Ctrl-C: one line, no traceback
            if result.labels_at is not None and isinstance(error, Exception):  # never lose finished labels
                reason = str(error) if isinstance(error, ClientError) else f"writing the labels failed ({type(error).__name__}: {error})"
                raise OutputError(f"{reason} — the labels are kept in {result.labels_at} (Zarr; napari and zarr open it); "
                                  f"run again with --resume to finish writing them from {store.path}") from e
            if job.resume:
                if isinstance(error, ClientError):
                    raise type(error)(f"{error} — finished blocks are kept in {store.path}; run again with --resume to continue") from e
            else:
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


def _stages(stage: _Stage) -> None:
    """The stages in the order they run, each one's results feeding the next."""
    counts = _infer(stage)
    tables, dtype = _label(stage, counts)
    firsts = _assign(stage, tables, dtype)
    numbering = _order(stage, firsts)
    target = _create_target(stage, numbering.dtype)
    _write(stage, target, firsts, numbering)
    if target.ome:
        _write_pyramid(stage, target)
    stage.result.labels_at = target.path
    _deliver(stage, target)


def _infer(stage: _Stage) -> dict[str, int]:
    """Infer every block not finished (and label it within); the count of its own labels per block."""
    job, result = stage.job, stage.result
    names = [b.name for b in job.grid.blocks]
    done = _still_done(stage, "infer", names)
    inferred = stage.run("infer", [(b.name, stages.infer_block, (job, b.index)) for b in job.grid.blocks if b.name not in done], len(names))
    result.skipped = sum(v[1].get("skipped", 0) for v in done.values()) + sum(v["skipped"] for v in inferred.values())
    # --fill-missing: chunks read as zeros, each once however many blocks (on however many workers) read it
    result.filled = len({tuple(chunk) for v in inferred.values() for chunk in v.get("filled", ())})
    return {**{k: v[1]["count"] for k, v in done.items()}, **{k: v["count"] for k, v in inferred.items()}}


def _label(stage: _Stage, counts: dict[str, int]) -> tuple[list[np.ndarray], np.dtype]:
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


def _assign(stage: _Stage, tables: list[np.ndarray], dtype: np.dtype) -> Firsts:
    """Assign every block not finished; each block's components' first appearances."""
    job, grid = stage.job, stage.job.grid
    names = [b.name for b in grid.blocks]
    order = {b.index: i for i, b in enumerate(grid.blocks)}
    done = _still_done(stage, "assign", names)
    firsts = {n: tuple(stage.store.load_npz("firsts", n, ["labels", "at", "size"]).values()) for n in done}
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


def _order(stage: _Stage, firsts: Firsts) -> _Numbering:
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


@dataclass(frozen=True)
class _Target:
    """The Zarr the labels are written into, in the work directory, before they go to the output."""

    path: Path
    array_path: str  # level 0's array
    name: str
    layout: Any  # the image's (with --labels-into), else None
    levels: Sequence[Level]
    chunks_zxy: tuple[int, int, int]
    ome: bool
    tiff: bool


def _create_target(stage: _Stage, dtype: np.dtype) -> _Target:
    """The labels' Zarr in the work directory, made again unless an earlier run made it alike."""
    job, store, grid = stage.job, stage.store, stage.job.grid
    output, voxel_size, offset, into = job.output, job.voxel_size, job.offset, job.into
    shape_zxy = (job.shape[2], job.shape[0], job.shape[1])
    chunks_zxy = (grid.chunks[2], grid.chunks[0], grid.chunks[1])
    layout = image_layout(into[0]) if into is not None else None
    name = into[1] if into is not None else output.out.name
    tiff = layout is None and name.lower().endswith(TIFF_SUFFIXES)
    path = store.path / "out" / ("labels.zarr" if tiff else name)
    ome = layout is not None or (not tiff and name.lower().endswith(".ome.zarr"))
    offset_zxy = None if offset is None else (offset[2], offset[0], offset[1])
    levels = layout.levels if layout is not None else pyramid(shape_zxy, voxel_size.zyx, offset_zyx=offset_zxy)
    ngff_version = output.ngff_version.value
    made = store.path / "out" / ".made"
    made_as = f"{dtype.name} {name} {voxel_size.zyx} {voxel_size.unit} {ngff_version} {layout} min-size {output.min_size} offset {offset}"
    if (made.read_text() if made.exists() else "") != made_as:
        shutil.rmtree(path, ignore_errors=True)
        for marker in [*(store.path / "done" / "write").glob("*"), *(store.path / "done" / "pyramid").glob("*")]:
            marker.unlink()
        if layout is not None:
            create_labels_into(path, layout, dtype, chunks_zxy)
        else:
            create_labels_array(path, shape_zxy, dtype, chunks_zxy, voxel_size=voxel_size, ngff_version=ngff_version, offset=offset)
        made.write_text(made_as)
    array_path = str(path / levels[0].path) if ome else str(path)
    return _Target(path, array_path, name, layout, levels, chunks_zxy, ome, tiff)


def _write(stage: _Stage, target: _Target, firsts: Firsts, numbering: _Numbering) -> None:
    """Renumber and write every write region not finished (measured too, with a table)."""
    job, result, grid = stage.job, stage.result, stage.job.grid
    started = time.perf_counter()
    measure = job.output.table is not None
    keys, ranks = numbering.keys, numbering.ranks
    regions = grid.write_regions()
    region_names = [stages.region_name(r) for r in regions]
    done = _still_done(stage, "write", region_names, target.array_path)
    if measure:  # a block written by a run without --table is written again, and measured
        done = {k: v for k, v in done.items() if (stage.store.path / "stats" / f"{k}.npz").exists()}
    result.labelled = sum(v[1].get("labelled", 0) for v in done.values())
    calls = []
    for region, name in zip(regions, region_names):
        if name in done:
            continue
        present = np.unique(np.concatenate([firsts[b.name][0] for b in grid.overlapping(region)] or [np.zeros(0, keys.dtype)]))
        at = np.minimum(np.searchsorted(keys, present), max(len(keys) - 1, 0))
        numbers = np.where(np.isin(present, keys), ranks[at] if len(keys) else 0, 0)  # removed by --min-size: 0
        calls.append((name, stages.write_block, (job, region, present, numbers, numbering.dtype, target.array_path, measure)))
    result.seconds["order"] += time.perf_counter() - started
    result.labelled += sum(v["labelled"] for v in stage.run("write", calls, len(regions)).values())


def _deliver(stage: _Stage, target: _Target) -> None:
    """The instance table (with ``--table``), then the labels to their output: into the image,
    exported to a store, read into a TIFF, or moved into place."""
    job, result = stage.job, stage.result
    output, voxel_size, out, overwrite = job.output, job.voxel_size, job.output.out, job.output.overwrite
    started = time.perf_counter()
    if output.table is not None:
        regions = [stages.region_name(r) for r in job.grid.write_regions()]
        shape_zxy = (job.shape[2], job.shape[0], job.shape[1])
        result.table = _instance_table(stage.store, regions, target.array_path, shape_zxy, voxel_size)
        if target.ome:
            add_label_properties(target.path, label_properties(result.table))
        result.seconds["measure"] = time.perf_counter() - started
        started = time.perf_counter()
    if target.layout is not None:
        image, label_name = job.into  # type: ignore[misc]
        try:
            install_labels(image, label_name, target.path, target.layout, overwrite=overwrite)
        except OSError as e:
            raise OutputError(f"cannot write {image / 'labels' / label_name}: {e.strerror or e}") from e
    elif is_store(out):  # precomputed:// or n5://: shard-aligned tasks from the finished Zarr (client/stores)
        export_labels(stage.run, target.array_path, out, voxel_size=voxel_size, table=result.table, overwrite=overwrite,
                      offset=job.offset)
    elif target.tiff:
        import zarr

        write_labels(out, zarr.open_array(target.array_path, mode="r")[...].transpose(1, 2, 0), overwrite=overwrite,
                     voxel_size=voxel_size)
    else:
        if out.exists() and not overwrite:
            raise OutputError(f"--out {out} exists; pass --overwrite to replace it")
        move_into_place(target.path, out)  # copied first from another file system
    result.seconds["write"] += time.perf_counter() - started


def _large_enough(firsts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], min_size: int) -> np.ndarray:
    """The instances (sorted) whose voxels, summed over the blocks' ``(labels, at, size)``,
    number at least ``min_size``: what survives ``--min-size``, as in the in-memory mode."""
    labels = np.concatenate([f[0] for f in firsts]) if firsts else np.zeros(0, np.uint64)
    sizes = np.concatenate([f[2] for f in firsts]) if firsts else np.zeros(0, np.int64)
    unique, inverse = np.unique(labels, return_inverse=True)
    total = np.bincount(inverse.ravel(), weights=sizes, minlength=len(unique))
    return unique[total >= min_size]


def _write_pyramid(stage: _Stage, target: _Target) -> None:
    """The levels above 0 of an ``.ome.zarr`` (as create_labels_array made them), sampled from
    its written level 0 one region of a level's chunks at a time (pyramid.py)."""
    from .pyramid import level_regions, region_name, write_level_region

    axes = stage.job.grid.axes
    levels = target.levels
    regions = level_regions(levels, target.chunks_zxy, (axes[2].write, axes[0].write, axes[1].write))
    if not regions:
        return
    names = [region_name(path, region) for path, region in regions]
    done = _still_done(stage, "pyramid", names, str(target.path))
    stage.run("pyramid", [(name, write_level_region, (stage.job, str(target.path), path, region, levels[0].path))
                          for name, (path, region) in zip(names, regions) if name not in done], len(names))


def _instance_table(store: BlockStore, names: Sequence[str], array_path: str, shape_zxy: tuple[int, int, int],
                    voxel_size: VoxelSize) -> dict[str, np.ndarray]:
    """The instance table from the write blocks' per-label sums (all blocks' partials taken as
    one, then merged: sums, minima and maxima are exact whatever the order) and each instance's
    skeleton length, read from its bounding box in the written labels."""
    import zarr

    from ..instances import PartialStats, instance_table, skeleton_lengths

    parts = [store.load_npz("stats", n) for n in names]
    fields = [f.name for f in dataclasses.fields(PartialStats)]
    stats = PartialStats(*(np.concatenate([p[f] for p in parts]) for f in fields)).merge(PartialStats.empty(True))
    labels = zarr.open_array(array_path, mode="r")
    lengths = skeleton_lengths(stats, lambda box: read_zyx(labels, box), voxel_size.zyx)
    return instance_table(stats, shape_zxy, voxel_size, lengths)
