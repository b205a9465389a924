"""What a perfect network would answer: fields for random tubes, shared by tests and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def ideal_outputs(shape_xyz: Sequence[int], count: int, scaling: Sequence[float], radius: float = 4.0, seed: int = 0):
    """What a perfect network would answer for ``count`` random tubes: ``(vectors, skeleton)``,
    float16 ``[3, X, Y, Z]`` and uint8 ``[X, Y, Z]``, over the whole volume.

    Skeletons are short random segments; every voxel within ``radius`` of one is object, with
    the vector ``(nearest skeleton voxel - p) / scaling`` (clipped to [-1, 1]); others are 0.
    Tubes may touch: both sides of a comparison see the same fields.
    """
    rng = np.random.default_rng(seed)
    shape = np.array(shape_xyz)
    skeleton = np.zeros(tuple(shape_xyz), bool)
    for _ in range(count):
        start = rng.uniform(0, shape - 1)
        direction = rng.normal(size=3) * (1.0, 1.0, 0.3)
        direction /= np.linalg.norm(direction)
        points = start + np.linspace(-10, 10, 40)[:, None] * direction
        points = np.clip(points.round(), 0, shape - 1).astype(int)
        skeleton[tuple(points.T)] = True
    distance, nearest = ndimage.distance_transform_edt(~skeleton, return_indices=True)
    vectors = np.empty((3, *shape_xyz), np.float16)
    inside = distance <= radius
    for axis in range(3):
        offset = (nearest[axis] - np.arange(shape_xyz[axis]).reshape([-1 if a == axis else 1 for a in range(3)])) / np.float32(scaling[axis])
        vectors[axis] = np.clip(offset, -1, 1) * inside
    return vectors, skeleton.view(np.uint8)
