"""A slow, literal transcription of docs/SEMANTICS.md steps 1-10, for tests to compare against.

Written for clarity, not speed: plain loops over crops, scipy for the morphology, NumPy for
the embedding. It shares no code with the runtime.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage


def starts(length: int, crop: int, overlap: int) -> list[int]:
    c = min(crop, length)
    s = c - 2 * overlap
    if s <= 0:
        return [0]
    out: list[int] = []
    p = 0
    while p < length:
        q = min(p, length - c)
        if q not in out:
            out.append(q)
        p += s
    return out


def normalise(x: np.ndarray) -> np.ndarray:
    scale = 2**16 if x.dtype == np.uint16 else 2**8
    return (x.astype(np.float32) / scale).astype(np.float16)


def reference_segment(
    volume_xyz: np.ndarray,
    model: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    crop: tuple[int, int, int],
    overlap: tuple[int, int, int],
    scaling: tuple[float, float, float],
    half_widths: tuple[int, int, int] = (4, 4, 1),
    iterations: int = 2,
) -> np.ndarray:
    """Labels for ``volume_xyz``; ``model(batch fp16 [1,1,X,Y,Z]) -> (vectors, skeleton)``."""
    shape = volume_xyz.shape
    skeleton = np.zeros(shape, np.uint8)
    vectors = np.zeros((3, *shape), np.float16)
    sizes = [min(c, n) for c, n in zip(crop, shape)]
    for x in starts(shape[0], crop[0], overlap[0]):
        for y in starts(shape[1], crop[1], overlap[1]):
            for z in starts(shape[2], crop[2], overlap[2]):
                origin = (x, y, z)
                window = tuple(slice(p, p + c) for p, c in zip(origin, sizes))
                v, s = model(normalise(volume_xyz[window])[None, None])
                box = tuple(2 * h + 1 for h in half_widths)
                dilated = ndimage.maximum_filter(s[0, 0], size=box, mode="constant", cval=0)
                dest, src = [], []
                for axis in range(3):
                    p, c, o, n = origin[axis], sizes[axis], overlap[axis], shape[axis]
                    lo = 0 if p == 0 else p + o
                    hi = n if p + c == n else p + c - o
                    hi = max(lo, hi)
                    dest.append(slice(lo, hi))
                    src.append(slice(lo - p, hi - p))
                skeleton[tuple(dest)] = dilated[tuple(src)]
                vectors[(slice(None), *dest)] = v[0][(slice(None), *src)]
    labels, _ = ndimage.label(skeleton)
    return reference_assign(vectors, labels, scaling, iterations)


def reference_assign(vectors: np.ndarray, labels: np.ndarray, scaling, iterations: int) -> np.ndarray:
    """Steps 8-9: float32 embedding of float16 vectors, half-to-even rounding, clamped."""
    shape = labels.shape
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"))
    scale = np.asarray(scaling, np.float32).reshape(3, 1, 1, 1)
    limit = np.asarray(shape).reshape(3, 1, 1, 1) - 1
    embedding = grid + scale * vectors.astype(np.float32)
    for _ in range(iterations - 1):
        index = np.clip(np.rint(embedding), 0, limit).astype(np.int64)
        embedding = embedding + scale * vectors.astype(np.float32)[:, index[0], index[1], index[2]]
    index = np.clip(np.rint(embedding), 0, limit).astype(np.int64)
    return labels[index[0], index[1], index[2]]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to renumbering: background matches and labels map one-to-one."""
    if a.shape != b.shape or not np.array_equal(a == 0, b == 0):
        return False
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))
