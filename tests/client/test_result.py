"""Issue 27 (3, 4): a Segmentation says what it holds before its labels are read, and its
table carries the voxel size its physical columns are in, as ``measure``'s does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from test_api import blobs

import skoots_client as skoots
from skoots_client.result import Segmentation
from skoots_client.voxel_size import VoxelSize


def test_repr_before_and_after_the_labels_are_read(e2e_repository: Path) -> None:
    """Before ``.labels`` the repr said ``[Z, Y, X] = [?, ?, ?]``."""
    result = skoots.segment(blobs((12, 40, 36)), model=e2e_repository, device="cpu", voxel_size=(2, 0.5, 0.5), quiet=True)
    size = "voxel size z 2, y 0.5, x 0.5 um"
    assert repr(result) == f"Segmentation({result.instances} instances, labels [Z, Y, X] = [12, 40, 36] not yet read, {size})"
    assert result.labels.shape == (12, 40, 36)
    assert repr(result) == f"Segmentation({result.instances} instances, [Z, Y, X] = [12, 40, 36], {size})"
    assert result.table.voxel_size == result.voxel_size == VoxelSize((0.5, 0.5, 2.0), "micrometer")
    assert result.table.voxel_size.zyx == (2.0, 0.5, 0.5)


def test_repr_of_written_labels_names_where_they_are(tmp_path: Path) -> None:
    """A blockwise run's labels are read from where they were written, on first use."""
    result = Segmentation(summary="", voxel_size=VoxelSize((1.0, 1.0, 1.0), None), instances=3, written=tmp_path / "l.zarr")
    assert repr(result) == f"Segmentation(3 instances, labels not yet read (from {tmp_path / 'l.zarr'} on first use of .labels), voxel size z 1, y 1, x 1 px)"


def test_measure_and_segment_tables_both_carry_the_voxel_size() -> None:
    labels = np.zeros((4, 8, 8), np.uint32)
    labels[1:3, 2:5, 2:5] = 1
    assert skoots.measure(labels, voxel_size=(2.0, 0.5, 0.5), skeleton=False).voxel_size.zyx == (2.0, 0.5, 0.5)
