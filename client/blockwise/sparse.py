"""A block's nonzero voxels as (flat index, values): the form blockwise intermediates take.

Skeleton labels, masked vectors and assigned ids are mostly zero (background, or outside the
probability mask), so a block keeps only its nonzero voxels: ``at`` their C-order flat indices
in the block (ascending) and ``values`` ``[..., n]``. A window of the volume is rebuilt by
scattering the part of each block it overlaps into zeros; since ``at`` is sorted, the voxels of
a range of X planes are one contiguous run, found by binary search. Pure array functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import postprocess

__all__ = ["Region", "index_dtype", "to_sparse", "x_range", "scatter", "volume_first_appearances"]

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
    bits = flat.view(f"u{flat.dtype.itemsize}")  # NumPy's float16 compares are slow: test the bits
    magnitude = bits.dtype.type(np.iinfo(bits.dtype).max >> (1 if flat.dtype.kind == "f" else 0))
    nonzero = (bits[0] & magnitude) != 0
    for channel in bits[1:]:
        nonzero |= (channel & magnitude) != 0
    at = np.flatnonzero(nonzero)
    n = len(at)
    values = flat[:, at]
    at = at.astype(index_dtype(math.prod(spatial)))
    return at, values.reshape(*dense.shape[:-3], n)


def x_range(at: np.ndarray, extent: Sequence[int], lo: int, hi: int) -> slice:
    """The run of ``at`` (sorted flat indices in a block of ``extent``) in X planes ``lo .. hi-1``."""
    plane = int(extent[1]) * int(extent[2])
    key = np.array([lo * plane, hi * plane], at.dtype)  # in at's dtype: no converted copy of at
    first, last = at.searchsorted(key)  # an ndarray's, or a ranged reader's (ranged.py): reads only what it needs
    return slice(int(first), int(last))


def scatter(out: np.ndarray, window: Region, block: Region, at: np.ndarray, values: np.ndarray) -> None:
    """Write a block's nonzero voxels that fall inside ``window`` into ``out`` (``[..., X, Y, Z]``
    over ``window``, global ``[lo, hi)`` per axis). ``at``/``values`` may be the block's whole
    arrays or ranged readers (ranged.py): only the X planes inside the window are read."""
    extent = [hi - lo for lo, hi in block]
    lo = [max(w0, b0) - b0 for (w0, _), (b0, _) in zip(window, block)]
    hi = [min(w1, b1) - b0 for (_, w1), (b0, b1) in zip(window, block)]
    if any(h <= l for l, h in zip(lo, hi)):
        return
    run = x_range(at, extent, lo[0], hi[0])
    size = [w1 - w0 for w0, w1 in window]
    offset = [b0 - w0 for (w0, _), (b0, _) in zip(window, block)]
    flat = out.reshape(-1, math.prod(size))
    values = np.asarray(values[..., run]).reshape(len(flat), -1)
    if values.dtype.kind == "f":  # numba has no float16: move the bits
        flat, values = flat.view(f"u{flat.dtype.itemsize}"), values.view(f"u{values.dtype.itemsize}")
    kernel = _kernel("scatter", _numba_scatter)
    kernel(np.asarray(at[run]), values.astype(flat.dtype, copy=False), flat, np.array([*extent, *lo, *hi, *size, *offset], np.int64))


_kernels: dict[str, Any] = {}


def _kernel(name: str, build: Callable[[], Any]) -> Any:
    """A numba kernel, compiled (or loaded from numba's cache) on first use in this process."""
    if name not in _kernels:
        _kernels[name] = build()
    return _kernels[name]


def _numba_scatter() -> Any:
    import numba

    @numba.njit(cache=True, nogil=True)
    def scatter(at, values, out, geometry):  # pragma: no cover - compiled
        ey, ez = geometry[1], geometry[2]
        ly, lz, hy, hz = geometry[4], geometry[5], geometry[7], geometry[8]
        sy, sz = geometry[10], geometry[11]
        ox, oy, oz = geometry[12], geometry[13], geometry[14]
        plane = ey * ez
        for i in range(at.shape[0]):
            a = np.int64(at[i])
            x = a // plane
            rest = a - x * plane
            y = rest // ez
            z = rest - y * ez
            if ly <= y < hy and lz <= z < hz:
                where = ((x + ox) * sy + y + oy) * sz + z + oz
                for c in range(values.shape[0]):
                    out[c, where] = values[c, i]

    return scatter


def volume_first_appearances(at: np.ndarray, values: np.ndarray, block: Region, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Each distinct nonzero value of a sparse block (in order of first appearance) and the
    smallest linear index over the volume of ``shape`` (C order) where it appears: what a block
    adds to the volume's order of first appearance. ``at`` ascending in the block is ascending
    over the volume too."""
    unique, first = postprocess.first_appearances(np.asarray(values))
    extent = [hi - lo for lo, hi in block]
    local = np.unravel_index(np.asarray(at[first], np.int64), extent)
    linear = np.ravel_multi_index(tuple(c + lo for c, (lo, _) in zip(local, block)), tuple(shape))
    return unique, linear.astype(np.int64)
