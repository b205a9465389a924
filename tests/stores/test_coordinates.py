"""Offsets are part of the data (docs/data-stores.md): a precomputed ``voxel_offset``, an N5
``offset`` and OME-Zarr ``translation``s travel to the labels, which readers of each format
(CloudVolume, TensorStore, ome-zarr-py) then place where the raw is; an OME-Zarr level named
by URL takes its image's voxel size and translation, as a local path does."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import zarr

import skoots_client
from skoots_client.errors import InputError
from skoots_client.origin_read import read_offset
from skoots_client.stores import parse
from skoots_client.stores.reader import level
from skoots_client.volume_read import read_volume
from skoots_client.voxel_size import VoxelSize
from skoots_client.voxel_size_read import read_voxel_size

from .conftest import SHAPE_ZYX
from .stores_support import blobs, expected_labels, http_server, write_n5, write_precomputed

NM = VoxelSize((4.0, 8.0, 40.0), "nanometer")  # runtime X = rows = file y (4 nm), Y = columns = x (8 nm)


def options(repository: Path) -> dict:
    return dict(repository=repository, device="cpu", quiet=True)


def ome_image(path: Path, zyx: np.ndarray, zarr_format: int, translation_zyx=(400.0, 8000.0, 8000.0)) -> None:
    """A two-level OME-Zarr image (level 1 halves y and x) with a scale and a translation per level."""
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    group.create_array("s0", data=zyx, chunks=(4, 16, 16))
    group.create_array("s1", data=zyx[:, ::2, ::2].copy(), chunks=(4, 16, 16))
    scale0 = [40.0, 4.0, 8.0]
    datasets = [{"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": scale0},
                                                             {"type": "translation", "translation": list(translation_zyx)}]},
                {"path": "s1", "coordinateTransformations": [
                    {"type": "scale", "scale": [40.0, 8.0, 16.0]},
                    {"type": "translation", "translation": [translation_zyx[0], translation_zyx[1] + 2.0, translation_zyx[2] + 4.0]}]}]
    multiscale = {"axes": [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"], "datasets": datasets}
    if zarr_format == 2:
        group.attrs["multiscales"] = [{"version": "0.4", **multiscale}]
    else:
        group.attrs["ome"] = {"version": "0.5", "multiscales": [multiscale]}


def test_a_precomputed_voxel_offset_reaches_a_precomputed_output(stores_folder: Path, e2e_repository: Path, tmp_path: Path) -> None:
    import warnings

    with warnings.catch_warnings():  # google-api-core, imported by CloudVolume, warns about a missing grpcio-status
        warnings.simplefilter("ignore", ImportWarning)
        from cloudvolume import CloudVolume

    write_precomputed(tmp_path / "pre", blobs(SHAPE_ZYX, seed=3), voxel_offset=(1000, 2000, 100))
    assert read_offset(tmp_path / "pre") == (2000.0, 1000.0, 100.0)  # runtime X = rows = file y
    result = skoots_client.segment(f"precomputed://{tmp_path}/pre", out=f"precomputed://{tmp_path}/seg", **options(e2e_repository))
    assert "offset z 100, y 2000, x 1000 voxels (written to the output's metadata)" in result.summary
    volume = CloudVolume(f"precomputed://file://{tmp_path}/seg", progress=False)
    assert list(volume.bounds.minpt) == [1000, 2000, 100] and list(volume.bounds.maxpt) == [1000 + 56, 2000 + 56, 100 + 12]
    assert np.array_equal(np.asarray(volume[1000:1056, 2000:2056, 100:112])[..., 0].T, expected_labels(stores_folder))


def test_an_n5_offset_reaches_an_n5_output(stores_folder: Path, e2e_repository: Path, tmp_path: Path) -> None:
    import tensorstore as ts

    write_n5(tmp_path / "in.n5", blobs(SHAPE_ZYX, seed=3))
    attributes = json.loads((tmp_path / "in.n5" / "attributes.json").read_text())
    (tmp_path / "in.n5" / "attributes.json").write_text(json.dumps({**attributes, "offset": [800.0, 400.0, 4000.0]}))  # nm, x y z
    assert read_offset(tmp_path / "in.n5") == (100.0, 100.0, 100.0)
    skoots_client.segment(tmp_path / "in.n5", out=f"n5://{tmp_path}/seg.n5", **options(e2e_repository))
    written = json.loads((tmp_path / "seg.n5" / "attributes.json").read_text())
    assert written["offset"] == [800.0, 400.0, 4000.0] and written["resolution"] == [8.0, 4.0, 40.0]
    assert read_offset(tmp_path / "seg.n5") == (100.0, 100.0, 100.0)
    store = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": str(tmp_path / "seg.n5")}}).result()
    assert np.array_equal(store.read().result().T, expected_labels(stores_folder))


@pytest.mark.parametrize("version, zarr_format", [("0.4", 2), ("0.5", 3)])
def test_ome_zarr_translations_reach_every_label_level(stores_folder: Path, e2e_repository: Path, tmp_path: Path,
                                                       version: str, zarr_format: int) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    logging.getLogger("ome_zarr").setLevel(logging.ERROR)
    ome_image(tmp_path / "img.ome.zarr", blobs(SHAPE_ZYX, seed=3), zarr_format)
    assert read_offset(tmp_path / "img.ome.zarr") == (2000.0, 1000.0, 10.0)
    skoots_client.segment(tmp_path / "img.ome.zarr", out=tmp_path / "l.ome.zarr", ngff_version=version, **options(e2e_repository))
    node = list(Reader(parse_url(str(tmp_path / "l.ome.zarr")))())[0]
    assert np.array_equal(np.asarray(node.data[0]), expected_labels(stores_folder))
    transforms = node.metadata["coordinateTransformations"]
    assert len(transforms) == len(node.data)
    for index, (scale, translation) in enumerate(transforms):
        assert translation["translation"] == [400.0 + (scale["scale"][0] - 40.0) / 2, 8000.0 + (scale["scale"][1] - 4.0) / 2,
                                              8000.0 + (scale["scale"][2] - 8.0) / 2], index

    skoots_client.segment(tmp_path / "img.ome.zarr", labels_into=tmp_path / "img.ome.zarr", label_name="cells", **options(e2e_repository))
    image_node, *label_nodes = list(Reader(parse_url(str(tmp_path / "img.ome.zarr")))())
    cells = next(n for n in label_nodes if str(n.zarr.path).rstrip("/").endswith("cells"))
    assert cells.metadata["coordinateTransformations"] == image_node.metadata["coordinateTransformations"]


@pytest.mark.parametrize("scheme, zarr_format", [("zarr3", 3), ("zarr", 2)])
def test_an_ome_zarr_level_by_url_takes_its_images_voxel_size_and_translation(tmp_path: Path, scheme: str, zarr_format: int) -> None:
    zyx = blobs(SHAPE_ZYX, seed=3)
    ome_image(tmp_path / "em.ome.zarr", zyx, zarr_format)
    local = tmp_path / "em.ome.zarr" / "s1"
    assert read_voxel_size(local) == VoxelSize((8.0, 16.0, 40.0), "nanometer")
    with http_server(tmp_path) as served:
        for name, size, offset in [("s0", NM, (2000.0, 1000.0, 10.0)), ("s1", VoxelSize((8.0, 16.0, 40.0), "nanometer"), (1000.25, 500.25, 10.0))]:
            url = parse(f"{scheme}://{served}/em.ome.zarr/{name}")
            assert read_voxel_size(url) == size, name
            assert read_offset(url) == offset == read_offset(tmp_path / "em.ome.zarr" / name), name
        assert level(parse(f"{scheme}://{served}/em.ome.zarr"), 1) == parse(f"{scheme}://{served}/em.ome.zarr/s1")  # --level 1
        with pytest.raises(InputError, match=r"^--level 2: .*em.ome.zarr has levels 0 \(s0\), 1 \(s1\); choose one of them$"):
            level(parse(f"{scheme}://{served}/em.ome.zarr"), 2)
        volume = read_volume(parse(f"{scheme}://{served}/em.ome.zarr/s0"))
        assert volume.axes_from == "file" and np.array_equal(np.asarray(volume.data), np.asarray(read_volume(local.parent).data))


def test_the_blockwise_export_states_the_offset(tmp_path: Path) -> None:
    """The blockwise run's writes into precomputed (stores/export.py): each task writes its
    shards in place from the output's corner, no info until the client publishes it, and the
    info states the offset."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImportWarning)
        from cloudvolume import CloudVolume

    from skoots_client.stores.export import clear, in_place, open_chunks, publish
    from skoots_client.stores.writer import write_region

    labels_zxy = np.random.default_rng(0).integers(0, 9, (12, 40, 72)).astype(np.uint32)
    labels_xyz = labels_zxy.transpose(1, 2, 0)
    target = in_place(parse(f"precomputed://{tmp_path}/seg"), labels_xyz.shape, np.uint32, NM, offset=(2000.0, 1000.0, 100.0),
                      chunk=16, shard_past=0, shard_log2=1)
    clear(target, overwrite=False)
    for region in target.regions():  # as the tasks do, each its own shards
        write_region(open_chunks(target), region, labels_xyz[tuple(slice(lo, hi) for lo, hi in region)])
    assert not (tmp_path / "seg" / "info").exists() and any((tmp_path / "seg").rglob("*.shard"))
    publish(target, voxel_size=NM, offset=(2000.0, 1000.0, 100.0))
    volume = CloudVolume(f"precomputed://file://{tmp_path}/seg", progress=False)
    assert list(volume.bounds.minpt) == [1000, 2000, 100] and list(volume.bounds.maxpt) == [1072, 2040, 112]
    assert np.array_equal(np.asarray(volume[1000:1072, 2000:2040, 100:112])[..., 0].transpose(2, 1, 0), labels_zxy)
