"""Cheap looks at an input and at a result that flag what cannot be right, before a user trusts it.

Each check returns the text of one warning (or None), or raises ``InputError`` where the
result would be meaningless; the caller prints warnings as ``warning: ...`` lines. Inputs are
judged from a bounded sample of the volume, never a whole read: a huge memory-mapped TIFF or
Zarr store costs 64 small windows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from .errors import InputError
from .normalize import Normalization
from .volume import Volume, describe_shape

__all__ = [
    "SAMPLE_WINDOW", "SAMPLE_WINDOWS_PER_AXIS", "EMPTY_FRACTION", "sample_voxels", "intensity_warning",
    "check_something_to_infer", "channel_warning", "axes_warning", "empty_result_warning", "empty_result_text",
]

SAMPLE_WINDOW = (64, 64, 16)  # [X, Y, Z] voxels per window: a few chunks of a Zarr store at most
SAMPLE_WINDOWS_PER_AXIS = 4  # at most 4**3 windows, about 4 M voxels
EMPTY_FRACTION = 1e-4  # instances covering less than 0.01 % of the volume count as an empty result


def _starts(length: int, window: int, count: int) -> list[slice]:
    """Windows of ``window`` spread evenly over an axis; the whole axis when they would cover it."""
    if length <= window * count:
        return [slice(0, length)]
    return [slice(int(s), int(s) + window) for s in np.linspace(0, length - window, count).round()]


def sample_voxels(volume: Volume) -> np.ndarray:
    """A deterministic sample of ``volume``'s voxels (1-D): a grid of small windows, evenly
    spread over each axis, or the whole volume when it is small. Reads at most
    ``SAMPLE_WINDOWS_PER_AXIS**3`` windows of ``SAMPLE_WINDOW``."""
    axes = [_starts(n, w, SAMPLE_WINDOWS_PER_AXIS) for n, w in zip(volume.shape, SAMPLE_WINDOW)]
    pieces = [np.asarray(volume.data[sx, sy, sz]).ravel() for sx in axes[0] for sy in axes[1] for sz in axes[2]]
    return np.concatenate(pieces)


def intensity_warning(sample: np.ndarray, dtype: Any, normalization: Normalization, explicit: bool) -> str | None:
    """What the sample says is wrong with ``normalization`` for this volume.

    A constant volume is always flagged (a warning, not a refusal: the sample may have missed a
    small bright region of a large volume). The rest is only checked under the model's dtype
    rule when the user did not choose one (``explicit``), and refused with ``InputError``, since
    the labels would come out empty after a whole inference: float input far beyond [0, 1]
    (the rule takes float as already normalised; slightly beyond is a warning), and integers
    that use under 1/16 of their dtype's range — a uint16 maximum of 4095 or less (12-bit
    camera data), a uint8 one of 15 or less, an int16 span of under 4096 (most signed EM and CT
    data) — which the rule maps to a nearly uniform input.
    """
    dtype = np.dtype(dtype)
    low, high = float(sample.min()), float(sample.max())
    if low == high:
        return f"every sampled voxel of the volume is {low:g}: there is nothing to segment — check the file, --channel and --axes"
    if explicit or normalization.offset is not None:
        return None
    insist = "pass --normalize percentile (or minmax) to rescale it, or --normalize dtype to take it as is"
    if dtype.kind == "f":
        if low >= -0.05 and high <= 1.05:
            return None
        found = f"the {dtype.name} volume's values span {low:g} to {high:g}, but the model takes float input as already normalised to [0, 1]"
        if low < -1 or high > 2:
            raise InputError(f"{found}; {insist}")
        return f"{found}; if the labels look wrong, pass --normalize percentile"
    info = np.iinfo(dtype)
    span = info.max - info.min + 1
    if info.min < 0 and high - low < span / 16:
        raise InputError(
            f"the {dtype.name} volume spans only {low:g} to {high:g} of its range {info.min} to {info.max}, "
            f"so under the dtype rule (x + {-info.min}) / {span} the model sees it nearly uniform; {insist}"
        )
    if info.min == 0 and high < span / 16:
        raise InputError(
            f"the {dtype.name} volume uses only 0 to {high:g} of its range 0 to {info.max} (e.g. 12-bit camera data), "
            f"so under the dtype rule x / {span} the model sees it nearly black; {insist}"
        )
    return None


def check_something_to_infer(volume: Volume, mask: Any = None, skip_below: float | None = None,
                             slab_bytes: int = 64 << 20) -> None:
    """Refuse a ``--mask`` without foreground, or a ``--skip-below`` above every voxel of the
    volume, before any crop is inferred: every crop would be skipped and the labels empty.

    Exact, not sampled: the mask, and the volume for ``skip_below``, are read a slab at a time
    until a foreground voxel (a voxel at or above ``skip_below``) turns up — on a usable input
    the first slabs. Only a refused input is read whole.
    """
    if mask is not None and not any(np.any(slab) for slab in _slabs(mask, slab_bytes)):
        raise InputError("--mask has no foreground (no nonzero voxel): every crop would be skipped and the labels empty; "
                         "check the mask (nonzero = foreground), or drop --mask")
    if skip_below is not None:
        top = -math.inf
        for slab in _slabs(volume.data, slab_bytes):
            top = max(top, float(slab.max()))
            if top >= skip_below:
                return
        raise InputError(f"--skip-below {skip_below:g} is above every voxel of the volume (its maximum is {top:g}): "
                         "every crop would be skipped and the labels empty; lower it, or drop --skip-below")


def _slabs(data: Any, slab_bytes: int) -> Iterator[np.ndarray]:
    """``data`` ``[X, Y, Z]`` (an array or lazy view) read a Z slab of about ``slab_bytes`` at a time."""
    x, y, z = data.shape
    step = max(1, slab_bytes // max(1, x * y * np.dtype(data.dtype).itemsize))
    for z0 in range(0, z, step):
        yield np.asarray(data[:, :, z0:z0 + step])


def channel_warning(volume: Volume) -> str | None:
    """Which channel a multi-channel input gave when ``--channel`` did not choose."""
    if volume.channel_from != "default":
        return None
    return (
        f"{volume.path} has {volume.channels} channels; segmenting channel {volume.channel} "
        f"(the default for more than 3); pick another with --channel 0..{volume.channels - 1}"
    )


def axes_warning(volume: Volume) -> str | None:
    """A plain 3-D stack read in the default order whose last axis is much shorter than the
    other two: Z is usually the short one, so the stack was likely saved with Z last."""
    if volume.axes_from != "default" or volume.channels != 1:
        return None
    rows, columns, slices = volume.shape
    if 4 * columns > min(rows, slices):
        return None
    return (
        f"{volume.path} reads as {describe_shape(volume.shape)} (axes ZYX): its last axis is much shorter than the others, "
        "as Z usually is; if the stack was saved with Z last, declare its order with --axes (e.g. --axes YXZ or XYZ)"
    )


def empty_result_warning(instances: int, labels: np.ndarray) -> str | None:
    """No instances, or instances covering under ``EMPTY_FRACTION`` of the volume: name the
    likely causes and the option for each."""
    return empty_result_text(instances, np.count_nonzero(labels) / max(1, labels.size))


def empty_result_text(instances: int, covered: float) -> str | None:
    """`empty_result_warning` from the fraction of voxels labelled (a blockwise run's sum)."""
    if instances and covered >= EMPTY_FRACTION:
        return None
    found = "no instances found" if not instances else f"{instances} instances cover only {covered:.4%} of the volume"
    return (
        f"{found}; likely causes: intensities the model does not expect (try --normalize percentile), "
        "the wrong channel (--channel), the wrong axis order (--axes), or the model's constants "
        "(re-export with skoots export --dataset-mean/--dataset-std or --prob-threshold)"
    )
