"""Where a blockwise run's labels go: the Zarr they are written into in the work directory
(`Target`), and from it, once every block is written,
the output the user named (an image's labels, a store, a TIFF, a Zarr moved into place) and
the instance table."""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import memory as host
from ..atomic import move_into_place
from ..errors import OutputError
from ..instances import label_properties
from ..label_write import create_labels_array, write_labels
from ..ngff import Level, add_label_properties, create_labels_into, image_layout, install_labels, pyramid, read_zyx
from ..stores import Location, export_labels
from ..volume import TIFF_SUFFIXES
from ..voxel_size import VoxelSize
from . import stages
from .stage_runner import StageRunner
from .store import BlockStore

__all__ = ["check_tiff_fits", "Target", "create_target", "deliver"]


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
    """The Zarr the labels are written into, in the work directory, before they go to the output."""

    path: Path
    array_path: str  # level 0's array
    name: str
    layout: Any  # the image's (with --labels-into), else None
    levels: Sequence[Level]
    chunks_zxy: tuple[int, int, int]
    ome: bool
    tiff: bool


def create_target(stage: StageRunner, dtype: np.dtype) -> Target:
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
    return Target(path, array_path, name, layout, levels, chunks_zxy, ome, tiff)


def deliver(stage: StageRunner, target: Target) -> None:
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
    elif out is not None and (url := Location.of(out).url) is not None:  # precomputed://, n5://: shard-aligned tasks
        properties = label_properties(dict(result.table)) if result.table is not None else None
        export_labels(stage.run, target.array_path, url, voxel_size=voxel_size, properties=properties, overwrite=overwrite,
                      offset=job.offset)
    elif target.tiff:
        import zarr

        write_labels(out, np.asarray(zarr.open_array(target.array_path, mode="r")[...]).transpose(1, 2, 0), overwrite=overwrite,
                     voxel_size=voxel_size)
    else:
        if out.exists() and not overwrite:
            raise OutputError(f"--out {out} exists; pass --overwrite to replace it")
        move_into_place(target.path, out)  # copied first from another file system
    result.seconds["write"] += time.perf_counter() - started


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
