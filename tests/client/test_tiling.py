from __future__ import annotations

import numpy as np
import pytest
from reference_pipeline import starts as reference_starts

from skoots_client.tiling import crop_grid, owned_intervals, tile_starts


@pytest.mark.parametrize("length", [1, 5, 19, 20, 21, 299, 300, 301, 579, 580, 581, 1000])
@pytest.mark.parametrize("crop,overlap", [(300, 10), (20, 5), (50, 5), (8, 0), (10, 5)])
def test_tile_starts_follow_design(length: int, crop: int, overlap: int) -> None:
    starts = tile_starts(length, crop, overlap)
    assert starts == reference_starts(length, crop, overlap)
    c = min(crop, length)
    assert all(0 <= p <= length - c for p in starts)


def test_tile_starts_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="length >= 1"):
        tile_starts(0, 10, 2)


def paint(shape, crop, overlap, order, reference_borders=False):
    """What the reference's loop writes: each crop's interior in grid order, later wins."""
    out = np.zeros(shape, dtype=np.int64)
    for c in order:
        out[c.source] = c.index + 1
    return out


def naive_paint(shape, crop, overlap, reference_borders=False):
    grid = crop_grid(shape, crop, overlap, reference_borders)
    out = np.zeros(shape, dtype=np.int64)
    for c in grid:
        region = []
        for axis in range(3):
            p, size, o, n = c.start[axis], c.size[axis], overlap[axis], shape[axis]
            lo, hi = p + o, p + size - o
            if not reference_borders:
                lo = 0 if p == 0 else lo
                hi = n if p + size == n else hi
            region.append(slice(lo, max(lo, hi)))
        out[tuple(region)] = c.index + 1
    return out


@pytest.mark.parametrize("shape", [(50, 37, 13), (24, 24, 8), (7, 60, 3), (1, 1, 1)])
@pytest.mark.parametrize("reference_borders", [False, True])
def test_stitching_ignores_arrival_order(shape, reference_borders) -> None:
    crop, overlap = (24, 16, 8), (4, 3, 2)
    grid = crop_grid(shape, crop, overlap, reference_borders)
    expected = naive_paint(shape, crop, overlap, reference_borders)
    rng = np.random.default_rng(0)
    for _ in range(3):
        order = list(grid)
        rng.shuffle(order)
        assert np.array_equal(paint(shape, crop, overlap, order), expected)
    if not reference_borders:
        assert (expected > 0).all(), "every voxel is written"


def test_reference_borders_leave_the_outer_overlap_unwritten() -> None:
    shape, crop, overlap = (50, 40, 20), (24, 16, 8), (4, 3, 2)
    painted = naive_paint(shape, crop, overlap, reference_borders=True)
    assert (painted[:4] == 0).all() and (painted[-4:] == 0).all()
    assert (painted[:, :3] == 0).all() and (painted[:, :, -2:] == 0).all()
    assert (painted[4:-4, 3:-3, 2:-2] > 0).all()


def test_grid_is_x_outer_z_inner_and_crops_are_full_size() -> None:
    grid = crop_grid((600, 300, 40), (300, 300, 20), (10, 10, 5))
    assert [c.start for c in grid][:4] == [(0, 0, 0), (0, 0, 10), (0, 0, 20), (280, 0, 0)]
    assert all(c.size == (300, 300, 20) for c in grid)
    small = crop_grid((5, 300, 3), (300, 300, 20), (10, 10, 5))
    assert [c.size for c in small] == [(5, 300, 3)]


def test_owned_intervals_tile_the_axis() -> None:
    starts = tile_starts(581, 300, 10)
    owned = owned_intervals(starts, 300, 10, 581)
    assert owned[0][0] == 0 and owned[-1][1] == 581
    assert all(a[1] == b[0] for a, b in zip(owned, owned[1:]))
