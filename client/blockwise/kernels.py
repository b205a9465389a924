"""resolve.py's numba kernels, at module level so numba's on-disk cache finds them again in every
worker process (kernels made inside a function that capture another kernel compile anew in each
process). Imported on first use: numba loads only when a block is resolved or assigned."""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["walk", "resolve", "landing", "finish", "positive_zeros"]


@numba.njit(inline="always")
def walk(bits, table, x, y, z, scaling, iterations, vo, shape, exact):  # pragma: no cover - compiled
    """``(qx, qy, qz, outside)``: the landing clamped to the volume, and whether a vector read
    (clamped to the volume) fell outside the window ``bits`` at ``vo`` (reads are clamped
    to the window, as postprocess's kernel does)."""
    nx, ny, nz = shape[0], shape[1], shape[2]
    vx, vy, vz = bits.shape[1], bits.shape[2], bits.shape[3]
    sx, sy, sz = scaling[0], scaling[1], scaling[2]
    bx, by, bz = bits[0, x - vo[0], y - vo[1], z - vo[2]], bits[1, x - vo[0], y - vo[1], z - vo[2]], bits[2, x - vo[0], y - vo[1], z - vo[2]]
    if exact and ((bx | by | bz) & 0x7FFF) == 0:
        return x, y, z, False
    ex = np.float32(x) + sx * table[bx]
    ey = np.float32(y) + sy * table[by]
    ez = np.float32(z) + sz * table[bz]
    outside = False
    for _ in range(iterations - 1):
        gx = min(max(int(np.rint(ex)), 0), nx - 1) - vo[0]
        gy = min(max(int(np.rint(ey)), 0), ny - 1) - vo[1]
        gz = min(max(int(np.rint(ez)), 0), nz - 1) - vo[2]
        if not (0 <= gx < vx and 0 <= gy < vy and 0 <= gz < vz):
            outside = True
        qx, qy, qz = min(max(gx, 0), vx - 1), min(max(gy, 0), vy - 1), min(max(gz, 0), vz - 1)
        ex = ex + sx * table[bits[0, qx, qy, qz]]
        ey = ey + sy * table[bits[1, qx, qy, qz]]
        ez = ez + sz * table[bits[2, qx, qy, qz]]
    return (min(max(int(np.rint(ex)), 0), nx - 1), min(max(int(np.rint(ey)), 0), ny - 1),
            min(max(int(np.rint(ez)), 0), nz - 1), outside)


@numba.njit(cache=True, nogil=True)
def resolve(bits, table, labels, scaling, iterations, vo, shape, own):  # pragma: no cover - compiled
    ex, ey, ez = labels.shape
    exact = max(shape[0], shape[1], shape[2]) <= 2**24
    for i in range(ex):
        for j in range(ey):
            for k in range(ez):
                qx, qy, qz, outside = walk(bits, table, i + vo[0], j + vo[1], k + vo[2], scaling, iterations, vo, shape, exact)
                qx, qy, qz = qx - vo[0], qy - vo[1], qz - vo[2]
                if outside:
                    own[i, j, k] = 0xFFFFFFFF
                elif 0 <= qx < ex and 0 <= qy < ey and 0 <= qz < ez:
                    own[i, j, k] = labels[qx, qy, qz]
                else:
                    own[i, j, k] = 0xFFFFFFFE


@numba.njit(cache=True, nogil=True)
def landing(bits, table, points, scaling, iterations, vo, shape, out):  # pragma: no cover - compiled
    exact = max(shape[0], shape[1], shape[2]) <= 2**24
    for n in range(points.shape[0]):
        qx, qy, qz, _ = walk(bits, table, points[n, 0], points[n, 1], points[n, 2], scaling, iterations, vo, shape, exact)
        out[n] = (qx * shape[1] + qy) * shape[2] + qz


@numba.njit(cache=True, nogil=True)
def finish(own, table, bits, half, labels, block, scaling, iterations, vo, lo, shape, out):  # pragma: no cover - compiled
    """A block's ``out`` (flat) from its ``own`` (flat, over the block at ``block[:3]`` of extent
    ``block[3:]``): a resolved voxel through ``table``, a pending one walked over the vectors
    window ``bits`` at ``vo`` to its label in the ``labels`` window at ``lo``; a landed one is
    left to the caller. No per-voxel index arrays: the coordinates come from the flat index."""
    lx, ly, lz = labels.shape
    ey, ez = block[4], block[5]
    exact = max(shape[0], shape[1], shape[2]) <= 2**24
    for n in range(own.shape[0]):
        value = own[n]
        if value < 0xFFFFFFFE:
            out[n] = table[value]
        elif value == 0xFFFFFFFF:
            x = block[0] + n // (ey * ez)
            y = block[1] + (n // ez) % ey
            z = block[2] + n % ez
            qx, qy, qz, _ = walk(bits, half, x, y, z, scaling, iterations, vo, shape, exact)
            out[n] = labels[min(max(qx - lo[0], 0), lx - 1), min(max(qy - lo[1], 0), ly - 1), min(max(qz - lo[2], 0), lz - 1)]


@numba.njit(cache=True, nogil=True)
def positive_zeros(bits):  # pragma: no cover - compiled
    for n in range(bits.shape[0]):
        if bits[n] == 0x8000:
            bits[n] = 0
