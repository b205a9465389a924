"""``--roi``: segment a box of a larger volume, written as a cutout that knows where it sits.

The box is given in z, y, x order as napari and Fiji name the axes, counted from the volume's
first voxel (index 0, whatever offset the file states): ``z0:z1,y0:y1,x0:x1`` in voxels (half
open, as Python slices; an empty side is the volume's start or end: ``:,100:300,:``), or with a
length unit after the last number (``0:2,0:10,0:10um``) in physical units of the voxel size,
widened to whole voxels (start rounded down, stop rounded up). The API takes the same text, or
three ``(start, stop)`` pairs or slices in z, y, x (voxels).

Only the box is ever read: the cutout is a view (`Cutout`), and blockwise workers cut
the same box (blockwise/stages.py). The labels equal segmenting the cutout on its own, and
their metadata carries the input's offset plus the box's start (client/origin.py).
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from skoots_export.contract.errors import OptionError
from skoots_export.contract.units import LENGTH_UNITS, length_unit

from .errors import InputError
from .volume import Volume

__all__ = ["Box", "EXAMPLE", "RoiText", "parse_roi", "resolve_roi", "describe_box", "Cutout", "cut"]

Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]  # (start, stop) along the runtime's X, Y, Z
EXAMPLE = "e.g. --roi 0:40,100:612,100:612 (z, y, x voxels) or --roi 0:2,0:10,0:10um"
_UNIT_LETTERS = string.ascii_letters + "µμå"  # a unit suffix: the trailing run of these


@dataclass(frozen=True)
class RoiText:
    """``--roi`` as given, checked for its form: ``(start, stop)`` per z, y, x (None = the
    volume's edge), and the unit (an NGFF unit name) for a physical box, None for voxels."""

    text: str
    zyx: tuple[tuple[float | None, float | None], ...]
    unit: str | None = None


def parse_roi(value: Any) -> RoiText | None:
    """``--roi`` text (or the API's pairs / slices in z, y, x) checked for its form only: the
    volume and voxel size it needs come later (`resolve_roi`).

    >>> parse_roi("0:8,10:50,:").zyx
    ((0.0, 8.0), (10.0, 50.0), (None, None))
    """
    if value is None:
        return None
    if not isinstance(value, str):
        return _pairs(value)
    text = value.strip().replace(" ", "")
    numbers = text.rstrip(_UNIT_LETTERS)
    suffix = text[len(numbers):]
    unit = None
    if suffix:
        try:
            unit = length_unit(suffix, "the unit")
        except OptionError as e:
            raise InputError(f"--roi {value}: {e}; {EXAMPLE}") from None
    parts = numbers.split(",")
    if len(parts) != 3 or any(p.count(":") != 1 for p in parts):
        raise InputError(f"--roi {value}: give start:stop for z, y and x, separated by commas; {EXAMPLE}")
    zyx: list[tuple[float | None, float | None]] = []
    for part in parts:
        ends: list[float | None] = []
        for end in part.split(":"):
            try:
                ends.append(None if end == "" else float(end))
            except ValueError:
                raise InputError(f"--roi {value}: {end!r} is not a number; {EXAMPLE}") from None
        zyx.append((ends[0], ends[1]))  # one ":" per part, checked above
    roi = RoiText(str(value), tuple(zyx), unit)
    _check_ends(roi)
    return roi


def _pairs(value: Any) -> RoiText:
    """``roi=`` as three ``(start, stop)`` pairs or slices in z, y, x (voxels)."""
    try:
        items = list(value)
        zyx = []
        for item in items:
            if isinstance(item, slice):
                if item.step not in (None, 1):
                    raise ValueError("a step")
                start, stop = item.start, item.stop
            else:
                start, stop = item
            zyx.append((None if start is None else float(start), None if stop is None else float(stop)))
    except (TypeError, ValueError):
        raise InputError(f"roi={value!r}: give three (start, stop) pairs or slices in z, y, x, or the --roi text") from None
    if len(zyx) != 3:
        raise InputError(f"roi={value!r}: give three (start, stop) pairs or slices in z, y, x, or the --roi text")
    text = ",".join(":".join("" if v is None else f"{v:g}" for v in pair) for pair in zyx)
    roi = RoiText(text, tuple(zyx))
    _check_ends(roi)
    return roi


def _check_ends(roi: RoiText) -> None:
    for axis, (start, stop) in zip("zyx", roi.zyx):
        if any(v is not None and not np.isfinite(v) for v in (start, stop)):
            raise InputError(f"--roi {roi.text}: {axis} is not a finite number; {EXAMPLE}")
        if roi.unit is None and any(v is not None and not float(v).is_integer() for v in (start, stop)):
            raise InputError(f"--roi {roi.text}: {axis} {start}:{stop} is not whole voxels; give integers, or a unit (um, nm) after the last number")
        if start is not None and stop is not None and stop <= start:
            raise InputError(f"--roi {roi.text}: {axis} {start:g}:{stop:g} is empty; the stop must be after the start")
        if start is not None and start < 0:
            raise InputError(f"--roi {roi.text}: {axis} starts at {start:g}, before the volume; starts count from 0")


def resolve_roi(roi: RoiText, shape_xyz: Sequence[int], voxel_size: Any) -> Box:
    """The box in voxels along the runtime's ``[X, Y, Z]`` of a volume of ``shape_xyz``.

    Raises
    ------
    InputError
        A physical box without a known voxel size, or a box not inside the volume.
    """
    x, y, z = (int(n) for n in shape_xyz)
    sizes_zyx = (1.0, 1.0, 1.0)
    if roi.unit is not None:
        if voxel_size is None or voxel_size.unit is None:
            raise InputError(f"--roi {roi.text} is in {LENGTH_UNITS[roi.unit][0]}, but the voxel size is not known; "
                             "give --voxel-size, or the --roi in voxels")
        factor = LENGTH_UNITS[roi.unit][1] / LENGTH_UNITS[voxel_size.unit][1]
        sizes_zyx = tuple(s / factor for s in voxel_size.zyx)  # voxel size in the roi's unit
    box_zyx = []
    for axis, (start, stop), n, size in zip("zyx", roi.zyx, (z, x, y), sizes_zyx):
        lo = 0 if start is None else math.floor(start / size + 1e-9)
        hi = n if stop is None else math.ceil(stop / size - 1e-9)
        if hi > n or lo >= n:
            raise InputError(f"--roi {roi.text}: {axis} {lo}:{hi} (voxels) is outside the volume, which has {axis} 0:{n}; "
                             "give a box inside it")
        if hi <= lo:
            raise InputError(f"--roi {roi.text}: {axis} is empty in voxels; widen it")
        box_zyx.append((lo, hi))
    (z0, z1), (r0, r1), (c0, c1) = box_zyx
    return ((r0, r1), (c0, c1), (z0, z1))


def describe_box(box: Box) -> str:
    """``z 0:8, y 10:50, x 0:56`` (voxels, as napari names the axes)."""
    (r0, r1), (c0, c1), (z0, z1) = box
    return f"z {z0}:{z1}, y {r0}:{r1}, x {c0}:{c1}"


class Cutout:
    """A box of an ``[X, Y, Z]`` array-like, seen as an array of the box's shape: slicing (by
    slices or single indices) reads only the box's part of the parent."""

    def __init__(self, array: Any, box: Box) -> None:
        self.array = array  # the whole volume's view (its store's windows count the chunks read as zeros)
        self._box = box
        self.shape = tuple(hi - lo for lo, hi in box)
        self.dtype = array.dtype
        self.ndim = 3

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (3 - len(key))
        inner: list[Any] = []
        for k, n, (lo, _) in zip(key, self.shape, self._box):
            if isinstance(k, slice):
                start, stop, step = k.indices(n)
                inner.append(slice(lo + start, lo + max(start, stop), step))
            elif not -n <= int(k) < n:
                raise IndexError(f"index {k} is outside a cutout axis of {n}")
            else:
                inner.append(lo + int(k) % n)
        return np.asarray(self.array[tuple(inner)])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:, :, :]
        return out if dtype is None else out.astype(dtype)


def cut(volume: Volume, box: Box | None) -> Volume:
    """``volume`` restricted to ``box`` (a lazy view); the volume itself without one."""
    if box is None or tuple(box) == tuple((0, n) for n in volume.shape):
        return volume
    return replace(volume, data=Cutout(volume.data, box))
