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

Not split: the stages in the order they run, with the checks and resume logic around them;
the per-block work is in stages.py, the cluster in cluster.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .. import postprocess
from ..atomic import move_into_place
from ..errors import ClientError, Interrupted, OutputError
from ..progress import Cancelled, Watch
from ..run_stats import RunStats
from ..instances import label_properties
from ..ngff import Level, add_label_properties, create_labels_into, image_layout, install_labels, pyramid, read_zyx
from ..normalize import Normalization
from ..stores import Location, export_labels
from ..label_write import create_labels_array, write_labels
from ..volume import TIFF_SUFFIXES
from ..voxel_size import UNKNOWN_VOXEL_SIZE, VoxelSize
from ..workdir import default_work_dir
from . import stages
from .blocks import BlockGrid, default_per_block, grow, per_block_from_voxels
from .cluster import ClusterError, dask_client, worker_count, worker_losses
from .equivalence import components, global_order
from .job import Job, Source
from .store import FORMAT, BlockStore, Stage
from .worker import release, run_task


def available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def check_tiff_fits(out: Path, shape: Sequence[int], memory: int | None = None, labels_dtype: str = "uint32") -> None:
    """A TIFF is written from labels in memory: refuse one that would not fit (naming .zarr)."""
    if out.name.lower().endswith(TIFF_SUFFIXES):
        need = np.dtype(labels_dtype).itemsize * int(np.prod(shape))
        if need > (memory if memory is not None else available_memory()) // 2:
            raise OutputError(
                f"--out {out}: a TIFF is written from labels held in memory ({need / 2**30:.1f} GiB) — use --out NAME.zarr or NAME.ome.zarr"
            )


class _Stage:
    """Submit one stage's tasks, draw its progress, gather results and worker peaks."""

    def __init__(self, client: Any, result: RunStats, watch: Watch) -> None:
        self.client, self.result, self.watch = client, result, watch

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


def _still_done(client: Any, job: Job, stage: Stage, store: BlockStore, names: Sequence[str], array_path: str | None = None) -> dict[str, tuple[int, dict[str, Any]]]:
    """The markers of ``stage`` among ``names`` whose data still checks out (checked on the workers)."""
    marked = {k: v for k, v in store.done(stage).items() if k in set(names)}
    if not marked:
        return {}
    verify = stages.VERIFIERS[stage]
    futures = {client.submit(run_task, verify, job, k, v[0], array_path, key=_task_key(verify)): k
               for k, v in marked.items()}
    ok = dict(zip(futures.values(), client.gather(list(futures))))
    return {k: v for k, v in marked.items() if ok[k]}


def segment_blockwise(
    job: Job,
    out: Path | None,
    *,
    overwrite: bool,
    fingerprint: dict[str, Any],
    work_dir: Path | None = None,
    resume: bool = False,
    scheduler: str | None = None,
    workers: int | None = None,
    quiet: bool = False,
    say: Callable[[str], None] | None = None,
    halos: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None,
    voxel_size: VoxelSize | None = None,
    ngff_version: str = "0.4",
    measure: bool = False,
    into: tuple[Path, str] | None = None,
    min_size: int = 0,
    watch: Watch | None = None,
    offset: Sequence[float] | None = None,
    labels_dtype: str = "uint32",
) -> RunStats:
    """Segment ``job.volume`` block by block on a Dask cluster and write the labels to ``out``,
    or with ``into`` (``--labels-into IMAGE --label-name NAME``) into ``IMAGE/labels/NAME``
    with the image's levels, axes and transformations (the in-memory writer's, bitwise).

    The work directory (``OUT.work`` unless ``work_dir``) is removed once the labels are in
    place; after a failure it is kept with ``resume`` (its finished blocks are reused by the next
    run with ``--resume``) and removed without. The output states ``voxel_size`` (an
    ``.ome.zarr`` one as NGFF ``ngff_version``) as the in-memory writer does. Raises
    ``ClientError`` subclasses. With ``measure`` the instance table is measured block by block
    (``result.table``; an ``.ome.zarr`` output gets its rows as NGFF properties). Instances of
    fewer than ``min_size`` voxels, summed over the blocks they cross, become background. The
    labels are ``postprocess.labels_dtype(instances, labels_dtype)``, as in memory. A
    failure once the labels are complete keeps the work directory, resume or not, and says
    where the labels are: a run with ``--resume`` finishes writing them.
    """
    if out is not None:
        check_tiff_fits(out, job.shape, labels_dtype=labels_dtype)
    destination = out if out is not None else into[0]  # type: ignore[index]
    store = BlockStore(work_dir or default_work_dir(destination), {**fingerprint, "format": FORMAT, "blocks": list(job.per_block)})
    store.check()
    if not resume and store.path.exists():
        raise OutputError(f"work directory {store.path} is left from an earlier run; pass --resume to continue it, or remove it")
    with dask_client(scheduler, workers=workers, threads_per_worker=job.threads, say=say) as client:
        grid = job.grid
        store.create()
        result = RunStats(crops=len(grid.crops), blocks=len(grid.blocks), workers=worker_count(client), block=grid.largest)
        since = time.time()
        try:
            _run(client, job, grid, store, out, result, overwrite=overwrite, watch=watch or Watch(quiet), halos=halos,
                 voxel_size=voxel_size or UNKNOWN_VOXEL_SIZE, ngff_version=ngff_version, measure=measure, into=into,
                 min_size=min_size, offset=offset, labels_dtype=labels_dtype)
        except BaseException as e:
            store.close()
            error = Interrupted("interrupted") if isinstance(e, KeyboardInterrupt) else e  # Ctrl-C: one line, no traceback
            if result.labels_at is not None and isinstance(error, Exception):  # never lose finished labels
                reason = str(error) if isinstance(error, ClientError) else f"writing the labels failed ({type(error).__name__}: {error})"
                raise OutputError(f"{reason} — the labels are kept in {result.labels_at} (Zarr; napari and zarr open it); "
                                  f"run again with --resume to finish writing them from {store.path}") from e
            if resume:
                if isinstance(error, ClientError):
                    raise type(error)(f"{error} — finished blocks are kept in {store.path}; run again with --resume to continue") from e
            else:
                store.remove()
                if isinstance(error, ClientError) and not isinstance(error, Cancelled):
                    raise type(error)(f"{error} — with --resume a run keeps its finished blocks and a rerun continues from them") from e
            raise
        finally:
            result.workers_lost, result.rerun = worker_losses(client, since)  # (0, 0) when the scheduler cannot say
            if scheduler is not None:  # workers that outlive this run keep no endpoints, models or buffers
                with contextlib.suppress(Exception):
                    client.run(release)
    store.remove()
    return result


def _run(
    client: Any, job: Job, grid: BlockGrid, store: BlockStore, out: Path | None, result: RunStats,
    *, overwrite: bool, watch: Watch, halos: Any, voxel_size: VoxelSize, ngff_version: str, measure: bool = False,
    into: tuple[Path, str] | None = None,
    min_size: int = 0,
    offset: Sequence[float] | None = None,
    labels_dtype: str = "uint32",
) -> None:
    stage = _Stage(client, result, watch)
    names = [b.name for b in grid.blocks]

    done = _still_done(client, job, "infer", store, names)
    inferred = stage.run("infer", [(b.name, stages.infer_block, (job, b.index)) for b in grid.blocks if b.name not in done], len(names))
    result.skipped = sum(v[1].get("skipped", 0) for v in done.values()) + sum(v["skipped"] for v in inferred.values())
    # --fill-missing: chunks read as zeros, each once however many blocks (on however many workers) read it
    result.filled = len({tuple(chunk) for v in inferred.values() for chunk in v.get("filled", ())})
    counts = {**{k: v[1]["count"] for k, v in done.items()}, **{k: v["count"] for k, v in inferred.items()}}

    order = {b.index: i for i, b in enumerate(grid.blocks)}
    pairs = stage.run("label", [(b.name, stages.block_pairs, (job, b.index)) for b in grid.blocks], len(names))
    started = time.perf_counter()
    edges = [(order[b.index], order[after], p) for b in grid.blocks for after, p in pairs[b.name] if len(p)]
    tables, count = components([counts[n] for n in names], edges)
    dtype = np.dtype(np.uint32 if count < 2**32 else np.uint64)
    result.seconds["label"] += time.perf_counter() - started

    done = _still_done(client, job, "assign", store, names)
    firsts = {n: tuple(store.load_npz("firsts", n, ["labels", "at", "size"]).values()) for n in done}
    calls = []
    for b in grid.blocks:
        if b.name in done:
            continue
        reach = [nb.index for nb in grid.overlapping(grow(b.region, (halos or (job.label_halo,))[0], job.shape))]
        calls.append((b.name, stages.assign_block, (job, b.index, {i: tables[order[i]] for i in reach}, dtype, halos)))
    for name, value in stage.run("assign", calls, len(names)).items():
        firsts[name] = (value["labels"], value["at"], value["size"])

    started = time.perf_counter()
    kept = _large_enough([firsts[n] for n in names], min_size)
    surviving = []
    for name in names:
        labels, at, _ = firsts[name]
        keep = np.isin(labels, kept)
        surviving.append((labels[keep], at[keep]))
    keys, ranks = global_order(surviving)
    result.instances = len(keys)
    out_dtype = postprocess.labels_dtype(len(keys), labels_dtype)
    widened = postprocess.labels_dtype_note(len(keys), labels_dtype)
    if widened:
        result.notes.append(widened)
    shape_zxy = (job.shape[2], job.shape[0], job.shape[1])
    chunks_zxy = (grid.chunks[2], grid.chunks[0], grid.chunks[1])
    layout = image_layout(into[0]) if into is not None else None
    name = into[1] if into is not None else out.name  # type: ignore[union-attr]
    tiff = layout is None and name.lower().endswith(TIFF_SUFFIXES)
    target = store.path / "out" / ("labels.zarr" if tiff else name)
    ome = layout is not None or (not tiff and name.lower().endswith(".ome.zarr"))
    offset_zxy = None if offset is None else (offset[2], offset[0], offset[1])
    levels = layout.levels if layout is not None else pyramid(shape_zxy, voxel_size.zyx, offset_zyx=offset_zxy)
    array_path = str(target / levels[0].path) if ome else str(target)
    made = store.path / "out" / ".made"
    made_as = f"{out_dtype.name} {name} {voxel_size.zyx} {voxel_size.unit} {ngff_version} {layout} min-size {min_size} offset {offset}"
    if (made.read_text() if made.exists() else "") != made_as:
        shutil.rmtree(target, ignore_errors=True)
        for marker in [*(store.path / "done" / "write").glob("*"), *(store.path / "done" / "pyramid").glob("*")]:
            marker.unlink()
        if layout is not None:
            create_labels_into(target, layout, out_dtype, chunks_zxy)
        else:
            create_labels_array(target, shape_zxy, out_dtype, chunks_zxy, voxel_size=voxel_size, ngff_version=ngff_version,
                                offset=offset)
        made.write_text(made_as)
    regions = grid.write_regions()
    region_names = [stages.region_name(r) for r in regions]
    done = _still_done(client, job, "write", store, region_names, array_path)
    if measure:  # a block written by a run without --table is written again, and measured
        done = {k: v for k, v in done.items() if (store.path / "stats" / f"{k}.npz").exists()}
    result.labelled = sum(v[1].get("labelled", 0) for v in done.values())
    calls = []
    for region, name in zip(regions, region_names):
        if name in done:
            continue
        present = np.unique(np.concatenate([firsts[b.name][0] for b in grid.overlapping(region)] or [np.zeros(0, keys.dtype)]))
        at = np.minimum(np.searchsorted(keys, present), max(len(keys) - 1, 0))
        numbers = np.where(np.isin(present, keys), ranks[at] if len(keys) else 0, 0)  # removed by --min-size: 0
        calls.append((name, stages.write_block, (job, region, present, numbers, out_dtype, array_path, measure)))
    result.seconds["order"] = time.perf_counter() - started
    result.labelled += sum(v["labelled"] for v in stage.run("write", calls, len(regions)).values())
    if ome:
        _write_pyramid(stage, job, store, target, levels, chunks_zxy, (grid.axes[2].write, grid.axes[0].write, grid.axes[1].write))
    result.labels_at = target

    started = time.perf_counter()
    if measure:
        result.table = _instance_table(store, region_names, array_path, shape_zxy, voxel_size)
        if ome:
            add_label_properties(target, label_properties(result.table))
        result.seconds["measure"] = time.perf_counter() - started
        started = time.perf_counter()
    if layout is not None:
        image, label_name = into  # type: ignore[misc]
        try:
            install_labels(image, label_name, target, layout, overwrite=overwrite)
        except OSError as e:
            raise OutputError(f"cannot write {image / 'labels' / label_name}: {e.strerror or e}") from e
    elif out is not None and (url := Location.of(out).url) is not None:  # precomputed://, n5://: shard-aligned tasks
        export_labels(stage.run, array_path, url, voxel_size=voxel_size, table=result.table, overwrite=overwrite, offset=offset)
    elif tiff:
        import zarr

        write_labels(out, zarr.open_array(array_path, mode="r")[...].transpose(1, 2, 0), overwrite=overwrite,
                     voxel_size=voxel_size)
    else:
        if out.exists() and not overwrite:
            raise OutputError(f"--out {out} exists; pass --overwrite to replace it")
        move_into_place(target, out)  # copied first from another file system
    result.seconds["write"] += time.perf_counter() - started


def _large_enough(firsts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], min_size: int) -> np.ndarray:
    """The instances (sorted) whose voxels, summed over the blocks' ``(labels, at, size)``,
    number at least ``min_size``: what survives ``--min-size``, as in the in-memory mode."""
    labels = np.concatenate([f[0] for f in firsts]) if firsts else np.zeros(0, np.uint64)
    sizes = np.concatenate([f[2] for f in firsts]) if firsts else np.zeros(0, np.int64)
    unique, inverse = np.unique(labels, return_inverse=True)
    total = np.bincount(inverse.ravel(), weights=sizes, minlength=len(unique))
    return unique[total >= min_size]


def _write_pyramid(stage: _Stage, job: Job, store: BlockStore, target: Path, levels: Sequence[Level],
                   chunks_zxy: Sequence[int], size_zxy: Sequence[int]) -> None:
    """The levels above 0 of an ``.ome.zarr`` (as create_labels_array made them), sampled from
    its written level 0 one region of a level's chunks at a time (pyramid.py)."""
    from .pyramid import level_region_name, level_regions, write_level_region

    regions = level_regions(levels, chunks_zxy, size_zxy)
    if not regions:
        return
    names = [level_region_name(path, region) for path, region in regions]
    done = _still_done(stage.client, job, "pyramid", store, names, str(target))
    stage.run("pyramid", [(name, write_level_region, (job, str(target), path, region, levels[0].path))
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


def blockwise_file(
    volume: Any, *, out: Path | None, parameters: Any, source: Source, batch_size: int, channel: int | None,
    axes: str | None, normalization: Normalization, voxel_size: VoxelSize | None = None, ngff_version: str = "0.4",
    measure: bool = False, mask: Path | None = None, skip_below: float | None = None,
    reference_borders: bool, fingerprint: dict[str, Any], block: Sequence[int] | None = None, workers: int | None = None,
    threads_per_worker: int = 1, scheduler: str | None = None, work_dir: Path | None = None, resume: bool = False,
    overwrite: bool = False, quiet: bool = False, say: Callable[[str], None] | None = None,
    into: tuple[Path, str] | None = None, min_size: int = 0, watch: Watch | None = None, fill_missing: bool = False,
    labels_dtype: str = "uint32",
    roi: Sequence[tuple[int, int]] | None = None, offset: Sequence[float] | None = None,
) -> RunStats:
    """``segment --blockwise`` for an opened ``volume``: choose the blocks (``--block`` voxels
    rounded to whole crop steps, or what keeps a worker near its memory budget), then run.
    Workers read the input with ``channel`` and ``axes`` as the client did, only its ``roi`` box
    when given (``volume`` is then that cutout), and normalise every crop by the client's
    ``normalization``. The output's first voxel sits at ``offset`` (client/origin.py)."""
    shape = volume.shape
    label_halo, vector_halo = postprocess.halo_widths(parameters.vector_scaling, parameters.embedding_iterations)
    if block is not None:
        per_block = per_block_from_voxels(block, parameters.crop, parameters.overlap, shape)
    else:
        per_block = default_per_block(shape, parameters.crop, parameters.overlap, label_halo, vector_halo)
    job = Job(
        volume=Location.of(volume.path).resolved(), channel=channel, axes=axes, normalization=normalization,
        mask=None if mask is None else Path(mask).resolve(), skip_below=skip_below, shape=shape,
        work=(work_dir or default_work_dir(out if out is not None else into[0])).resolve(),  # type: ignore[index]
        per_block=per_block, reference_borders=reference_borders, parameters=parameters, source=source,
        batch_size=batch_size, threads=threads_per_worker, label_halo=label_halo, vector_halo=vector_halo,
        fill_missing=fill_missing,
        roi=None if roi is None else tuple(tuple(int(v) for v in b) for b in roi),
    )
    return segment_blockwise(job, out, overwrite=overwrite, fingerprint=fingerprint, work_dir=job.work, resume=resume,
                             scheduler=scheduler, workers=workers, quiet=quiet, say=say, voxel_size=voxel_size,
                             ngff_version=ngff_version, measure=measure, into=into, min_size=min_size, watch=watch,
                             offset=offset, labels_dtype=labels_dtype)
