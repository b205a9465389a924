"""Issue 27 (2): what the user reads names axes as the user gives them, z, y, x, never the
runtime's X, Y, Z (rows, columns, slices)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_api import blobs

import skoots_client as skoots
from skoots_client.errors import InputError
from skoots_client.voxel_size import VoxelSize


def test_a_voxel_size_shows_z_y_x() -> None:
    """``voxel_size=(3, 2, 1)`` given as z, y, x printed as ``VoxelSize(xyz=(2.0, 1.0, 3.0))``."""
    from skoots_client.api import voxel_size_value

    size = voxel_size_value((3, 2, 1), None)
    assert repr(size) == "VoxelSize(z=3.0, y=2.0, x=1.0, unit='micrometer')"
    assert size.zyx == (3.0, 2.0, 1.0) and repr(VoxelSize((1.0, 1.0, 1.0), None)) == "VoxelSize(z=1.0, y=1.0, x=1.0, unit=None)"


def test_a_bad_voxel_size_is_reported_as_given() -> None:
    """``voxel_size=(-1, 1, 1)`` was reported as ``--voxel-size '1.0,1.0,-1.0'``."""
    with pytest.raises(InputError, match=r"^voxel_size=\(-1\.0, 1\.0, 1\.0\) \(z, y, x\): sizes must be positive"):
        skoots.segment(np.zeros((8, 8, 8), np.uint8), voxel_size=(-1, 1, 1))


@pytest.mark.parametrize("options, line", [
    (dict(crop=(4, 8, 8), overlap=(0, 0, 0)), "crop z 4, y 8, x 8 is below the network's minimum of 8 voxels per axis; choose a crop of at least 8 on every axis"),
    (dict(crop=(8, 16, 16), overlap=(4, 2, 2)), "crop z 8, y 16, x 16 with overlap z 4, y 2, x 2 keeps nothing of a crop: each crop size must exceed twice its overlap"),
    (dict(crop=(0, 16, 16)), "crop z 0, y 16, x 16 must be positive on every axis"),
])
def test_crop_and_overlap_are_named_z_y_x(e2e_repository: Path, options: dict, line: str) -> None:
    """``crop=(4, 8, 8)`` was reported as ``crop (8, 8, 4)`` (the runtime's X, Y, Z)."""
    with pytest.raises(InputError) as refused:
        skoots.segment(blobs((12, 40, 36)), model=e2e_repository, device="cpu", quiet=True, **options)
    assert str(refused.value) == line


def test_a_bad_block_is_named_z_y_x(tmp_path: Path) -> None:
    """``block=(0, 8, 8)`` was reported as ``--block 8,8,0``."""
    import tifffile

    tifffile.imwrite(tmp_path / "v.tif", np.zeros((8, 8, 8), np.uint8))
    with pytest.raises(InputError, match=r"^block z 0, y 8, x 8: block sizes must be positive$"):
        skoots.segment(tmp_path / "v.tif", out=tmp_path / "l.zarr", blockwise=True, block=(0, 8, 8))
