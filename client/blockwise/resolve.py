"""What a block decides alone at infer, and the rest of its voxels at assign (steps 8-9 split).

Each voxel's embedding walk (``postprocess.assign_instances``: ``e0 = p + S v(p)``,
``e_i = e_{i-1} + S v(clamp(round(e_{i-1})))``, label at ``clamp(round(e_{N-1}))``, float32
on float16) reads vectors at ``q_0 .. q_{N-2}`` and a label at ``q_{N-1}``. At infer a block
has its own vectors and its own skeleton labels, so a voxel whose reads all fall inside the
block and whose landing does too is *resolved* there (its block-local label); one whose reads
stay inside but whose landing leaves is *landed* (its landing, a volume linear index); one that
reads outside is *pending* and is walked again at assign over its halo's vectors. Same
operations in the same order as ``postprocess``'s kernel, so the labels are bitwise its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["PENDING", "LANDED", "Window", "resolve_block", "finish", "shell_depths", "keep_shell"]

PENDING = np.uint32(0xFFFFFFFF)  # reads a vector outside the block: walked again at assign
LANDED = np.uint32(0xFFFFFFFE)  # lands outside the block: its landing is kept
_HALF = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)  # each float16 bits' exact float32


_cache: dict[str, Any] = {}


def _kernel(name: str) -> Any:
    if not _cache:
        from . import kernels

        _cache.update({k: getattr(kernels, k) for k in kernels.__all__})
    return _cache[name]


def _bits(vectors: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vectors, dtype=np.float16).view(np.uint16)


def _i64(values: Sequence[Any]) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def resolve_block(vectors: np.ndarray, labels: np.ndarray, region: Sequence[tuple[int, int]], shape: Sequence[int],
                  scaling: Sequence[float], iterations: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A block's ``(own, landed_at, landed_to)`` from its vectors ``[3, X, Y, Z]`` and its own
    skeleton labels over ``region`` of a volume of ``shape``: ``own`` (uint32, the block's
    shape) each voxel's block-local label, or `LANDED` / `PENDING`; for the landed voxels
    their flat indices in the block (ascending) and their landings' volume linear indices."""
    own = np.empty(labels.shape, np.uint32)
    lo = _i64([a for a, _ in region])
    scale = np.asarray(scaling, np.float32)
    bits = _bits(vectors)
    _kernel("resolve")(bits, _HALF, labels, scale, int(iterations), lo, _i64(shape), own)
    landed_at = np.flatnonzero(own.ravel() == LANDED).astype(np.uint32)
    points = np.stack(np.unravel_index(landed_at, own.shape), axis=1).astype(np.int64) + lo
    landed_to = np.empty(len(points), np.int64)
    _kernel("landing")(bits, _HALF, points, scale, int(iterations), lo, _i64(shape), landed_to)
    return own, landed_at, landed_to


Window = tuple[np.ndarray, Sequence[int]]  # an array over part of the volume, and the voxel it starts at


def finish(own: np.ndarray, table: np.ndarray, landed: np.ndarray, labels: Window, vectors: Window | None,
           region: Sequence[tuple[int, int]], shape: Sequence[int], scaling: Sequence[float], iterations: int,
           out: np.ndarray) -> np.ndarray:
    """A block's assignment into ``out`` (the block's shape, the labels' dtype) from `resolve_block`'s
    ``own`` and ``landed`` (``[2, n]``: its landed voxels' flat indices and landings), ``table``
    (its local labels → the volume's), the volume's ``labels`` window and, when any voxel is
    pending, the ``vectors`` window: bitwise ``postprocess.assign_window`` over the same windows.
    One pass over ``own`` in a kernel: no index arrays per pending voxel (those cost a worker
    ~50 B per pending voxel at the assign peak)."""
    (window, labels_at), flat = labels, out.reshape(-1)
    vectors_at: Sequence[int]
    own = np.ascontiguousarray(own).reshape(-1)
    if vectors is None:  # nothing pending: the walk reads no vector
        if (own == PENDING).any():
            raise ValueError("pending voxels need their vectors window")
        bits, vectors_at = np.zeros((3, 1, 1, 1), np.uint16), tuple(a for a, _ in region)
    else:
        bits, vectors_at = _bits(vectors[0]), vectors[1]
    block = _i64([*(a for a, _ in region), *(b - a for a, b in region)])
    _kernel("finish")(own, np.ascontiguousarray(table, out.dtype), bits, _HALF, np.ascontiguousarray(window), block,
                      np.asarray(scaling, np.float32), int(iterations), _i64(vectors_at), _i64(labels_at), _i64(shape), flat)
    if landed.shape[1]:  # the landing's label, clamped to the labels window as postprocess's kernel does
        where = np.unravel_index(np.asarray(landed[1], np.int64), tuple(shape))
        at = tuple(np.clip(c - a, 0, n - 1) for c, a, n in zip(where, labels_at, window.shape))
        flat[np.asarray(landed[0], np.int64)] = window[at]
    return out


def shell_depths(scaling: Sequence[float], iterations: int, vector_halo: Sequence[int]) -> tuple[int, ...]:
    """How deep from each face a block's vectors are kept after infer, per axis: what a
    neighbour's window reads (``vector_halo``), and what the block's own pending voxels read
    (a pending voxel lies within ``reach = ceil((N-1)|S|) + 1`` of the face it reads across, and
    reads within ``reach`` of itself; with ``N = 2`` it reads only itself). ``N = 1`` reads no
    vector but a voxel's own, resolved at infer: none are kept.

    Examples
    --------
    >>> shell_depths((60.0, 60.0, 12.0), 2, (61, 61, 13)), shell_depths((4.0, 4.0, 2.0), 3, (9, 9, 5))
    ((61, 61, 13), (18, 18, 10))
    """
    if iterations <= 1:
        return (0, 0, 0)
    reach = [math.ceil((iterations - 1) * abs(s)) + 1 for s in scaling]
    return tuple(max(int(h), r * (1 if iterations == 2 else 2)) for h, r in zip(vector_halo, reach))


def keep_shell(vectors: np.ndarray, region: Sequence[tuple[int, int]], shape: Sequence[int], depths: Sequence[int]) -> np.ndarray:
    """``vectors`` (a block's ``[3, X, Y, Z]`` over ``region``), in place, zero but within
    ``depths`` of each face that has a neighbour in a volume of ``shape`` (a face on the volume's
    edge is read by no one: reads clamp into the volume), and ``-0.0`` as ``+0.0`` (the same
    embedding: ``p + S * -0.0 == p``); what compresses to almost nothing is what no one reads."""
    if not vectors.flags.c_contiguous:
        raise ValueError("keep_shell works in place on a C-contiguous array")
    inner = []
    for (lo, hi), n, d in zip(region, shape, depths):
        a = min(hi - lo, d) if lo > 0 else 0
        b = max(a, hi - lo - d) if hi < n else hi - lo
        inner.append(slice(a, b))
    vectors[(slice(None), *inner)] = 0
    _kernel("positive_zeros")(vectors.reshape(-1).view(np.uint16))
    return vectors
