"""What a run says: warnings as one line each, and the summary the command line prints."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .normalize import Normalization
from .run_stats import RunStats
from .view_link import view_lines
from .volume import Volume, describe_channel, describe_shape
from .voxel_size import VoxelSize

__all__ = ["warn_on_stderr", "served_by", "describe_run", "summary"]


def warn_on_stderr(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


def served_by(info: Any, endpoints: Sequence[Any]) -> str:
    """The summary's line for a run on servers: the model that answered, what runs it (libtorch,
    openvino or python: the Triton backend) and where, and why the client chose it when it did."""
    servers = ", ".join(getattr(e, "url", str(e)) for e in endpoints)
    why = next((e.choice for e in endpoints if getattr(e, "choice", "")), "")
    return f"model {info.name} ({info.kind} backend) on {servers}" + (f"; {why}" if why else "")


def describe_run(volume: Volume, out: Path | None, normalization: Normalization) -> str:
    """The summary's first lines: what was read (axes named as Fiji and napari show them), how
    it was normalised, where the labels went."""
    read_as = {"default": "default reading", "file": "from the file's metadata", "--axes": "from --axes"}[volume.axes_from]
    return (
        f"{volume.path} → {out or 'labels in memory'}\n"
        f"input {describe_shape(volume.shape)}, {volume.dtype.name}, axes {volume.axes} ({read_as}), {describe_channel(volume)}\n"
        f"normalisation {normalization.describe(volume.dtype)}"
    )


def summary(volume: Volume, written: Any, normalization: Normalization, stats: RunStats, total: float, *, xp: Any,
            voxel_size: VoxelSize, table: Path | None, work: Path | None) -> str:
    """What was segmented, how, where it went and how long it took, in memory or blockwise alike;
    for a precomputed output, how to see it in Neuroglancer."""
    voxels = int(np.prod(volume.shape))
    lines = [
        describe_run(volume, written, normalization),
        f"{stats.crops} crops, {stats.instances} instances",
        *filter(None, [stats.tile_line(voxels)]),
        f"time {total:.2f}s{stats.timing('GPU' if xp is not np else 'CPU')}, {voxels / total / 1e6:.2f} Mvoxels/s",
        *stats.lines(voxels, work),
        f"voxel size {voxel_size.describe()}" + (f", instance table → {table}" if table is not None else ""),
        *stats.notes,
        *view_lines(volume.path, written),
    ]
    return "\n".join(lines)
