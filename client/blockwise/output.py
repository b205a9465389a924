"""Where a blockwise run's labels go: the destination the write stage writes into directly
(`Target`, destination.py), made ready before the stage and published after it (a Zarr folder
renamed into place or into the image, a store's metadata written last, a TIFF written from the
labels gathered here), with the instance table. Nothing is copied."""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import memory as host
from .. import postprocess
from ..atomic import replace
from ..errors import OutputError
from ..instances import label_properties
from ..label_write import create_labels_array, write_labels
from ..ngff import Level, add_label_properties, create_labels_into, image_layout, install_labels, pyramid
from ..stores import Location
from ..stores.export import clear, in_place, publish
from ..stores.export import discard as discard_chunks
from ..volume import TIFF_SUFFIXES
from ..voxel_size import VoxelSize
from . import stages
from .destination import Destination
from .destination import window as destination_window
from .stage_runner import StageRunner
from .store import BlockStore

__all__ = ["check_tiff_fits", "Target", "MADE", "create_target", "kept", "discard", "gather_labels", "deliver"]


def check_tiff_fits(out: Path, shape: Sequence[int], memory: int | None = None, labels_dtype: str = "uint32") -> None:
    """A TIFF is written from labels in memory: refuse one that would not fit (naming .zarr)."""
    if out.name.lower().endswith(TIFF_SUFFIXES):
        need = np.dtype(labels_dtype).itemsize * int(np.prod(shape))
        if need > (memory if memory is not None else host.available_memory()) // 2:
            raise OutputError(
                f"--out {out}: a TIFF is written from labels held in memory ({need / 2**30:.1f} GiB) — use --out NAME.zarr or NAME.ome.zarr"
            )


@dataclass(frozen=True)
class Target:
    """Where the labels are written: the `Destination` the tasks write into and, for Zarr, the
    label image (or array) being built at ``path`` in its hidden folder beside the destination."""

    destination: Destination
    path: Path | None  # zarr: the array or label image in its ``.NAME.partial-…`` folder; else None
    name: str
    layout: Any  # the image's (with --labels-into), else None
    levels: Sequence[Level]
    chunks_zxy: tuple[int, int, int]
    ome: bool
    tiff: bool


MADE = "output.json"  # the work store's record of the destination being written: what, and where its partial folder is


def create_target(stage: StageRunner, dtype: np.dtype) -> Target:
    """The destination, made ready for the write stage: reused as it is when an earlier run of
    this work directory began it alike (``--resume``), else made afresh (a Zarr in a new hidden
    folder beside the destination, a precomputed / N5 destination cleared: `export.clear`) and
    the write and pyramid markers of any earlier one dropped."""
    job, store, grid = stage.job, stage.store, stage.job.grid
    output, voxel_size, offset, into = job.output, job.voxel_size, job.offset, job.into
    shape_zxy = (job.shape[2], job.shape[0], job.shape[1])
    chunks_zxy = (grid.chunks[2], grid.chunks[0], grid.chunks[1])
    layout = image_layout(into[0]) if into is not None else None
    name = into[1] if into is not None else output.out.name
    url = Location.of(output.out).url if into is None and output.out is not None else None
    tiff = layout is None and url is None and name.lower().endswith(TIFF_SUFFIXES)
    ome = layout is not None or (url is None and not tiff and name.lower().endswith(".ome.zarr"))
    offset_zxy = None if offset is None else (offset[2], offset[0], offset[1])
    levels = layout.levels if layout is not None else pyramid(shape_zxy, voxel_size.zyx, offset_zyx=offset_zxy)
    ngff_version = output.ngff_version.value
    made_as = (f"{dtype.name} {output.out} {into} {voxel_size.zyx} {voxel_size.unit} {ngff_version} {layout} min-size {output.min_size} "
               f"offset {offset} shape {job.shape} chunks {grid.chunks}")
    record = json.loads(store.get(MADE)) if store.exists(MADE) else {}
    partial = Path(record["partial"]) if record.get("partial") else None
    fresh = record.get("as") != made_as or (partial is not None and not partial.exists())
    step = (grid.axes[0].write, grid.axes[1].write, grid.axes[2].write)  # the grid's write regions: whole Zarr chunks
    if url is not None:
        placed = in_place(url, job.shape, dtype, voxel_size, offset=offset)
        destination = Destination("store", job.shape, placed.step_xyz, store=placed)
    elif tiff:
        destination = Destination("memory", job.shape, step)
    if fresh:
        if partial is not None:
            shutil.rmtree(partial.parent, ignore_errors=True)
        for key in [*store.keys("done/write"), *store.keys("done/pyramid"), *store.keys("done/mesh"), *store.keys("done/manifest")]:
            store.delete(key)
        partial = None
        if url is not None:
            clear(placed, output.overwrite)
        elif not tiff:
            partial = _partial(output.out if into is None else into[0], name, into is not None)
            if layout is not None:
                create_labels_into(partial, layout, dtype, chunks_zxy)
            else:
                create_labels_array(partial, shape_zxy, dtype, chunks_zxy, voxel_size=voxel_size, ngff_version=ngff_version, offset=offset)
        store.put(MADE, json.dumps({"as": made_as, "partial": None if partial is None else str(partial)}).encode())
    if partial is not None:
        destination = Destination("zarr", job.shape, step, str(partial / levels[0].path) if ome else str(partial))
    return Target(destination, partial, name, layout, levels, chunks_zxy, ome, tiff)


def _partial(destination: Path, name: str, into: bool) -> Path:
    """A new hidden folder beside ``destination`` (the image, for ``--labels-into``) on its file
    system, and the path in it to build ``name`` at: moved into place by a rename."""
    prefix = f".{destination.name}.{name}.partial-" if into else f".{name}.partial-"
    try:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=destination.parent)) / name
    except OSError as e:
        raise OutputError(f"cannot write beside {destination}: {e.strerror or e}") from e


def kept(target: Target, work: object) -> str:
    """Where finished labels are when publishing them failed (a run with --resume publishes them)."""
    if target.path is not None:
        return f"the labels are kept in {target.path} (Zarr; napari and zarr open it)"
    if target.destination.store is not None:
        return f"the labels are kept in {target.destination.store.url} (written, without the metadata a reader needs)"
    return f"the labels are kept in {work} (the work directory's blocks)"


def discard(target: Target) -> None:
    """Remove what the write stage wrote, for a run that failed and will not be resumed: the
    partial folder, or the unpublished chunks of a precomputed / N5 destination."""
    if target.path is not None:
        shutil.rmtree(target.path.parent, ignore_errors=True)
    elif target.destination.store is not None:
        discard_chunks(target.destination.store)


def gather_labels(stage: StageRunner, tables: dict[str, tuple[np.ndarray, np.ndarray]], dtype: np.dtype) -> np.ndarray:
    """The runtime ``[X, Y, Z]`` labels (a TIFF's), gathered here from the work store's assigned
    blocks region by region through each region's numbering (``tables``: name → keys, numbers)."""
    job = stage.job
    labels = np.zeros(job.shape, dtype)
    for region in stage.job.grid.write_regions():
        keys, numbers = tables[stages.region_name(region)]
        out = np.zeros(tuple(hi - lo for lo, hi in region), dtype)  # contiguous: gather scatters into it flat
        stages.gather(job, "assigned", region, out, functools.partial(_renumber, keys=keys, numbers=numbers, dtype=dtype))
        labels[tuple(slice(lo, hi) for lo, hi in region)] = out
    return labels


def _renumber(_: object, ids: np.ndarray, *, keys: np.ndarray, numbers: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return postprocess.apply_table(ids, keys, numbers, dtype)


def deliver(stage: StageRunner, target: Target, labels: np.ndarray | None = None,
            skeleton_lengths: np.ndarray | None = None) -> None:
    """The instance table (with ``--table``; ``skeleton_lengths``, nm by id, its graph-length
    column with ``--skeletons``), then the labels published: the Zarr folder renamed into place
    (into the image with ``--labels-into``), a store's metadata written, or the TIFF written
    from ``labels``."""
    job, result = stage.job, stage.result
    output, voxel_size, out, overwrite = job.output, job.voxel_size, job.output.out, job.output.overwrite
    started = time.perf_counter()
    if output.table is not None:
        regions = [stages.region_name(r) for r in target.destination.regions()]
        shape_zxy = (job.shape[2], job.shape[0], job.shape[1])
        window = _labels_window(labels) if labels is not None else destination_window(target.destination)
        result.table = _instance_table(stage.store, regions, window, shape_zxy, voxel_size)
        if skeleton_lengths is not None:
            from ..skeletons import in_unit, with_graph_lengths

            lengths = skeleton_lengths[np.asarray(result.table["label"], np.int64)]
            result.table = with_graph_lengths(result.table, in_unit(lengths, voxel_size))
        if target.ome:
            assert target.path is not None
            add_label_properties(target.path, label_properties(result.table))
        result.seconds["measure"] = time.perf_counter() - started
        started = time.perf_counter()
    if target.layout is not None:
        assert target.path is not None
        image, label_name = job.into  # type: ignore[misc]
        try:
            install_labels(image, label_name, target.path, target.layout, overwrite=overwrite)  # a rename: it is beside the image
        except OSError as e:
            raise OutputError(f"cannot write {image / 'labels' / label_name}: {e.strerror or e}") from e
        shutil.rmtree(target.path.parent, ignore_errors=True)
    elif target.destination.store is not None:
        properties = label_properties(dict(result.table)) if result.table is not None else None
        publish(target.destination.store, voxel_size=voxel_size, offset=job.offset, properties=properties,
                skeletons=output.skeletons, meshes=output.meshes)
    elif target.tiff:
        assert labels is not None
        write_labels(out, labels, overwrite=overwrite, voxel_size=voxel_size)
    else:
        assert target.path is not None
        if out.exists() and not overwrite:
            raise OutputError(f"--out {out} exists; pass --overwrite to replace it")
        try:
            replace(target.path, out)  # a rename: the partial folder is beside it
        except OSError as e:
            raise OutputError(f"cannot write {out}: {e.strerror or e}") from e
        shutil.rmtree(target.path.parent, ignore_errors=True)
    result.seconds["write"] += time.perf_counter() - started


def _labels_window(labels_xyz: np.ndarray) -> Callable[[tuple[slice, slice, slice]], np.ndarray]:
    """``[Z, X, Y]`` slices → the labels there, of labels in memory."""
    zxy = labels_xyz.transpose(2, 0, 1)
    return lambda box: zxy[box]


def _instance_table(store: BlockStore, names: Sequence[str], window: Callable[[tuple[slice, slice, slice]], np.ndarray],
                    shape_zxy: tuple[int, int, int], voxel_size: VoxelSize) -> dict[str, np.ndarray]:
    """The instance table from the write regions' per-label sums (all regions' partials taken as
    one, then merged: sums, minima and maxima are exact whatever the order) and each instance's
    skeleton length, read from its bounding box in the written labels (``window``)."""
    from ..instances import PartialStats, instance_table, skeleton_lengths

    parts = [store.load_npz("stats", n) for n in names]
    fields = [f.name for f in dataclasses.fields(PartialStats)]
    stats = PartialStats(*(np.concatenate([p[f] for p in parts]) for f in fields)).merge(PartialStats.empty(True))
    lengths = skeleton_lengths(stats, window, voxel_size.zyx)
    return instance_table(stats, shape_zxy, voxel_size, lengths)
