"""A block's nonzero voxels as (flat index, values): the form blockwise intermediates take.

Skeleton labels, masked vectors and assigned ids are mostly zero (background, or outside the
probability mask), so a block keeps only its nonzero voxels: ``at`` their C-order flat indices
in the block (ascending) and ``values`` ``[..., n]``. A window of the volume is rebuilt by
scattering the part of each block it overlaps into zeros; since ``at`` is sorted, the voxels of
a range of X planes are one contiguous run, found by binary search. Pure array functions.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Region = Sequence[tuple[int, int]]


def index_dtype(voxels: int) -> np.dtype:
    """The flat-index dtype of a block of ``voxels``."""
    return np.dtype(np.uint32 if voxels < 2**32 else np.int64)


def to_sparse(dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(at, values)`` of the voxels of ``dense`` ``[..., X, Y, Z]`` nonzero in any leading
    channel; ``values`` is ``[..., n]``.

    A float ``-0.0`` counts as zero (and comes back as ``+0.0``): the masked vectors are the
    mask times ``tanh``, so about half the background is ``-0.0``, and ``p + S * -0.0`` is
    ``p`` exactly, as for ``+0.0`` — the embedding, and so the labels, are the same.

    Examples
    --------
    >>> to_sparse(np.array([[[0, 4], [0, 7]]]))
    (array([1, 3], dtype=uint32), array([4, 7]))
    """
    spatial = dense.shape[-3:]
    flat = np.ascontiguousarray(dense).reshape(-1, math.prod(spatial))
    if flat.dtype.kind == "f":  # compare bits without the sign (NumPy's float16 compares are slow)
        bits, magnitude = flat.view(f"u{flat.dtype.itemsize}"), (1 << (8 * flat.dtype.itemsize - 1)) - 1
        channels = [channel & magnitude for channel in bits]
    else:
        channels = list(flat)
    nonzero = channels[0] != 0
    for channel in channels[1:]:
        nonzero |= channel != 0
    at = np.flatnonzero(nonzero)
    values = flat[:, at]
    return at.astype(index_dtype(math.prod(spatial))), values.reshape(*dense.shape[:-3], len(at))


def x_range(at: np.ndarray, extent: Sequence[int], lo: int, hi: int) -> slice:
    """The run of ``at`` (sorted flat indices in a block of ``extent``) in X planes ``lo .. hi-1``."""
    plane = int(extent[1]) * int(extent[2])
    key = np.array([lo * plane, hi * plane], at.dtype)  # in at's dtype: no converted copy of at
    first, last = np.searchsorted(at, key)
    return slice(int(first), int(last))


def scatter(out: np.ndarray, window: Region, block: Region, at: np.ndarray, values: np.ndarray) -> None:
    """Write a block's nonzero voxels that fall inside ``window`` into ``out`` (``[..., X, Y, Z]``
    over ``window``, global ``[lo, hi)`` per axis). ``at``/``values`` may be the block's whole
    arrays or memory maps: only the X planes inside the window are read."""
    extent = [hi - lo for lo, hi in block]
    lo = [max(w0, b0) - b0 for (w0, _), (b0, _) in zip(window, block)]
    hi = [min(w1, b1) - b0 for (_, w1), (b0, b1) in zip(window, block)]
    if any(h <= l for l, h in zip(lo, hi)):
        return
    run = x_range(at, extent, lo[0], hi[0])
    at = np.asarray(at[run], np.int64)
    values = np.asarray(values[..., run])
    y, z = (at // extent[2]) % extent[1], at % extent[2]
    x = at // (extent[1] * extent[2])
    inside = (y >= lo[1]) & (y < hi[1]) & (z >= lo[2]) & (z < hi[2])
    size = [w1 - w0 for w0, w1 in window]
    offset = [b0 - w0 for (w0, _), (b0, _) in zip(window, block)]
    where = ((x[inside] + offset[0]) * size[1] + y[inside] + offset[1]) * size[2] + z[inside] + offset[2]
    flat = out.reshape(*out.shape[:-3], math.prod(size))
    flat[..., where] = values[..., inside]


def first_appearances(at: np.ndarray, values: np.ndarray, block: Region, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Each distinct nonzero value of a sparse block and the smallest linear index over the
    volume of ``shape`` (C order) where it appears: what a block adds to the volume's order of
    first appearance. ``at`` ascending in the block is ascending over the volume too."""
    unique, first = np.unique(values, return_index=True)
    extent = [hi - lo for lo, hi in block]
    local = np.unravel_index(np.asarray(at[first], np.int64), extent)
    linear = np.ravel_multi_index(tuple(c + lo for c, (lo, _) in zip(local, block)), tuple(shape))
    return unique, linear.astype(np.int64)
