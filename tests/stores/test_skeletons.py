"""``--skeletons``: each instance's graph, traced (kimimaro) from the skeleton the network
predicted for it, as Neuroglancer precomputed skeletons that CloudVolume reads back, or SWC
beside a local output; with ``--table``, the written graph's length."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

import skoots_client
from skoots_client.voxel_size import VoxelSize

CLIENT = str(Path(sys.executable).parent / "skoots-client")
NM = VoxelSize((4.0, 8.0, 40.0), "nanometer")  # rows 4 nm, columns 8 nm, slices 40 nm


def read_swc(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A tiny SWC reader: vertices (x, y, z), radii and parents (-1 at roots, else 0-based)."""
    rows = [line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    if not rows:
        return np.zeros((0, 3)), np.zeros(0), np.zeros(0, int)
    table = np.array(rows, dtype=np.float64)
    assert np.array_equal(table[:, 0], np.arange(1, len(rows) + 1))  # ids 1..n in order
    parents = table[:, 6].astype(int)
    return table[:, 2:5], table[:, 5], np.where(parents > 0, parents - 1, -1)


def cloudvolume(path: Path) -> object:
    import warnings

    with warnings.catch_warnings():  # google-api-core, imported by CloudVolume, warns about a missing grpcio-status
        warnings.simplefilter("ignore", ImportWarning)
        from cloudvolume import CloudVolume
    return CloudVolume(f"precomputed://file://{path}", progress=False)


def _graph_length(vertices: np.ndarray, edges: np.ndarray) -> float:
    return float(np.linalg.norm(vertices[edges[:, 0]] - vertices[edges[:, 1]], axis=1).sum()) if len(edges) else 0.0


def test_precomputed_skeletons_read_back_by_cloudvolume_inside_their_instances(stores_folder: Path, e2e_repository: Path,
                                                                              tmp_path: Path) -> None:
    out = tmp_path / "seg"
    result = skoots_client.segment(stores_folder / "v.tif", out=f"precomputed://{out}", table=tmp_path / "t.csv", skeletons=True,
                                   voxel_size=NM, repository=e2e_repository, device="cpu", quiet=True)
    labels_zyx = tifffile.imread(stores_folder / "expected.tif")
    assert np.array_equal(result.labels, labels_zyx)  # the labels do not change with --skeletons
    info = json.loads((out / "info").read_text())
    assert info["skeletons"] == "skeletons"
    skeleton_info = json.loads((out / "skeletons" / "info").read_text())
    assert skeleton_info["@type"] == "neuroglancer_skeletons" and len(skeleton_info["transform"]) == 12
    assert skeleton_info["vertex_attributes"] == [{"id": "radius", "data_type": "float32", "num_components": 1}]
    ids = [int(i) for i in json.loads((out / "segment_properties" / "info").read_text())["inline"]["ids"]]
    assert ids == list(range(1, int(labels_zyx.max()) + 1))
    assert sorted(int(p.name) for p in (out / "skeletons").iterdir() if p.name != "info") == ids
    rows = {int(r["label"]): r for r in csv.DictReader(open(tmp_path / "t.csv", newline=""))}
    vol = cloudvolume(out)
    resolution = np.array([8.0, 4.0, 40.0])  # nm per file axis x (columns), y (rows), z
    inside = total = traced = 0
    for segid in ids:
        skeleton = vol.skeleton.get(segid)
        row = rows[segid]
        assert float(row["skeleton_graph_length_nm"]) == pytest.approx(skeleton.cable_length(), rel=1e-6, abs=1e-3)
        if len(skeleton.vertices) == 0:
            continue
        traced += 1
        assert skeleton.radius.dtype == np.float32 and len(skeleton.radius) == len(skeleton.vertices) and (skeleton.radius > 0).all()
        lo = np.array([int(row["bbox_x0"]), int(row["bbox_y0"]), int(row["bbox_z0"])]) * resolution
        hi = np.array([int(row["bbox_x1"]), int(row["bbox_y1"]), int(row["bbox_z1"])]) * resolution
        assert (skeleton.vertices >= lo).all() and (skeleton.vertices < hi).all(), segid  # inside its bounding box, in nm
        voxels = np.round(skeleton.vertices / resolution).astype(int)  # (x, y, z) voxels
        inside += int((labels_zyx[voxels[:, 2], voxels[:, 1], voxels[:, 0]] == segid).sum())
        total += len(voxels)
    assert traced >= 2  # the tiny untrained model's skeletons reach few instances; the demo model's reach most (docs/outputs.md)
    assert inside == total  # every vertex on a voxel of its instance: its own predicted skeleton voxels


def test_swc_beside_local_labels_holds_the_same_graphs(stores_folder: Path, e2e_repository: Path, tmp_path: Path) -> None:
    pre, tif = tmp_path / "seg", tmp_path / "labels.tif"
    kwargs = {"skeletons": True, "voxel_size": NM, "repository": e2e_repository, "device": "cpu", "quiet": True}
    skoots_client.segment(stores_folder / "v.tif", out=f"precomputed://{pre}", **kwargs)
    result = skoots_client.segment(stores_folder / "v.tif", out=tif, **kwargs)
    folder = tmp_path / "labels_skeletons"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.tif", "labels_skeletons", "seg"]
    assert sorted(int(p.stem) for p in folder.iterdir()) == list(range(1, result.instances + 1))
    vol = cloudvolume(pre)
    for segid in range(1, result.instances + 1):
        vertices, radii, parents = read_swc(folder / f"{segid}.swc")  # nm: the voxel size's unit
        skeleton = vol.skeleton.get(segid)
        assert np.allclose(vertices, skeleton.vertices, rtol=1e-5) and np.allclose(radii, skeleton.radius, rtol=1e-5)
        edges = np.array([(i, p) for i, p in enumerate(parents) if p >= 0]).reshape(-1, 2)
        assert len(edges) == len(skeleton.edges)  # a tree: every vertex but the roots has its parent
        assert _graph_length(vertices, edges) == pytest.approx(skeleton.cable_length(), rel=1e-5)
    assert "# skoots-triton skeleton of instance 1; coordinates and radius in nm" in (folder / "1.swc").read_text()


@pytest.mark.parametrize("args", [
    ["--out", "n5://{tmp}/l.n5"],
    ["--out", "{tmp}/l.tif", "--blockwise"],
])
def test_skeletons_where_none_can_be_written_is_one_line_and_writes_nothing(stores_folder: Path, e2e_repository: Path,
                                                                             tmp_path: Path, args: list[str]) -> None:
    run = subprocess.run([CLIENT, "segment", str(stores_folder / "v.tif"), "-r", str(e2e_repository), "--skeletons",
                          *(a.format(tmp=tmp_path) for a in args)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1 and "--skeletons" in run.stderr, run.stderr
    assert list(tmp_path.iterdir()) == []


def test_skeletons_without_an_output_and_over_an_existing_swc_folder_are_refused(stores_folder: Path, e2e_repository: Path,
                                                                                tmp_path: Path) -> None:
    from skoots_client.errors import InputError, OutputError

    with pytest.raises(InputError, match="skeletons=True are written beside the labels"):
        skoots_client.segment(stores_folder / "v.tif", skeletons=True, repository=e2e_repository, quiet=True)
    (tmp_path / "l_skeletons").mkdir()
    with pytest.raises(OutputError, match="l_skeletons exists; pass overwrite=True"):
        skoots_client.segment(stores_folder / "v.tif", out=tmp_path / "l.tif", skeletons=True, repository=e2e_repository, quiet=True)
    assert [p.name for p in tmp_path.iterdir()] == ["l_skeletons"]


def test_labels_into_an_image_gets_swc_beside_it(stores_folder: Path, e2e_repository: Path, tmp_path: Path) -> None:
    import shutil

    image = tmp_path / "img.ome.zarr"
    shutil.copytree(stores_folder / "img.ome.zarr", image)
    result = skoots_client.segment(image, labels_into=image, skeletons=True, repository=e2e_repository, device="cpu", quiet=True)
    folder = tmp_path / "img_skoots_skeletons"
    assert sorted(int(p.stem) for p in folder.iterdir()) == list(range(1, result.instances + 1))
    assert f"skeletons → {folder}" in result.summary
    vertices, _, _ = read_swc(next(p for p in sorted(folder.iterdir()) if read_swc(p)[0].size))
    assert (vertices >= 0).all() and "coordinates and radius in nm" in (folder / "1.swc").read_text()  # the image's unit


@pytest.mark.slow
def test_blockwise_through_the_front_door_has_the_in_memory_ids_and_lengths(stores_folder: Path, e2e_repository: Path,
                                                                            tmp_path: Path) -> None:
    kwargs = {"skeletons": True, "voxel_size": NM, "repository": e2e_repository, "device": "cpu", "quiet": True}
    skoots_client.segment(stores_folder / "v.tif", out=f"precomputed://{tmp_path}/mem", table=tmp_path / "mem.csv", **kwargs)
    skoots_client.segment(stores_folder / "v.tif", out=f"precomputed://{tmp_path}/bw", table=tmp_path / "bw.csv", blockwise=True,
                          workers=1, block=(4, 32, 32), **kwargs)
    mem, bw = ({r["label"]: float(r["skeleton_graph_length_nm"]) for r in csv.DictReader(open(tmp_path / f"{n}.csv", newline=""))}
               for n in ("mem", "bw"))
    assert list(mem) == list(bw)
    assert all(bw[k] == pytest.approx(mem[k], rel=0.25, abs=1.0) for k in mem), (mem, bw)
    vol = cloudvolume(tmp_path / "bw")
    assert all(float(bw[k]) == pytest.approx(vol.skeleton.get(int(k)).cable_length(), rel=1e-6, abs=1e-3) for k in bw)


def test_skeletons_into_s3_are_staged_with_the_labels(stores_folder: Path, e2e_repository: Path, tmp_path: Path) -> None:
    from .stores_support import bucket_keys, s3_with_bucket

    with s3_with_bucket("out") as endpoint:
        result = skoots_client.segment(stores_folder / "v.tif", out="precomputed://s3://out/seg", s3_endpoint=endpoint, skeletons=True,
                                       voxel_size=NM, repository=e2e_repository, device="cpu", quiet=True)
        keys = bucket_keys(endpoint, "out")
        import boto3

        body = boto3.client("s3", endpoint_url=endpoint).get_object(Bucket="out", Key="seg/info")["Body"].read()
    assert json.loads(body)["skeletons"] == "skeletons"
    assert {k for k in keys if k.startswith("seg/skeletons/")} == {"seg/skeletons/info", *(f"seg/skeletons/{i}" for i in range(1, result.instances + 1))}
    assert all(k.startswith("seg/") for k in keys)  # nothing staged is left
