"""The precomputed label pyramid's arithmetic: which scales a volume gets, and a scale's labels
from the scale below (pure NumPy, used alike by the in-memory writer and the blockwise stage,
so both write the same bits).

Method: the *mode* of each block of ``factor`` voxels (what Igneous writes for segmentations,
its COUNTLESS), not nearest: an overview then shows each place's most common object, where
nearest keeps whichever object sits at a block's corner, and both keep every id a real one (no
averaging). Background (0) counts like any label, so objects do not swell at coarse scales; a
tie goes to the smallest label among the tied (a tie between background and an object:
background), which is independent of voxel order. A block cut short by the volume's end takes
the mode of the voxels it has.

Factors (Igneous' near-isotropic rule, in its 2x2x1 / 2x2x2 form): X and Y halve at every
scale; Z halves too once it is no longer at least twice as coarse as X and Y (``4x4x40`` nm
gives ``8x8x40``, ``16x16x40``, ``32x32x40``, then ``64x64x80``); an axis of one voxel never
halves. Scales are added until the X/Y extent fits in one chunk (so the coarsest scale is one
chunk across, the overview Neuroglancer opens at): ``ceil(log2(max(X, Y) / chunk))`` of them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["step_factor", "scale_sizes", "scale_geometry", "mode_downsample"]


def step_factor(size: Sequence[int], resolution: Sequence[float]) -> tuple[int, int, int]:
    """The factor from a scale of ``size`` and ``resolution`` (file order x, y, z) to the next:
    2 along x and y, 2 along z unless z is at least twice as coarse as x and y; 1 along an axis
    of one voxel."""
    x, y, z = (float(r) for r in resolution)
    halve_z = z < 2 * max(x, y)
    return (2 if size[0] > 1 else 1, 2 if size[1] > 1 else 1, 2 if halve_z and size[2] > 1 else 1)


def scale_sizes(size: Sequence[int], resolution: Sequence[float], chunk: int) -> list[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """``(size, factor from the scale below)`` of every scale, file order, level 0 first (factor
    ``(1, 1, 1)``): scales are added while the x/y extent exceeds ``chunk``."""
    size3 = (int(size[0]), int(size[1]), int(size[2]))
    res = [float(r) for r in resolution]
    scales = [(size3, (1, 1, 1))]
    while max(size3[0], size3[1]) > chunk:
        factor = step_factor(size3, res)
        size3 = tuple(math.ceil(n / f) for n, f in zip(size3, factor))  # type: ignore[assignment]
        res = [r * f for r, f in zip(res, factor)]
        scales.append((size3, factor))
    return scales


def scale_geometry(size: Sequence[int], resolution: Sequence[float], voxel_offset: Sequence[int], chunk: int,
                   scale: int) -> tuple[list[int], list[float], list[int]]:
    """Scale ``scale``'s size, resolution and ``voxel_offset`` (file order) from level 0's: the
    factors so far times the resolution, the size and offset divided by them, rounded up and down
    (as CloudVolume's ``add_scale``: coarse voxels start at the volume's first voxel, so an offset
    that the factor does not divide places a scale up to a voxel of level 0 off)."""
    scales = scale_sizes(size, resolution, chunk)
    total = [math.prod(f[axis] for _, f in scales[1:scale + 1]) for axis in range(3)]
    return (list(scales[scale][0]), [float(r) * f for r, f in zip(resolution, total)],
            [int(o) // f for o, f in zip(voxel_offset, total)])


def mode_downsample(labels: np.ndarray, factor: Sequence[int]) -> np.ndarray:
    """The mode of each ``factor`` block of 3-D ``labels`` (ties: the smallest label; blocks cut
    by the array's end: the mode of the voxels they hold); shape ``ceil(shape / factor)``.

    Examples
    --------
    >>> mode_downsample(np.array([[[1], [2]], [[2], [0]]]), (2, 2, 1)).ravel().tolist()
    [2]
    """
    if labels.ndim != 3 or len(factor) != 3 or min(factor) < 1:
        raise ValueError(f"mode_downsample takes a 3-D array and 3 factors of at least 1, not {labels.shape} and {factor}")
    out = np.empty(tuple(math.ceil(n / f) for n, f in zip(labels.shape, factor)), labels.dtype)
    pieces = []
    for n, f in zip(labels.shape, factor):  # per axis: the whole blocks, then the block cut short
        whole = n // f * f
        axis = [(slice(0, whole), slice(0, whole // f), f)] if whole else []
        if whole < n:
            axis.append((slice(whole, n), slice(whole // f, whole // f + 1), n - whole))
        pieces.append(axis)
    for piece in itertools.product(*pieces):
        source, target, block = zip(*piece)
        out[target] = _mode_of_blocks(labels[source], block)
    return out


def _mode_of_blocks(labels: np.ndarray, block: Sequence[int]) -> np.ndarray:
    """`mode_downsample` of an array whose shape ``block`` divides, in slabs along the first
    axis (bounded temporaries); blocks of one label (most, in a segmentation) are that label
    without counting."""
    (a, b, c), (x, y, z) = block, labels.shape
    k = a * b * c
    out = np.empty((x // a, y // b, z // c), labels.dtype)
    rows = a * max(1, _SLAB // max(1, y * z * a))
    for start in range(0, x, rows):
        part = labels[start:start + rows]
        values = part.reshape(part.shape[0] // a, a, y // b, b, z // c, c).transpose(0, 2, 4, 1, 3, 5).reshape(-1, k)
        first = values[:, 0].copy()
        if k > 1:
            mixed = np.flatnonzero((values[:, 1:] != first[:, None]).any(axis=1))
            first[mixed] = _mode_of_rows(values[mixed])
        out[start // a:(start + part.shape[0]) // a] = first.reshape(-1, y // b, z // c)
    return out


_SLAB = 1 << 22  # voxels of labels per slab: temporaries of tens of MiB whatever the volume


def _mode_of_rows(values: np.ndarray) -> np.ndarray:
    """Each row's most common value, the smallest of those tied: each pair of columns compared
    once, on contiguous columns."""
    columns = np.ascontiguousarray(values.T)
    counts = np.ones(columns.shape, np.uint8)
    for i, j in itertools.combinations(range(len(columns)), 2):
        same = columns[i] == columns[j]
        counts[i] += same
        counts[j] += same
    most = counts.max(axis=0)
    out = np.full(columns.shape[1], np.iinfo(values.dtype).max, values.dtype)
    for column, count in zip(columns, counts):
        np.minimum(out, np.where(count == most, column, out), out=out)
    return out
