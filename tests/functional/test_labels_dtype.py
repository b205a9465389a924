"""``--labels-dtype``: uint32 by default and uint64 on request, the same in every output format, in
memory and blockwise, and in ``result.labels`` — with the same label values (only the type changes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from test_segment_e2e import blobs_volume

import skoots_client
from skoots_client.voxel_size import VoxelSize
from skoots_client.voxel_size_read import read_voxel_size

SHAPE_ZXY = (12, 56, 56)  # 3 x 3 x 2 crops of the e2e model (24x24x8, overlap 4x4x2)
SIZE = VoxelSize((0.25, 0.5, 2.0), "micrometer")
FORMATS = ["labels.tif", "labels.ome.zarr", "n5://labels.n5", "precomputed://labels"]


@pytest.fixture(scope="module")
def volume(tmp_path_factory, e2e_repository: Path) -> tuple[Path, np.ndarray]:
    """A volume and its labels ([Z, Y, X]) as the in-memory mode gives them."""
    folder = tmp_path_factory.mktemp("dtype")
    tifffile.imwrite(folder / "v.tif", blobs_volume(SHAPE_ZXY, seed=3))
    expected = skoots_client.segment(folder / "v.tif", repository=e2e_repository, device="cpu", quiet=True).labels
    assert expected.max() >= 5
    return folder / "v.tif", expected


def destination(name: str, folder: Path) -> str:
    scheme, _, rest = name.rpartition("://")
    return f"{scheme}://{folder / rest}" if scheme else str(folder / rest)


def read_back(name: str, folder: Path) -> np.ndarray:
    """The labels ``[Z, Y, X]`` as another tool reads them (tifffile, zarr, TensorStore), in their stored type."""
    import tensorstore as ts

    if name.endswith(".tif"):
        return tifffile.imread(folder / name)
    if name.endswith(".ome.zarr"):
        return zarr.open_group(str(folder / name), mode="r")["0"][...]
    driver, _, rest = name.partition("://")
    store = ts.open({"driver": "n5" if driver == "n5" else "neuroglancer_precomputed",
                     "kvstore": {"driver": "file", "path": str(folder / rest)}}).result()
    data = store.read().result()
    return (data[..., 0] if data.ndim == 4 else data).T  # x, y, z[, c] → z, y, x


@pytest.mark.parametrize("asked", [None, "uint64"], ids=["default", "uint64"])
@pytest.mark.parametrize("name", FORMATS, ids=["tif", "ome.zarr", "n5", "precomputed"])
def test_in_memory_labels_dtype_in_every_format(e2e_repository: Path, volume, tmp_path: Path, name: str, asked) -> None:
    path, expected = volume
    wanted = np.dtype(asked or "uint32")
    options = {} if asked is None else {"labels_dtype": asked}
    result = skoots_client.segment(path, out=destination(name, tmp_path), voxel_size=SIZE, repository=e2e_repository,
                                   device="cpu", quiet=True, **options)
    assert result.labels.dtype == wanted and np.array_equal(result.labels, expected)
    written = read_back(name, tmp_path)
    assert written.dtype == wanted and np.array_equal(written, expected), name
    if name.endswith(".tif"):  # uint64 is neither ImageJ's nor OME's: the voxel size still comes back
        assert read_voxel_size(tmp_path / name) == SIZE


@pytest.mark.parametrize("name,asked", [("labels.ome.zarr", "uint64"), ("n5://labels.n5", None)], ids=["ome.zarr-uint64", "n5-default"])
def test_blockwise_labels_dtype(e2e_repository: Path, volume, tmp_path: Path, name: str, asked) -> None:
    """Several blocks; the OME-Zarr's every level and the N5 export carry the type."""
    path, expected = volume
    wanted = np.dtype(asked or "uint32")
    options = {} if asked is None else {"labels_dtype": asked}
    result = skoots_client.segment(path, out=destination(name, tmp_path), blockwise=True, block=(8, 32, 32), workers=1,
                                   repository=e2e_repository, device="cpu", quiet=True, **options)
    assert "blockwise: 4 blocks" in result.summary
    assert "blocks of at most z 12, y 36, x 36 voxels on" in result.summary  # the block actually used, not --block's 32
    written = read_back(name, tmp_path)
    assert written.dtype == wanted and np.array_equal(written, expected), name
    assert result.labels.dtype == wanted and np.array_equal(result.labels, expected)
    if name.endswith(".ome.zarr"):
        group = zarr.open_group(str(tmp_path / name), mode="r")
        assert {group[d["path"]].dtype for d in group.attrs["multiscales"][0]["datasets"]} == {wanted}


def test_the_command_line_takes_labels_dtype(e2e_repository: Path, volume, tmp_path: Path) -> None:
    import subprocess
    import sys

    path, expected = volume
    client = str(Path(sys.executable).parent / "skoots-client")
    done = subprocess.run([client, "segment", str(path), "--out", str(tmp_path / "l.zarr"), "-r", str(e2e_repository),
                           "--device", "cpu", "--labels-dtype", "uint64", "--quiet"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    written = zarr.open_array(str(tmp_path / "l.zarr"), mode="r")[...]
    assert written.dtype == np.uint64 and np.array_equal(written, expected)
    refused = subprocess.run([client, "segment", str(path), "--labels-dtype", "uint16"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "uint32" in refused.stderr and "uint64" in refused.stderr
    with pytest.raises(skoots_client.ClientError, match="labels_dtype='int8'"):
        skoots_client.segment(path, labels_dtype="int8", repository=e2e_repository, quiet=True)
