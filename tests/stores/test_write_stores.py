"""``--out precomputed://…`` and ``n5://…``: a Neuroglancer segmentation (compressed_segmentation,
resolution in nm, segment_properties from the instance table; sharded past a size) and an N5
dataset, which CloudVolume and TensorStore read back as the TIFF run's labels; staged, so a
failed or refused write leaves nothing at the destination."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import skoots_client
from skoots_client.errors import InputError, OutputError
from skoots_client.stores import parse, writer
from skoots_client.volume_read import open_labels
from skoots_client.voxel_size import VoxelSize

from .stores_support import cloudvolume_zyx as cloudvolume_at
from .stores_support import expected_labels

CLIENT = str(Path(sys.executable).parent / "skoots-client")
NM = VoxelSize((4.0, 8.0, 40.0), "nanometer")  # rows 4 nm, columns 8 nm, slices 40 nm


def cloudvolume_zyx(path: Path) -> np.ndarray:
    return cloudvolume_at(f"precomputed://file://{path}")


def tensorstore_zyx(path: Path, driver: str) -> np.ndarray:
    import tensorstore as ts

    store = ts.open({"driver": driver, "kvstore": {"driver": "file", "path": str(path)}}).result()
    data = store.read().result()
    return (data[..., 0] if data.ndim == 4 else data).T


def test_precomputed_out_is_a_segmentation_with_the_tables_properties(stores_folder: Path, e2e_repository: Path, tmp_path: Path) -> None:
    out = tmp_path / "seg"
    text = skoots_client.segment(stores_folder / "v.tif", out=f"precomputed://{out}", table=tmp_path / "t.csv", voxel_size=NM,
                                 repository=e2e_repository, device="cpu", quiet=True).summary
    assert f"→ precomputed://{out}\n" in text
    assert f"\nview in Neuroglancer: skoots-client view precomputed://{out} --raw {stores_folder / 'v.tif'}" in text
    assert "neuroglancer-demo" not in text  # a local output has no public link
    expected = expected_labels(stores_folder)
    assert np.array_equal(cloudvolume_zyx(out), expected) and np.array_equal(tensorstore_zyx(out, "neuroglancer_precomputed"), expected)
    info = json.loads((out / "info").read_text())
    scale = info["scales"][0]
    assert (info["type"], info["data_type"], info["segment_properties"]) == ("segmentation", "uint32", "segment_properties")
    assert scale["encoding"] == "compressed_segmentation" and scale["resolution"] == [8.0, 4.0, 40.0] and "sharding" not in scale
    rows = list(csv.DictReader(open(tmp_path / "t.csv", newline="")))
    inline = json.loads((out / "segment_properties" / "info").read_text())["inline"]
    assert inline["ids"] == [r["label"] for r in rows]
    numbers = {p["id"]: p["values"] for p in inline["properties"]}
    assert np.allclose(numbers["volume_nm3"], [float(r["volume_nm3"]) for r in rows], rtol=1e-6)
    assert inline["properties"][0]["values"][0].startswith("volume ") and ", length " in inline["properties"][0]["values"][0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg", "t.csv"]  # nothing staged is left
    measured = subprocess.run([CLIENT, "measure", f"precomputed://{out}", "--out", str(tmp_path / "m.csv"), "--no-skeleton"],
                              capture_output=True, text=True, timeout=120)
    assert measured.returncode == 0, measured.stderr
    again = list(csv.DictReader(open(tmp_path / "m.csv", newline="")))
    assert [(r["label"], r["voxels"], r["volume_nm3"]) for r in again] == [(r["label"], r["voxels"], r["volume_nm3"]) for r in rows]


def test_sharded_precomputed_and_n5_read_back_equal(tmp_path: Path) -> None:
    labels_xyz = np.random.default_rng(1).integers(0, 300, (40, 56, 12)).astype(np.uint32)
    writer.write_store_labels(parse(f"precomputed://{tmp_path}/sharded"), labels_xyz, voxel_size=NM, chunk=8, shard_log2=1, shard_past=0)
    scale = json.loads((tmp_path / "sharded" / "info").read_text())["scales"][0]
    assert scale["sharding"]["@type"] == "neuroglancer_uint64_sharded_v1"
    assert sorted(p.suffix for p in (tmp_path / "sharded" / scale["key"]).iterdir()) == [".shard"] * 12  # 2x2x2 chunks each
    zyx = labels_xyz.transpose(2, 0, 1)
    assert np.array_equal(cloudvolume_zyx(tmp_path / "sharded"), zyx)
    assert np.array_equal(tensorstore_zyx(tmp_path / "sharded", "neuroglancer_precomputed"), zyx)
    writer.write_store_labels(parse(f"n5://{tmp_path}/l.n5"), labels_xyz.astype(np.uint16), voxel_size=NM)
    attributes = json.loads((tmp_path / "l.n5" / "attributes.json").read_text())
    assert attributes["dimensions"] == [56, 40, 12] and attributes["axes"] == ["x", "y", "z"]
    assert attributes["resolution"] == [8.0, 4.0, 40.0] and attributes["units"] == ["nm"] * 3 and attributes["dataType"] == "uint16"
    assert np.array_equal(tensorstore_zyx(tmp_path / "l.n5", "n5"), zyx)
    assert np.array_equal(np.asarray(open_labels(tmp_path / "l.n5").data), labels_xyz)


def test_default_shards_are_256_cubes_and_one_export_box_each(tmp_path: Path) -> None:
    import tensorstore as ts

    created = writer.spec(parse(f"precomputed://{tmp_path}/big"), "precomputed", (1100, 1024, 600), np.uint32, NM, shard_past=0)
    shard = ts.open(created).result().chunk_layout.write_chunk.shape
    assert tuple(shard) == (256, 256, 256, 1)
    assert len(writer.write_boxes((1100, 1024, 600), shard)) == 5 * 4 * 3  # the runtime's X (1100 rows) is the file's y
    small = writer.spec(parse(f"precomputed://{tmp_path}/small"), "precomputed", (1100, 1024, 600), np.uint32, NM)
    assert "sharding" not in small["scale_metadata"]  # 0.68 Gvoxel: below SHARD_PAST


def test_a_refused_or_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    labels_xyz = np.ones((8, 8, 4), np.uint32)
    url = parse(f"precomputed://{tmp_path}/seg")
    writer.write_store_labels(url, labels_xyz, voxel_size=NM)
    with pytest.raises(OutputError, match=rf"--out precomputed://{tmp_path}/seg exists; pass --overwrite to replace it"):
        writer.write_store_labels(url, labels_xyz, voxel_size=NM)
    writer.write_store_labels(url, 2 * labels_xyz, voxel_size=NM, overwrite=True)
    assert cloudvolume_zyx(tmp_path / "seg").max() == 2

    def broken(*args, **kwargs):
        raise OutputError("disk full")

    monkeypatch.setattr(writer, "add_properties", broken)
    with pytest.raises(OutputError, match="disk full"):
        writer.write_store_labels(parse(f"precomputed://{tmp_path}/new"), labels_xyz, voxel_size=NM, properties=[{"label-value": 1}])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg"]
    with pytest.raises(InputError, match=rf"^save_intermediates=True writes beside a local out=, not precomputed://{tmp_path}/i; drop it, or write to a local path"):
        skoots_client.segment(tmp_path / "v.tif", out=f"precomputed://{tmp_path}/i", save_intermediates=True)
    for text, message in {
        f"zarr://{tmp_path}/x.zarr": "Zarr is written to a local NAME.zarr or NAME.ome.zarr path; to a URL write precomputed:// or n5://",
        "precomputed://http://127.0.0.1:1/x": "HTTP is read-only; write to a path, s3:// or gs://",
        f"n5://{tmp_path}/no/such/x.n5": f"folder {tmp_path}/no/such does not exist; create it first",
    }.items():
        with pytest.raises(OutputError, match=f"--out {text}: {message}"):
            writer.check_store_destination(parse(text), overwrite=False)


def test_segment_writes_n5_from_the_command_line(stores_folder: Path, e2e_repository: Path, tmp_path: Path) -> None:
    result = subprocess.run([CLIENT, "segment", str(stores_folder / "v.tif"), "--out", f"n5://{tmp_path}/l.n5", "-r", str(e2e_repository),
                             "--device", "cpu", "-q"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert np.array_equal(tensorstore_zyx(tmp_path / "l.n5", "n5"), expected_labels(stores_folder))
