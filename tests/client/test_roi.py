"""``--roi``: a box of a volume segments, in memory and blockwise, to the labels of that box
segmented on its own (bitwise), written with its offset; only the box is read; a bad box is
one line and exit 2 with nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

import skoots_client
from skoots_client.errors import InputError
from skoots_client.roi import Cutout, parse_roi, resolve_roi
from skoots_client.voxel_size import VoxelSize

CLIENT = str(Path(sys.executable).parent / "skoots-client")
SHAPE_ZYX = (12, 56, 56)
BOX_ZYX = (slice(2, 10), slice(0, 40), slice(8, 56))
SIZE = VoxelSize((0.5, 0.5, 2.0))  # runtime X, Y, Z: y 0.5, x 0.5, z 2 um


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``whole.tif``: float blobs with NaN outside the box (reading a voxel there refuses the
    run); ``box.tif``: the box alone, as a file of its own."""
    from scipy import ndimage

    folder = tmp_path_factory.mktemp("roi")
    field = ndimage.gaussian_filter(np.random.default_rng(3).random(SHAPE_ZYX), sigma=(1, 3, 3))
    zyx = ((field - field.min()) / (field.max() - field.min())).astype(np.float32)
    poisoned = np.full_like(zyx, np.nan)
    poisoned[BOX_ZYX] = zyx[BOX_ZYX]
    tifffile.imwrite(folder / "whole.tif", poisoned)
    tifffile.imwrite(folder / "box.tif", zyx[BOX_ZYX])
    return folder


def test_roi_text_and_pairs_name_the_same_box() -> None:
    shape_xyz = (56, 56, 12)
    expected = ((0, 40), (8, 56), (2, 10))  # runtime X (rows = y), Y (columns = x), Z
    assert resolve_roi(parse_roi("2:10,0:40,8:56"), shape_xyz, None) == expected
    assert resolve_roi(parse_roi("2:10,:40,8:"), shape_xyz, None) == expected
    assert resolve_roi(parse_roi([(2, 10), (0, 40), (8, 56)]), shape_xyz, None) == expected
    assert resolve_roi(parse_roi(BOX_ZYX), shape_xyz, None) == expected
    assert resolve_roi(parse_roi("4:20,0:20,4:28um"), shape_xyz, SIZE) == expected
    assert resolve_roi(parse_roi("4000:19001,0:20000,4000:28000nm"), shape_xyz, SIZE) == ((0, 40), (8, 56), (2, 10))
    assert resolve_roi(parse_roi("3:19,0:19.9,4.2:28um"), shape_xyz, SIZE) == ((0, 40), (8, 56), (1, 10))  # widened to whole voxels


def test_a_cutout_reads_only_its_box() -> None:
    reads = []

    class Recorder:
        shape, dtype = (10, 10, 10), np.dtype(np.uint8)

        def __getitem__(self, key):
            reads.append(key)
            return np.zeros([s.stop - s.start for s in key], np.uint8)

    cutout = Cutout(Recorder(), ((2, 6), (3, 9), (0, 4)))
    assert cutout.shape == (4, 6, 4) and cutout[1:3, :, 2:100].shape == (2, 6, 2)
    assert reads == [(slice(3, 5, 1), slice(3, 9, 1), slice(2, 4, 1))]


@pytest.mark.parametrize("roi, message", [
    ("2:10,0:40", r"give start:stop for z, y and x"),
    ("2:10,0:40,8:x", r": the unit .x. is not a length unit; use one of um, nm"),
    ("2:10,0:40,8:5-6", r"5-6. is not a number"),
    ("2:2,0:40,8:56", r"z 2:2 is empty"),
    ("2:10,0:40,8:57", r"x 8:57 \(voxels\) is outside the volume, which has x 0:56"),
    ("2:10,0:40,8:56um", r"is in um, but the voxel size is not known; give --voxel-size"),
    ("0.5:10,0:40,8:56", r"is not whole voxels"),
])
def test_bad_rois_are_one_line_exit_2_and_write_nothing(volumes: Path, tmp_path: Path, roi: str, message: str) -> None:
    import re

    done = subprocess.run([CLIENT, "segment", str(volumes / "whole.tif"), "--roi", roi, "--out", str(tmp_path / "l.tif"), "-q"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"error: --roi {roi}"), done.stderr
    assert re.search(message, done.stderr), done.stderr
    assert list(tmp_path.iterdir()) == []


def test_roi_refuses_options_that_cover_the_whole_volume(volumes: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^roi='2:10,0:40,8:56': mask= covers the whole volume"):
        skoots_client.segment(volumes / "whole.tif", roi="2:10,0:40,8:56", mask=volumes / "box.tif", out=tmp_path / "l.tif")


def test_roi_in_memory_equals_the_box_alone_and_states_its_offset(volumes: Path, e2e_repository: Path, tmp_path: Path) -> None:
    options = dict(repository=e2e_repository, device="cpu", quiet=True, voxel_size=(2.0, 0.5, 0.5))
    alone = skoots_client.segment(volumes / "box.tif", **options).labels
    assert alone.max() >= 2
    result = skoots_client.segment(volumes / "whole.tif", roi="4:20,0:20,4:28um", out=tmp_path / "l.ome.zarr", **options)
    assert np.array_equal(result.labels, alone)
    assert "roi z 2:10, y 0:40, x 8:56 of z 12, y 56, x 56, offset z 2, y 0, x 8 voxels" in result.summary
    assert np.array_equal(zarr.open_array(str(tmp_path / "l.ome.zarr" / "0"), mode="r")[...], alone)
    datasets = zarr.open_group(str(tmp_path / "l.ome.zarr"), mode="r").attrs["multiscales"][0]["datasets"]
    assert datasets[0]["coordinateTransformations"][1] == {"type": "translation", "translation": [4.0, 0.0, 4.0]}
    with pytest.raises(InputError, match="NaN"):  # what the box keeps out
        skoots_client.segment(volumes / "whole.tif", **options)


@pytest.mark.slow
def test_roi_blockwise_equals_the_box_alone_and_reads_only_the_box(volumes: Path, e2e_repository: Path, tmp_path: Path) -> None:
    options = dict(repository=e2e_repository, device="cpu", quiet=True)
    alone = skoots_client.segment(volumes / "box.tif", **options).labels
    result = skoots_client.segment(volumes / "whole.tif", roi=((2, 10), (0, 40), (8, 56)), out=f"n5://{tmp_path}/l.n5",
                                   blockwise=True, block=(4, 16, 16), workers=2, **options)
    assert "roi z 2:10, y 0:40, x 8:56" in result.summary
    import tensorstore as ts

    store = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": str(tmp_path / "l.n5")}}).result()
    assert np.array_equal(store.read().result().T, alone)
    import json

    assert json.loads((tmp_path / "l.n5" / "attributes.json").read_text())["offset"] == [8.0, 0.0, 2.0]
