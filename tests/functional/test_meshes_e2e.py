"""``segment --meshes`` end to end through the tiny model: the command line in memory and the
API blockwise, both to ``precomputed://``; the labels equal the in-memory TIFF's, and
CloudVolume reads a mesh for every instance of ``segment_properties``, inside its bounding box."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import tensorstore as ts
from test_blockwise_e2e import BLOCK_ZYX, volume  # noqa: F401
from test_segment_e2e import run_client

import skoots_client


def labels_zxy(folder: Path) -> np.ndarray:
    data = ts.open({"driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": str(folder)}}).result().read().result()
    return np.asarray(data)[..., 0].transpose(2, 1, 0)  # file x (columns), y (rows), z -> [Z, X (rows), Y (columns)]


def check_meshes(folder: Path, expected_zxy: np.ndarray) -> None:
    with warnings.catch_warnings():  # google-api-core, imported by CloudVolume, warns about a missing grpcio-status
        warnings.simplefilter("ignore", ImportWarning)
        from cloudvolume import CloudVolume

    cloud = CloudVolume(f"precomputed://file://{folder}", progress=False)
    ids = json.loads((folder / "segment_properties" / "info").read_text())["inline"]["ids"]
    assert cloud.info["mesh"] == "mesh" and len(ids) == expected_zxy.max()
    resolution = np.asarray(cloud.resolution, float)
    for i in map(int, ids):
        vertices = np.asarray(cloud.mesh.get(i).vertices)
        where = np.argwhere(expected_zxy == i)[:, [2, 1, 0]]  # file order x, y, z
        low, high = where.min(0) * resolution, (where.max(0) + 1) * resolution
        assert len(vertices) and (vertices >= low - resolution).all() and (vertices <= high + resolution).all(), i


def test_meshes_in_memory_from_the_command_line_and_blockwise_from_the_api(e2e_repository: Path, volume, tmp_path: Path) -> None:  # noqa: F811
    path, expected = volume
    memory = run_client("segment", str(path), "-r", str(e2e_repository), "--out", f"precomputed://{tmp_path}/memory", "--meshes",
                        "--table", str(tmp_path / "m.csv"), "--device", "cpu", "--tile", "crop", "--quiet")
    assert memory.returncode == 0, memory.stderr
    skoots_client.segment(path, out=f"precomputed://{tmp_path}/blockwise", meshes=True, table=tmp_path / "b.csv", blockwise=True,
                          block=BLOCK_ZYX, workers=2, repository=e2e_repository, device="cpu", quiet=True, tile="crop")
    for name in ("memory", "blockwise"):
        assert np.array_equal(labels_zxy(tmp_path / name), expected), name
        check_meshes(tmp_path / name, expected)
