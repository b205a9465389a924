"""Steps 6-10 of the reference semantics as array functions, for NumPy (CPU) and CuPy (GPU).

Each function takes arrays and returns arrays; the array module is the input's. On the CPU the
fused embedding + assignment is a numba kernel, on the GPU a CuPy elementwise kernel: both
visit each voxel once and hold no full-volume coordinate arrays.

Not split: steps 6-10 are one reference, each the only implementation of its step with its CPU
and GPU kernels beside it; the blockwise engine maps these same functions over blocks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .choices import Device

__all__ = [
    "array_module", "device_array_module", "dilation_half_widths", "dilate_skeleton", "label_skeleton", "assign_instances",
    "halo_widths", "assign_window", "labels_dtype", "labels_dtype_note", "renumber_labels", "remove_small_instances",
    "clear_outside", "instance_sizes", "first_appearances", "apply_table",
]

try:  # CuPy is the optional `gpu` extra
    import cupy as _cupy
except ImportError:  # pragma: no cover - depends on the machine
    _cupy = None


def array_module(array: Any) -> Any:
    """``cupy`` for CuPy arrays, else ``numpy``."""
    return _cupy.get_array_module(array) if _cupy is not None else np


def _ndimage(xp: Any) -> Any:
    if xp is np:  # imported when needed: Dask workers and the CPU path seldom do
        from scipy import ndimage

        return ndimage
    import cupyx.scipy.ndimage

    return cupyx.scipy.ndimage


def device_array_module(device: Device | str = Device.AUTO) -> Any:
    """The array module for ``device``: ``cpu`` → NumPy, ``gpu`` → CuPy, ``auto`` → CuPy when
    a GPU is usable, else NumPy.

    Raises
    ------
    ValueError
        ``gpu`` was asked for and CuPy or a GPU is missing, or ``device`` is unknown.
    """
    try:
        device = Device(device)
    except ValueError:
        raise ValueError(f"--device {device!r}: choose auto, cpu or gpu") from None
    if device is Device.CPU:
        return np
    usable = False
    if _cupy is not None:
        try:
            usable = _cupy.cuda.runtime.getDeviceCount() > 0
        except Exception:  # noqa: BLE001 - no driver, no device: all mean "no GPU"
            usable = False
    if usable:
        return _cupy
    if device is Device.GPU:
        raise ValueError(
            "--device gpu needs CuPy and an NVIDIA GPU: pip install \"cupy-cuda12x>=13\" (the gpu extra's CuPy) on a GPU machine, or use --device cpu"
        )
    return np


def dilation_half_widths(dilations_3d: int, dilations_2d: int) -> tuple[int, int, int]:
    """Half-widths of the box equal to the seed's dilations.

    ``dilations_3d`` 3x3x3 max filters then ``dilations_2d`` 3x3x1 max filters dilate by a box
    of half-widths ``(n3 + n2, n3 + n2, n3)``: with the seed's 1 and 3, a 9x9x3 box.
    """
    if dilations_3d < 0 or dilations_2d < 0:
        raise ValueError("dilation counts must not be negative")
    return (dilations_3d + dilations_2d, dilations_3d + dilations_2d, dilations_3d)


def dilate_skeleton(skeleton: Any, half_widths: Sequence[int]) -> Any:
    """Binary dilation of one crop's ``[X, Y, Z]`` skeleton by a box, zero outside the crop.

    Separable: one 1-D maximum filter per axis. Returns uint8 (0/1). On the CPU a numba kernel
    runs each pass in one sweep (this runs once per crop, beside inference, so its cost
    bounds how many crops per second one client can take); on the GPU cupyx's filters.

    Examples
    --------
    >>> s = np.zeros((5, 5, 5), np.uint8); s[2, 2, 2] = 1
    >>> int(dilate_skeleton(s, (1, 1, 0)).sum())
    9
    """
    xp = array_module(skeleton)
    if skeleton.ndim != 3 or len(half_widths) != 3 or any(h < 0 for h in half_widths):
        raise ValueError(f"need a 3-D skeleton and three non-negative half-widths, got {skeleton.shape}, {half_widths}")
    if xp is np:
        out = (np.ascontiguousarray(skeleton) != 0).view(np.uint8)
        if out.size:
            kernel = _numba_cache.get("dilate") or _numba_cache.setdefault("dilate", _numba_dilate())
            for axis, h in enumerate(half_widths):
                if h:
                    a, n = int(np.prod(out.shape[:axis])), out.shape[axis]
                    src = out.reshape(a, n, -1)
                    dst = np.empty_like(src)
                    kernel(src, int(h), dst)
                    out = dst.reshape(out.shape)
        return out
    out = (skeleton != 0).view(xp.uint8) if skeleton.dtype == xp.bool_ else (skeleton != 0).astype(xp.uint8)
    ndi = _ndimage(xp)
    for axis, h in enumerate(half_widths):
        if h and out.size:
            out = ndi.maximum_filter1d(out, size=2 * h + 1, axis=axis, mode="constant", cval=0)
    return out


def _numba_dilate() -> Any:
    import numba

    # Serial: a crop is small, and the client's threads already run crops beside inference.
    @numba.njit(cache=True, nogil=True)
    def dilate(src, h, out):  # pragma: no cover - compiled
        """Along axis 1 of ``[A, N, B]``: out[a, i, b] = any(src[a, i-h : i+h+1, b]).

        Sweeps i upward remembering, per b, the last index holding a one up to i + h: the
        window holds a one when that index is at least i - h. The inner loops run along b,
        contiguous in memory; with B == 1 (the last axis) a scalar does."""
        na, n, nb = src.shape
        if nb == 1:  # lines along the contiguous axis: one scalar per line
            for a in range(na):
                at = -(h + 1) - n
                for j in range(min(h, n - 1) + 1):
                    if src[a, j, 0]:
                        at = j
                for i in range(n):
                    j = i + h
                    if 0 < i and j < n and src[a, j, 0]:
                        at = j
                    out[a, i, 0] = at >= i - h
            return
        last = np.empty(nb, np.int64)
        for a in range(na):
            last[:] = -(h + 1) - n
            for j in range(min(h, n - 1) + 1):
                for b in range(nb):
                    if src[a, j, b]:
                        last[b] = j
            for i in range(n):
                j = i + h
                if 0 < i and j < n:
                    for b in range(nb):
                        if src[a, j, b]:
                            last[b] = j
                for b in range(nb):
                    out[a, i, b] = last[b] >= i - h

    return dilate


def label_skeleton(skeleton: Any) -> tuple[Any, int]:
    """Connected components of a binary ``[X, Y, Z]`` skeleton, 6-connected.

    Exact over the whole volume (no blocks, no seam heuristics, no int16 overflow). The labels
    are uint16 when the count fits, else uint32: on large volumes the label volume is one of
    the few full-size arrays alive at the peak of post-processing.
    """
    xp = array_module(skeleton)
    if skeleton.ndim != 3:
        raise ValueError(f"need a 3-D skeleton, got shape {skeleton.shape}")
    if xp is np:
        import cc3d

        labels, count = cc3d.connected_components(
            np.ascontiguousarray(skeleton), connectivity=6, return_N=True, binary_image=True
        )
    else:
        labels = xp.zeros(skeleton.shape, dtype=xp.int32)
        count = _ndimage(xp).label(skeleton != 0, output=labels)
    return labels.astype(_label_dtype(int(count)), copy=False), int(count)


def _label_dtype(count: int) -> np.dtype:
    return np.dtype(np.uint16 if count <= np.iinfo(np.uint16).max else np.uint32)


# __fmul_rn/__fadd_rn: NVRTC would otherwise contract p + S*v into one fused multiply-add,
# whose single rounding differs from the reference's float32 multiply then add.
_ASSIGN_CUDA = r"""
    const long long sx = shape_y * shape_z, sy = shape_z;
    long long p = i;
    const long long x = p / sx, y = (p / sy) % shape_y, z = p % shape_z;
    const long long n = shape_x * sx;
    float ex = __fadd_rn((float)x, __fmul_rn(sxf, (float)vectors[p]));
    float ey = __fadd_rn((float)y, __fmul_rn(syf, (float)vectors[n + p]));
    float ez = __fadd_rn((float)z, __fmul_rn(szf, (float)vectors[2 * n + p]));
    for (int k = 1; k < iterations; ++k) {
        long long qx = min(max((long long)rintf(ex), 0LL), shape_x - 1);
        long long qy = min(max((long long)rintf(ey), 0LL), shape_y - 1);
        long long qz = min(max((long long)rintf(ez), 0LL), shape_z - 1);
        long long q = qx * sx + qy * sy + qz;
        ex = __fadd_rn(ex, __fmul_rn(sxf, (float)vectors[q]));
        ey = __fadd_rn(ey, __fmul_rn(syf, (float)vectors[n + q]));
        ez = __fadd_rn(ez, __fmul_rn(szf, (float)vectors[2 * n + q]));
    }
    long long qx = min(max((long long)rintf(ex), 0LL), shape_x - 1);
    long long qy = min(max((long long)rintf(ey), 0LL), shape_y - 1);
    long long qz = min(max((long long)rintf(ez), 0LL), shape_z - 1);
    out = skeleton_labels[qx * sx + qy * sy + qz];
"""
_assign_kernel_cache: dict[str, Any] = {}


def _assign_gpu(vectors: Any, skeleton_labels: Any, scaling: Sequence[float], iterations: int) -> Any:
    xp = _cupy
    kernel = _assign_kernel_cache.get("assign")
    if kernel is None:
        kernel = xp.ElementwiseKernel(
            "raw float16 vectors, raw L skeleton_labels, float32 sxf, float32 syf, float32 szf, "
            "int64 shape_x, int64 shape_y, int64 shape_z, int32 iterations",
            "L out",
            _ASSIGN_CUDA,
            "skoots_assign",
        )
        _assign_kernel_cache["assign"] = kernel
    out = xp.empty(skeleton_labels.shape, dtype=skeleton_labels.dtype)
    x, y, z = skeleton_labels.shape
    kernel(
        xp.ascontiguousarray(vectors), xp.ascontiguousarray(skeleton_labels),
        np.float32(scaling[0]), np.float32(scaling[1]), np.float32(scaling[2]), x, y, z, np.int32(iterations), out,
    )
    return out


def _numba_assign() -> Any:
    import numba

    # numba has no float16: vectors arrive as their uint16 bits and a 65536-entry table
    # gives each one's exact float32 value. Coordinates are global: the arrays are windows of
    # the volume at ``vo`` (vectors), ``lo`` (skeleton labels) and ``oo`` (out); embeddings are
    # clamped to the volume ``shape``, then (a no-op when the windows hold the halos of
    # docs/SEMANTICS.md) to the window, so a too-small window can never read outside its array.
    @numba.njit(parallel=True, cache=True, nogil=True)
    def assign(bits, table, skeleton_labels, scaling, iterations, out, vo, lo, oo, shape):  # pragma: no cover - compiled
        nx, ny, nz = shape[0], shape[1], shape[2]
        vx, vy, vz = bits.shape[1], bits.shape[2], bits.shape[3]
        lx, ly, lz = skeleton_labels.shape
        sx, sy, sz = scaling[0], scaling[1], scaling[2]
        exact = max(nx, ny, nz) <= 2**24  # every coordinate a float32 holds exactly
        for i in numba.prange(out.shape[0]):
            x = i + oo[0]
            for j in range(out.shape[1]):
                y = j + oo[1]
                for k in range(out.shape[2]):
                    z = k + oo[2]
                    bx, by, bz = bits[0, x - vo[0], y - vo[1], z - vo[2]], bits[1, x - vo[0], y - vo[1], z - vo[2]], bits[2, x - vo[0], y - vo[1], z - vo[2]]
                    if exact and ((bx | by | bz) & 0x7FFF) == 0:
                        # v(p) = ±0: every iteration stays on p (exactly: float32 holds the
                        # coordinate), so the voxel takes the label under it.
                        out[i, j, k] = skeleton_labels[min(max(x - lo[0], 0), lx - 1), min(max(y - lo[1], 0), ly - 1),
                                                       min(max(z - lo[2], 0), lz - 1)]
                        continue
                    ex = np.float32(x) + sx * table[bx]
                    ey = np.float32(y) + sy * table[by]
                    ez = np.float32(z) + sz * table[bz]
                    for _ in range(iterations - 1):
                        qx = min(max(min(max(int(np.rint(ex)), 0), nx - 1) - vo[0], 0), vx - 1)
                        qy = min(max(min(max(int(np.rint(ey)), 0), ny - 1) - vo[1], 0), vy - 1)
                        qz = min(max(min(max(int(np.rint(ez)), 0), nz - 1) - vo[2], 0), vz - 1)
                        ex = ex + sx * table[bits[0, qx, qy, qz]]
                        ey = ey + sy * table[bits[1, qx, qy, qz]]
                        ez = ez + sz * table[bits[2, qx, qy, qz]]
                    qx = min(max(min(max(int(np.rint(ex)), 0), nx - 1) - lo[0], 0), lx - 1)
                    qy = min(max(min(max(int(np.rint(ey)), 0), ny - 1) - lo[1], 0), ly - 1)
                    qz = min(max(min(max(int(np.rint(ez)), 0), nz - 1) - lo[2], 0), lz - 1)
                    out[i, j, k] = skeleton_labels[qx, qy, qz]

    return assign


_numba_cache: dict[str, Any] = {}
_HALF_TABLE = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


def assign_instances(vectors: Any, skeleton_labels: Any, vector_scaling: Sequence[float], iterations: int) -> Any:
    """Steps 8 and 9 fused: each voxel takes the skeleton label its embedding lands on.

    ``e0 = p + S * v(p)``, ``e_i = e_{i-1} + S * v(clamp(round(e_{i-1})))`` for
    ``i < iterations``, ``label(p) = skeleton_labels[clamp(round(e_{N-1}))]``, in float32 on
    float16 vectors, rounding half to even and clamping to the volume. Every voxel is assigned.

    Parameters
    ----------
    vectors : float16 array ``[3, X, Y, Z]``
    skeleton_labels : uint16 or uint32 array ``[X, Y, Z]``
    vector_scaling : the three scale factors ``S``
    iterations : ``N >= 1``

    Returns labels of the skeleton labels' dtype (uint16 or uint32; others become uint32).
    """
    xp = array_module(skeleton_labels)
    if vectors.shape != (3, *skeleton_labels.shape) or skeleton_labels.ndim != 3:
        raise ValueError(f"vectors {vectors.shape} must be [3, *skeleton {skeleton_labels.shape}]")
    if iterations < 1 or len(vector_scaling) != 3:
        raise ValueError("iterations must be at least 1 and vector_scaling hold three numbers")
    if skeleton_labels.dtype not in (np.uint16, np.uint32):
        skeleton_labels = skeleton_labels.astype(np.uint32)
    if xp is not np:
        return _assign_gpu(vectors.astype(xp.float16, copy=False), xp.ascontiguousarray(skeleton_labels), vector_scaling, iterations)
    return _assign_cpu(vectors, (0, 0, 0), skeleton_labels, (0, 0, 0), ((0, n) for n in skeleton_labels.shape),
                       skeleton_labels.shape, vector_scaling, iterations)


def _assign_cpu(vectors: np.ndarray, vectors_at: Sequence[int], skeleton_labels: np.ndarray, labels_at: Sequence[int],
                region: Any, shape: Sequence[int], vector_scaling: Sequence[float], iterations: int,
                out: np.ndarray | None = None) -> np.ndarray:
    region = [tuple(int(v) for v in bounds) for bounds in region]
    kernel = _numba_cache.get("assign") or _numba_cache.setdefault("assign", _numba_assign())
    extent = tuple(hi - lo for lo, hi in region)
    if out is None:
        out = np.empty(extent, dtype=skeleton_labels.dtype)
    elif out.shape != extent or out.dtype != skeleton_labels.dtype or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous {skeleton_labels.dtype} array of shape {extent}")
    kernel(
        np.ascontiguousarray(vectors, dtype=np.float16).view(np.uint16),
        _HALF_TABLE,
        np.ascontiguousarray(skeleton_labels),
        np.asarray(vector_scaling, dtype=np.float32),
        int(iterations),
        out,
        np.asarray(vectors_at, dtype=np.int64),
        np.asarray(labels_at, dtype=np.int64),
        np.asarray([lo for lo, _ in region], dtype=np.int64),
        np.asarray(shape, dtype=np.int64),
    )
    return out


def halo_widths(vector_scaling: Sequence[float], iterations: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """How far outside a block its assignment reads (docs/SEMANTICS.md, halo bounds): skeleton labels
    within ``ceil(N * S) + 1`` and vectors within ``ceil((N - 1) * S) + 1``, per axis.

    Examples
    --------
    >>> halo_widths((60.0, 60.0, 12.0), 2)
    ((121, 121, 25), (61, 61, 13))
    """
    lx, ly, lz = (math.ceil(iterations * abs(s)) + 1 for s in vector_scaling)
    vx, vy, vz = (math.ceil((iterations - 1) * abs(s)) + 1 for s in vector_scaling)
    return (lx, ly, lz), (vx, vy, vz)


def assign_window(
    vectors: np.ndarray,
    vectors_at: Sequence[int],
    skeleton_labels: np.ndarray,
    labels_at: Sequence[int],
    region: Sequence[tuple[int, int]],
    shape: Sequence[int],
    vector_scaling: Sequence[float],
    iterations: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """`assign_instances` for the voxels of ``region`` (``[lo, hi)`` per axis) of a volume
    of ``shape``, from windows of it: ``vectors`` starting at voxel ``vectors_at`` and
    ``skeleton_labels`` at ``labels_at``. Coordinates, rounding and clamping are the whole
    volume's, so with windows that reach `halo_widths` beyond ``region`` (clamped to the
    volume) the result equals the whole volume's assignment restricted to ``region``. CPU only.
    ``out`` (the region's shape, the labels' dtype) is filled and returned when given.
    """
    if vectors.ndim != 4 or vectors.shape[0] != 3 or skeleton_labels.ndim != 3 or len(region) != 3 or len(shape) != 3:
        raise ValueError(f"need vectors [3, x, y, z], 3-D skeleton labels and 3-D region/shape, got {vectors.shape}, {skeleton_labels.shape}")
    if iterations < 1 or len(vector_scaling) != 3:
        raise ValueError("iterations must be at least 1 and vector_scaling hold three numbers")
    for (lo, hi), at, n in zip(region, vectors_at, vectors.shape[1:]):
        if not at <= lo <= hi <= at + n:
            raise ValueError(f"region {region} is not inside the vectors window at {tuple(vectors_at)} of {vectors.shape[1:]}")
    if skeleton_labels.dtype not in (np.uint16, np.uint32, np.uint64):
        skeleton_labels = skeleton_labels.astype(np.uint32)
    return _assign_cpu(vectors, vectors_at, skeleton_labels, labels_at, region, shape, vector_scaling, iterations, out)


def labels_dtype(count: int, asked: str = "uint32") -> np.dtype:
    """The labels' dtype for ``count`` instances, in every output format and in memory: the
    ``asked`` one (``--labels-dtype``; ``uint32`` by default), or ``uint64`` when ``count`` does
    not fit it. The one place the labels' dtype is chosen (docs/SEMANTICS.md, step 10).

    >>> labels_dtype(70_000), labels_dtype(3, "uint64"), labels_dtype(2**32)
    (dtype('uint32'), dtype('uint64'), dtype('uint64'))
    """
    for dtype in (np.dtype(asked), np.dtype(np.uint64)):
        if count <= np.iinfo(dtype).max:
            return dtype
    raise ValueError(f"{count} labels do not fit 64 bits")


def labels_dtype_note(count: int, asked: str = "uint32") -> str | None:
    """The summary's note when `labels_dtype` had to widen the ``asked`` dtype, else None."""
    chosen = labels_dtype(count, asked)
    if chosen == np.dtype(asked):
        return None
    return f"labels are {chosen.name}: {count} instances do not fit {np.dtype(asked).name} (--labels-dtype {np.dtype(asked).name})"


def renumber_labels(labels: Any, asked: str = "uint32") -> tuple[Any, int]:
    """Relabel to ``1..K`` in order of first appearance (0 stays background), as
    `labels_dtype` ``(K, asked)``."""
    xp = array_module(labels)
    if xp is np:
        import fastremap

        renumbered, mapping = fastremap.renumber(labels, preserve_zero=True, in_place=True)
        count = len(mapping) - (1 if 0 in mapping else 0)
        return renumbered.astype(labels_dtype(count, asked), copy=False), count
    values, inverse = xp.unique(labels.ravel(), return_inverse=True)
    offset = 0 if int(values[0]) == 0 else 1
    count = int(values.size) - (1 - offset)
    dtype = labels_dtype(count, asked)
    return (inverse.astype(dtype) + dtype.type(offset)).reshape(labels.shape), count


def remove_small_instances(labels: Any, min_size: int) -> Any:
    """``labels`` with every instance of fewer than ``min_size`` voxels set to background, in
    place (before renumbering, so the survivors keep their order of first appearance).

    Examples
    --------
    >>> remove_small_instances(np.array([[0, 3, 3], [5, 3, 7]], np.uint16), 2).tolist()
    [[0, 3, 3], [0, 3, 0]]
    """
    if min_size < 0:
        raise ValueError(f"min_size {min_size} must not be negative")
    if min_size <= 1 or labels.size == 0:
        return labels
    xp = array_module(labels)
    counts = xp.bincount(labels.ravel())
    small = xp.flatnonzero(counts[1:] < min_size) + 1
    if small.size == 0:
        return labels
    if xp is np:
        import fastremap

        return fastremap.mask(labels, small.tolist(), in_place=True)
    labels[(counts < min_size)[labels] & (labels != 0)] = 0
    return labels


def clear_outside(labels: Any, region: Sequence[tuple[int, int]], keep: Sequence[tuple[int, int]]) -> Any:
    """``labels``, the box ``region`` (``[lo, hi)`` per axis, in the volume's voxels) of a
    volume, with every voxel outside the box ``keep`` set to background, in place (NumPy or
    CuPy): ``--reference-borders``' unwritten frame, for the whole volume or one block.

    Examples
    --------
    >>> clear_outside(np.ones((2, 4), np.uint8), [(0, 2), (2, 6)], [(1, 2), (3, 9)]).tolist()
    [[0, 0, 0, 0], [0, 1, 1, 1]]
    """
    for axis, ((lo, hi), (first, last)) in enumerate(zip(region, keep, strict=True)):
        start = min(max(first - lo, 0), hi - lo)
        stop = min(max(last - lo, start), hi - lo)
        for outside in (slice(0, start), slice(stop, None)):
            labels[(slice(None),) * axis + (outside,)] = 0
    return labels


def instance_sizes(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """How many voxels of ``values`` (a block's assigned ids) hold each of ``labels``: what a
    block adds to each instance's size, summed over blocks before ``--min-size`` applies. CPU."""
    unique, counts = np.unique(np.asarray(values), return_counts=True)
    return counts[np.searchsorted(unique, labels)].astype(np.int64)


def first_appearances(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The nonzero labels of ``labels`` in order of first appearance in C order, and the flat
    (C-order) index where each first appears: what a block contributes to the volume's order
    of first appearance (step 10, blockwise). CPU.

    Examples
    --------
    >>> first_appearances(np.array([[0, 7], [3, 7]], np.uint32))
    (array([7, 3], dtype=uint32), array([1, 2]))
    """
    import fastremap

    flat = np.ascontiguousarray(labels).reshape(-1)
    renumbered, mapping = fastremap.renumber(flat.copy(), preserve_zero=True, in_place=True)
    # Renumbered in order of first appearance: the running maximum steps up exactly there.
    running = np.maximum.accumulate(renumbered)
    at = np.flatnonzero(np.diff(running, prepend=running.dtype.type(0)))
    return flat[at], at


def apply_table(labels: np.ndarray, keys: np.ndarray, values: np.ndarray, dtype: Any) -> np.ndarray:
    """``labels`` with each of ``keys`` replaced by its value (0 stays 0), as ``dtype``.
    Every nonzero label must be one of ``keys`` (a ``KeyError`` otherwise)."""
    import fastremap

    table = {0: 0, **dict(zip(np.asarray(keys).tolist(), np.asarray(values).tolist()))}
    wide = np.asarray(labels).astype(np.promote_types(np.asarray(labels).dtype, dtype), copy=True)
    return fastremap.remap(wide, table, preserve_missing_labels=False, in_place=True).astype(dtype, copy=False)
