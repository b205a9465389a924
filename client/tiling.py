"""Steps 2 and 5 of the reference semantics: where crops start and which voxels each one writes."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Triple", "tile_starts", "owned_intervals", "Crop", "crop_grid"]

Triple = tuple[int, int, int]


def tile_starts(length: int, crop: int, overlap: int) -> list[int]:
    """Start offsets of the crops along one axis.

    With ``c = min(crop, length)`` and step ``s = c - 2 * overlap``, starts are
    ``0, s, 2s, ...`` while ``< length``, each snapped to ``min(p, length - c)`` so every crop
    is full size; duplicates are dropped. An axis with ``s <= 0`` is a single crop.

    Examples
    --------
    >>> tile_starts(600, 300, 10)
    [0, 280, 300]
    >>> tile_starts(7, 20, 5)
    [0]
    """
    if length < 1 or crop < 1 or overlap < 0:
        raise ValueError(f"need length >= 1, crop >= 1, overlap >= 0; got {length}, {crop}, {overlap}")
    c = min(crop, length)
    step = c - 2 * overlap
    if step <= 0:
        return [0]
    starts: list[int] = []
    for p in range(0, length, step):
        snapped = min(p, length - c)
        if not starts or snapped != starts[-1]:
            starts.append(snapped)
    return starts


def owned_intervals(
    starts: Sequence[int], crop: int, overlap: int, length: int, reference_borders: bool = False
) -> list[tuple[int, int]]:
    """The interval ``[lo, hi)`` each crop writes along one axis.

    A crop's interior is ``[start + overlap, start + c - overlap)``; one that touches the
    volume's edge also writes its margin on that side (docs/SEMANTICS.md's deviation), unless
    ``reference_borders``. Where interiors overlap the later crop wins, so each crop owns its
    interior up to where the next one's begins: the result does not depend on arrival order.
    """
    c = min(crop, length)
    bounds = []
    for p in starts:
        lo, hi = p + overlap, p + c - overlap
        if not reference_borders:
            lo = 0 if p == 0 else lo
            hi = length if p + c == length else hi
        bounds.append((lo, max(lo, hi)))
    return [
        (lo, min(hi, bounds[i + 1][0]) if i + 1 < len(bounds) else hi) for i, (lo, hi) in enumerate(bounds)
    ]


@dataclass(frozen=True)
class Crop:
    """One crop: its place in the grid order, where it starts, and what it writes."""

    index: int
    start: Triple
    size: Triple
    owned: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]

    @property
    def source(self) -> tuple[slice, slice, slice]:
        """Slices of the owned region in the volume."""
        x, y, z = self.owned
        return slice(*x), slice(*y), slice(*z)

    @property
    def local(self) -> tuple[slice, slice, slice]:
        """Slices of the owned region inside the crop."""
        x, y, z = (slice(lo - s, hi - s) for (lo, hi), s in zip(self.owned, self.start))
        return x, y, z

    @property
    def window(self) -> tuple[slice, slice, slice]:
        """Slices of the whole crop in the volume."""
        x, y, z = (slice(s, s + c) for s, c in zip(self.start, self.size))
        return x, y, z


def crop_grid(shape: Triple, crop: Triple, overlap: Triple, reference_borders: bool = False) -> list[Crop]:
    """All crops of an ``[X, Y, Z]`` volume, x-outer and z-inner (the reference's order)."""
    if len(shape) != 3 or len(crop) != 3 or len(overlap) != 3:
        raise ValueError("shape, crop and overlap need three values (X, Y, Z)")
    per_axis: list[list[tuple[int, tuple[int, int]]]] = []
    for length, c, o in zip(shape, crop, overlap):
        starts = tile_starts(length, c, o)
        per_axis.append(list(zip(starts, owned_intervals(starts, c, o, length, reference_borders))))
    sx, sy, sz = (min(c, n) for c, n in zip(crop, shape))
    return [
        Crop(index=i, start=(x[0], y[0], z[0]), size=(sx, sy, sz), owned=(x[1], y[1], z[1]))
        for i, (x, y, z) in enumerate(itertools.product(*per_axis))
    ]
