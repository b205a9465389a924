"""Segment N5, Neuroglancer precomputed and Zarr (v2, sharded v3) volumes by path and URL,
local and over HTTP: the TIFF run's labels, bitwise; each format's
voxel size; each bad input one line (exit 2 on the command line) with nothing written.
Blockwise on an N5 input: test_s3.py (its output goes to S3)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

import skoots_client
from skoots_client.errors import InputError
from skoots_client.stores import parse, store_of
from skoots_client.stores.reader import level
from skoots_client.volume_read import read_volume
from skoots_client.voxel_size import VoxelSize
from skoots_client.voxel_size_read import read_voxel_size

from .stores_support import expected_labels, free_port, http_server, one_line

CLIENT = str(Path(sys.executable).parent / "skoots-client")


def sources(folder: Path) -> dict[str, object]:
    return {
        "n5 path": folder / "v.n5" / "s0",
        "n5://": parse(f"n5://{folder}/v.n5/s0"),
        "precomputed path": folder / "pre",
        "precomputed:// scale key": parse(f"precomputed://{folder}/pre/8_4_40"),
        "zarr3:// sharded": parse(f"zarr3://{folder}/sharded.zarr"),
        "file:// detected": parse(f"file://{folder}/sharded.zarr"),
    }


def test_every_format_reads_the_tiffs_voxels_by_window(stores_folder: Path) -> None:
    tiff = read_volume(stores_folder / "v.tif")
    whole = np.asarray(tiff.data)
    for name, source in sources(stores_folder).items():
        volume = read_volume(source)
        assert volume.shape == tiff.shape and volume.dtype == tiff.dtype, name
        assert np.array_equal(np.asarray(volume.data), whole), name
        assert np.array_equal(volume.data[3:17, 5:40, 2:9], whole[3:17, 5:40, 2:9]), name


def test_each_format_states_its_voxel_size(stores_folder: Path) -> None:
    nm = VoxelSize((4.0, 8.0, 40.0), "nanometer")  # runtime X = rows = file y (4 nm), Y = columns = x (8 nm)
    assert read_voxel_size(stores_folder / "v.n5" / "s0") == nm
    assert read_voxel_size(stores_folder / "pre") == nm
    assert read_voxel_size(parse(f"precomputed://{stores_folder}/pre/8_4_40")) == nm
    assert read_voxel_size(parse(f"zarr3://{stores_folder}/sharded.zarr")) is None
    assert read_voxel_size(level(store_of(stores_folder / "v.n5"), 0)) == nm  # --level 0 of an N5 group: s0


def test_segment_over_http_gives_the_tiff_runs_labels(stores_folder: Path, served: str, e2e_repository: Path, tmp_path: Path) -> None:
    expected = expected_labels(stores_folder)
    options = dict(repository=e2e_repository, device="cpu", quiet=True)
    for i, text in enumerate([f"precomputed://{served}/pre", f"{served}/v2.zarr", f"{served}/v.n5/s0"]):
        summary = skoots_client.segment(text, out=tmp_path / f"{i}.tif", level=0 if i == 0 else None, **options).summary
        assert np.array_equal(tifffile.imread(tmp_path / f"{i}.tif"), expected), text
        assert summary.startswith(f"{text}/8_4_40 → " if i == 0 else f"{text} → ")  # --level 0: the scale's key
    assert "voxel size z 40, y 4, x 8 nm" in summary


def test_an_ome_zarr_image_over_http_reads_its_first_level_with_its_axes_and_scale(stores_folder: Path, served: str) -> None:
    image = parse(f"{served}/img.ome.zarr")
    assert np.array_equal(np.asarray(read_volume(image).data), np.asarray(read_volume(stores_folder / "v.tif").data))
    assert read_volume(image).axes_from == "file"
    assert read_voxel_size(image) == VoxelSize((4.0, 8.0, 40.0), "nanometer")


def test_n5_voxel_size_from_the_groups_pixel_resolution_times_downsampling(tmp_path: Path) -> None:
    import json

    import tensorstore as ts

    ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": str(tmp_path / "g.n5" / "s1")}, "create": True,
             "metadata": {"dimensions": [8, 6, 4], "blockSize": [4, 4, 4], "dataType": "uint8", "compression": {"type": "raw"}}}).result()
    dataset = tmp_path / "g.n5" / "s1" / "attributes.json"
    dataset.write_text(json.dumps({**json.loads(dataset.read_text()), "downsamplingFactors": [2, 2, 1]}))
    (tmp_path / "g.n5" / "attributes.json").write_text(json.dumps({"n5": "2.0.0", "pixelResolution": {"dimensions": [0.5, 0.25, 2.0], "unit": "um"}}))
    assert read_voxel_size(tmp_path / "g.n5" / "s1") == VoxelSize((0.5, 1.0, 2.0), "micrometer")  # rows: y 0.25 x 2


def test_a_local_zarrs_crops_are_read_by_tensorstore_unless_it_cannot(tmp_path: Path) -> None:
    import numcodecs
    import zarr

    from skoots_client.stores.reader import CheckedZarr, WindowArray

    zyx = np.arange(4 * 16 * 16, dtype=np.uint16).reshape(4, 16, 16)
    (tmp_path / "info").write_text("notes, not a precomputed volume")
    zarr.create_array(str(tmp_path / "a.zarr"), data=zyx, chunks=(2, 8, 8), zarr_format=2)
    zarr.create_array(str(tmp_path / "b.zarr"), data=zyx, chunks=(2, 8, 8), zarr_format=2, filters=[numcodecs.Delta(dtype="u2")])
    fast, slow = read_volume(tmp_path / "a.zarr"), read_volume(tmp_path / "b.zarr")  # TensorStore has no Delta filter
    assert isinstance(fast.data.array, WindowArray) and isinstance(slow.data.array, CheckedZarr)  # zarr-python, chunks checked
    assert np.array_equal(np.asarray(fast.data), zyx.transpose(1, 2, 0)) and np.array_equal(np.asarray(slow.data), zyx.transpose(1, 2, 0))
    for key in [(slice(0, 100),), (Ellipsis, 1), (-1, slice(None), slice(9, 3)), (slice(1, None, 2),)]:  # read as NumPy reads them
        assert np.array_equal(fast.data.array[key], zyx[key]) and np.array_equal(slow.data.array[key], zyx[key]), key


def test_a_host_lost_mid_run_is_one_line(stores_folder: Path) -> None:
    with http_server(stores_folder) as url:
        volume = read_volume(parse(f"precomputed://{url}/pre"))
    with pytest.raises(InputError, match=rf"^precomputed://{url}/pre: cannot reach the host \(.*\); check the URL, the network and --s3-endpoint$"):
        np.asarray(volume.data[0:10, 0:10, 0:4])


def test_bad_inputs_are_one_line_each_and_nothing_is_written(stores_folder: Path, served: str, e2e_repository: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.n5"
    broken.mkdir()
    (broken / "attributes.json").write_text("{not json")
    group = tmp_path / "group.n5"
    (group / "s0").mkdir(parents=True)
    (group / "attributes.json").write_text('{"n5": "2.0.0"}')
    (group / "s0" / "attributes.json").write_text('{"dimensions": [4, 4, 4], "blockSize": [4, 4, 4], "dataType": "uint8", "compression": {"type": "raw"}}')
    out = tmp_path / "out"
    out.mkdir()
    cases = {
        "foo://x/y": re.escape("input foo://x/y: unknown scheme foo://; give a path, file://, http(s)://, s3:// or gs://"),
        "s3:///labels": r"input s3:///labels: no bucket in the URL; write s3://BUCKET/PATH",
        f"n5://{stores_folder}/v.n5/s9": rf"n5://{stores_folder}/v.n5/s9: no N5 dataset there \(attributes.json not found\); check the path",
        str(broken): rf"{broken}: unreadable metadata attributes.json \(.*\); the file is damaged or not JSON",
        str(group): rf"{group} is an N5 group, not a dataset; append the dataset's path \(its datasets: s0\)",
        f"precomputed://{stores_folder}/pre/1_1_1": rf"precomputed://{stores_folder}/pre/1_1_1: precomputed://{stores_folder}/pre has no scale 1_1_1; its scales are 8_4_40",
        f"{served}/nothing/here": rf"{served}/nothing/here: no N5, Neuroglancer precomputed or Zarr volume there \(no attributes.json, info",
        f"precomputed://http://127.0.0.1:{free_port()}/v": r"precomputed://http://127.0.0.1:\d+/v: cannot reach the host \(.*\); check the URL, the network and s3_endpoint=",
    }
    for text, message in cases.items():
        with pytest.raises(InputError, match=message):
            skoots_client.segment(text, out=out / "l.tif", repository=e2e_repository, device="cpu", quiet=True)
    for source, message in {
        parse(f"precomputed://{stores_folder}/pre"): rf"^level=1: precomputed://{stores_folder}/pre has scales 0 \(8_4_40\); choose one of them",
        stores_folder / "v.n5": rf"^level=1: {stores_folder}/v.n5 has no dataset s1 \(its datasets: s0\)",
        parse(f"{served}/v2.zarr"): rf"^level=1: {served}/v2.zarr is not a precomputed volume, an OME-Zarr image or an N5 group of s0, s1, …; point at the level's path instead",
    }.items():
        with pytest.raises(InputError, match=message):
            skoots_client.segment(source, out=out / "l.tif", level=1, repository=e2e_repository)
    for text in ["foo://x/y", f"{served}/nothing/here"]:
        result = subprocess.run([CLIENT, "segment", text, "--out", str(out / "l.tif"), "-r", str(e2e_repository)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and one_line(result.stderr).startswith("error: ") and text in result.stderr
    assert list(out.iterdir()) == []
