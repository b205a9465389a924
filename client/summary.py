"""What a run says: warnings as one line each, and the summary the command line prints."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .in_memory import SegmentResult
from .normalize import Normalization
from .volume import Volume, describe_channel, describe_shape


def warn_on_stderr(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


def warn_each(warn: Callable[[str], None], *found: str | None) -> None:
    for text in found:
        if text:
            warn(text)


def describe_run(volume: Volume, out: Path | None, normalization: Normalization) -> str:
    """The summary's first lines: what was read (axes named as Fiji and napari show them), how
    it was normalised, where the labels went."""
    read_as = {"default": "default reading", "file": "from the file's metadata", "--axes": "from --axes"}[volume.axes_from]
    return (
        f"{volume.path} → {out or 'labels in memory'}\n"
        f"input {describe_shape(volume.shape)}, {volume.dtype.name}, axes {volume.axes} ({read_as}), {describe_channel(volume)}\n"
        f"normalisation {normalization.describe(volume.dtype)}"
    )


def summary(
    volume: Volume, out: Path, normalization: Normalization, result: SegmentResult, total: float, xp: Any
) -> str:
    """What was segmented, how, and how long it took; axes named as Fiji and napari show them."""
    voxels = int(np.prod(volume.shape))
    stages = ", ".join(f"{k} {v:.2f}s" for k, v in result.seconds.items())
    text = (
        f"{describe_run(volume, out, normalization)}\n"
        f"{result.crops} crops, {result.instances} instances\n"
        f"time {total:.2f}s ({stages}; post-processing on {'GPU' if xp is not np else 'CPU'}), "
        f"{voxels / total / 1e6:.2f} Mvoxels/s"
    )
    if result.skipped:
        text += (f"\nskipped {result.skipped} of {result.crops} crops (empty by --mask / --skip-below), "
                 f"saving about {result.seconds_saved:.1f}s ({result.skipped} x the mean time of an inferred crop)")
    return text
