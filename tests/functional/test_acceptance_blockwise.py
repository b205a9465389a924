"""Issue 11's acceptance run: ``segment vol.ome.zarr --blockwise --out labels.ome.zarr`` equals the
in-memory labels bitwise on a volume with hundreds of objects crossing blocks — with two real
tritonservers and with the model in-process, on a LocalCluster and on a joined ``dask scheduler``
cluster. Minutes on 2 cores: ``python -m pytest -m acceptance tests/functional/test_acceptance_blockwise.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from test_blockwise_e2e import dask_cluster, labels_of  # noqa: F401 - a fixture
from test_segment_e2e import blobs_volume, run_client

pytestmark = pytest.mark.acceptance
SHAPE_ZXY = (40, 800, 800)  # 25.6 Mvoxels of the tests' model (crop 24x24x8): ~10,000 crops
BLOCK = "160,160,40"  # 5 x 5 x 1 blocks of 10 x 10 x 10 crops


@pytest.fixture(scope="module")
def acceptance_volume(tmp_path_factory, e2e_repository: Path) -> tuple[Path, Path]:
    """An OME-Zarr input and the in-memory mode's OME-Zarr labels of it."""
    from ome_zarr.writer import write_image

    folder = tmp_path_factory.mktemp("acceptance-blockwise")
    image = folder / "vol.ome.zarr"
    # Chunked as microscopy OME-Zarr is: ome-zarr's default is one chunk for this volume, which every
    # crop would decode whole.
    write_image(blobs_volume(SHAPE_ZXY, seed=11), zarr.open_group(str(image), mode="w"), axes="zyx",
                storage_options={"chunks": (40, 160, 160)})
    expected = folder / "memory.ome.zarr"
    done = run_client("segment", str(image), "-r", str(e2e_repository), "--device", "cpu", "--out", str(expected), timeout=1800)
    assert done.returncode == 0, done.stderr
    return image, expected


@pytest.mark.parametrize("served", [True, False], ids=["two-tritonservers", "in-process"])
@pytest.mark.parametrize("joined", [False, True], ids=["local-cluster", "joined-scheduler"])
def test_blockwise_ome_zarr_equals_in_memory_with_hundreds_of_objects(
    served, joined, acceptance_volume, e2e_repository: Path, request, tmp_path: Path
) -> None:
    from conftest import start_server

    image, expected_path = acceptance_volume
    expected = labels_of(expected_path)
    assert expected.max() >= 200, f"only {expected.max()} objects"
    argv = ["segment", str(image), "--blockwise", "--block", BLOCK, "--device", "cpu", "--out", str(tmp_path / "labels.ome.zarr")]
    argv += ["--scheduler", request.getfixturevalue("dask_cluster")] if joined else ["--workers", "2"]
    servers = [start_server(e2e_repository), start_server(e2e_repository)] if served else []
    try:
        argv += [a for s in servers for a in ("--url", s.grpc_url)] if served else ["-r", str(e2e_repository)]
        done = run_client(*argv, timeout=1800)
    finally:
        for server in servers:
            server.stop()
    assert done.returncode == 0, done.stderr
    got = zarr.open_group(str(tmp_path / "labels.ome.zarr"), mode="r")
    want = zarr.open_group(str(expected_path), mode="r")
    assert "blockwise: 25 blocks" in done.stdout
    assert sorted(got.array_keys()) == sorted(want.array_keys())
    for level in want.array_keys():  # every pyramid level, bitwise
        assert got[level].dtype == want[level].dtype and np.array_equal(got[level][...], want[level][...]), level
