"""Issue 30 (5): the precomputed label pyramid. `mode_downsample` against a naive loop (odd
shapes, ties, dtypes), the factors and the number of scales, and an in-memory write whose every
scale CloudVolume reads back (``mip=k``) as the mode of the scale below."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from skoots_client.stores import parse, writer
from skoots_client.stores.downsample import mode_downsample, scale_geometry, scale_sizes, step_factor
from skoots_client.voxel_size import VoxelSize

from .stores_support import cloudvolume_zyx

NM = VoxelSize((4.0, 8.0, 40.0), "nanometer")  # runtime X 4 nm, Y 8 nm, Z 40 nm: file x 8, y 4, z 40


def naive_mode(labels: np.ndarray, factor: tuple[int, int, int]) -> np.ndarray:
    """The oracle: each block's most common value, the smallest of those tied."""
    shape = tuple(-(-n // f) for n, f in zip(labels.shape, factor))
    out = np.zeros(shape, labels.dtype)
    for i, j, k in itertools.product(*map(range, shape)):
        block = labels[i * factor[0]:(i + 1) * factor[0], j * factor[1]:(j + 1) * factor[1], k * factor[2]:(k + 1) * factor[2]]
        values, counts = np.unique(block, return_counts=True)
        out[i, j, k] = values[counts == counts.max()].min()
    return out


@pytest.mark.parametrize("dtype", [np.uint8, np.uint32, np.uint64])
@pytest.mark.parametrize("factor", [(2, 2, 1), (2, 2, 2), (1, 2, 2), (1, 1, 1)])
@pytest.mark.parametrize("shape", [(8, 6, 4), (7, 5, 3), (1, 9, 1), (0, 4, 4)])
def test_mode_downsample_is_each_blocks_mode_smallest_on_ties(shape, factor, dtype) -> None:
    labels = np.random.default_rng(sum(shape)).integers(0, 4, shape).astype(dtype)
    got = mode_downsample(labels, factor)
    assert got.dtype == labels.dtype and np.array_equal(got, naive_mode(labels, factor))


def test_background_counts_and_ties_go_to_the_smallest_label() -> None:
    block = np.array([5, 0, 5, 0, 7, 7, 0, 9], np.uint32).reshape(2, 2, 2)  # 0 three times: background wins
    assert mode_downsample(block, (2, 2, 2)).item() == 0
    tie = np.array([5, 5, 3, 3], np.uint32).reshape(2, 2, 1)
    assert mode_downsample(tie, (2, 2, 1)).item() == 3
    huge = np.full((2, 2, 2), np.iinfo(np.uint64).max, np.uint64)  # the largest id survives
    assert mode_downsample(huge, (2, 2, 2)).item() == np.iinfo(np.uint64).max


def test_mode_downsample_refuses_what_is_not_a_volume() -> None:
    with pytest.raises(ValueError, match="a 3-D array and 3 factors of at least 1"):
        mode_downsample(np.zeros((4, 4), np.uint32), (2, 2))
    with pytest.raises(ValueError, match="a 3-D array and 3 factors of at least 1"):
        mode_downsample(np.zeros((4, 4, 4), np.uint32), (2, 0, 2))


def test_factors_halve_z_once_it_is_not_twice_coarser_and_scales_stop_at_one_chunk() -> None:
    scales = scale_sizes((1000, 900, 100), (4.0, 4.0, 40.0), 64)
    assert [f for _, f in scales] == [(1, 1, 1), (2, 2, 1), (2, 2, 1), (2, 2, 1), (2, 2, 2)]  # 8x8x40, 16, 32, then 64x64x80
    assert [s for s, _ in scales][-1] == (63, 57, 50) and max(scales[-2][0][:2]) > 64
    assert [f for _, f in scale_sizes((300, 300, 300), (8.0, 8.0, 8.0), 64)][1:] == [(2, 2, 2)] * 3  # isotropic: 150, 75, 38
    assert len(scale_sizes((64, 64, 5000), (8.0, 8.0, 8.0), 64)) == 1  # X/Y fit one chunk: level 0 only
    assert step_factor((100, 100, 1), (8.0, 8.0, 8.0)) == (2, 2, 1)  # one plane is never halved
    assert scale_geometry((130, 150, 30), (8.0, 8.0, 40.0), (5, 3, 1), 64, 2) == ([33, 38, 30], [32.0, 32.0, 40.0], [1, 0, 1])


def test_in_memory_write_has_every_scale_each_the_mode_of_the_one_below(tmp_path: Path) -> None:
    labels_xyz = np.random.default_rng(2).integers(0, 6, (150, 130, 9)).astype(np.uint32)
    labels_xyz[:20] = 0  # background
    url = f"precomputed://{tmp_path}/seg"
    writer.write_store_labels(parse(url), labels_xyz, voxel_size=NM, offset=(3, 5, 1), chunk=32, shard_log2=1, shard_past=3000)
    scales = json.loads((tmp_path / "seg" / "info").read_text())["scales"]
    assert [s["key"] for s in scales] == ["8_4_40", "16_8_40", "32_16_40", "64_32_80"]  # z halves once x is 32 nm
    assert [s["size"] for s in scales] == [[130, 150, 9], [65, 75, 9], [33, 38, 9], [17, 19, 5]]
    assert [s["voxel_offset"] for s in scales] == [[5, 3, 1], [2, 1, 1], [1, 0, 1], [0, 0, 0]]
    assert [s["chunk_sizes"] for s in scales] == [[[32, 32, 9]], [[32, 32, 9]], [[32, 32, 9]], [[17, 19, 5]]]
    assert [("sharding" in s) for s in scales] == [True, True, True, False]  # 17 x 19 x 5 voxels: below shard_past
    assert all(s["encoding"] == "compressed_segmentation" for s in scales)
    level = labels_xyz
    for mip in range(len(scales)):
        level = level if mip == 0 else naive_mode(level, (2, 2, 2) if mip == 3 else (2, 2, 1))
        assert np.array_equal(cloudvolume_zyx(f"precomputed://file://{tmp_path}/seg", mip=mip).transpose(1, 2, 0), level), mip


def test_a_volume_one_chunk_across_keeps_one_scale(tmp_path: Path) -> None:
    writer.write_store_labels(parse(f"precomputed://{tmp_path}/seg"), np.ones((64, 40, 300), np.uint16), voxel_size=NM)
    assert len(json.loads((tmp_path / "seg" / "info").read_text())["scales"]) == 1
