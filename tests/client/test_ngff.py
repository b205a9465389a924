"""OME-NGFF labels: the pyramid rule, standalone label images and labels written into an
OME-Zarr image, each read back at every level by ome-zarr-py (NGFF 0.4 / Zarr v2 and 0.5 / v3)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest
import zarr

from skoots_client.errors import OutputError
from skoots_client.label_write import write_labels
from skoots_client.ngff import nearest_indices, pyramid, read_zyx, write_labels_into, write_zyx
from skoots_client.voxel_size import VoxelSize

FORMATS = {"0.4": 2, "0.5": 3}


@pytest.fixture(autouse=True)
def _quiet_ome_zarr():
    logging.getLogger("ome_zarr").setLevel(logging.ERROR)


def read_nodes(path: Path) -> list:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    return list(Reader(parse_url(str(path)))())


def sampled(labels_xyz: np.ndarray, shape_zyx) -> np.ndarray:
    """Naive nearest-neighbour oracle: the voxel under each level voxel's centre."""
    zyx = labels_xyz.transpose(2, 0, 1)
    out = np.empty(shape_zyx, zyx.dtype)
    for k in range(shape_zyx[0]):
        for j in range(shape_zyx[1]):
            for i in range(shape_zyx[2]):
                out[k, j, i] = zyx[int((k + 0.5) * zyx.shape[0] / shape_zyx[0]),
                                   int((j + 0.5) * zyx.shape[1] / shape_zyx[1]),
                                   int((i + 0.5) * zyx.shape[2] / shape_zyx[2])]
    return out


def blocky_labels(shape_xyz=(130, 128, 6)) -> np.ndarray:
    rng = np.random.default_rng(3)
    coarse = rng.integers(0, 40, size=(14, 13, 3)).astype(np.uint32)
    return np.kron(coarse, np.ones((10, 10, 2), np.uint32))[: shape_xyz[0], : shape_xyz[1], : shape_xyz[2]].copy()


def test_pyramid_halves_in_plane_and_z_once_near_isotropic() -> None:
    levels = pyramid((40, 512, 300), (2.0, 0.5, 0.5))
    assert [lv.shape for lv in levels] == [(40, 512, 300), (40, 256, 150), (40, 128, 75), (20, 64, 38), (10, 32, 19)][:len(levels)]
    assert len(levels) == 4  # the next would be 32 x 19 in plane: below MIN_EXTENT
    assert levels[1].scale == (2.0, 1.0, 1.0) and levels[3].scale == (4.0, 4.0, 300 * 0.5 / 38)
    assert levels[1].translation == (0.0, 0.25, 0.25)
    assert len(pyramid((8, 128, 128), (1, 1, 1))) == 3 and len(pyramid((8, 40, 40), (1, 1, 1))) == 1


def test_pyramid_levels_carry_the_offset_on_top_of_their_half_voxel_shift() -> None:
    plain, shifted = pyramid((40, 512, 300), (2.0, 0.5, 0.5)), pyramid((40, 512, 300), (2.0, 0.5, 0.5), offset_zyx=(10, 2000, 1000))
    assert plain[0].translation is None and shifted[0].translation == (20.0, 1000.0, 500.0)
    assert len(shifted) == len(plain) == 4
    for a, b in zip(plain[1:], shifted[1:]):
        assert a.shape == b.shape and a.scale == b.scale
        assert b.translation == tuple(t + o for t, o in zip(a.translation, (20.0, 1000.0, 500.0)))


def test_nearest_indices_match_the_centre_rule() -> None:
    for n_from, n_to in [(5, 3), (130, 65), (130, 32), (7, 7), (3, 8)]:
        expected = [int((j + 0.5) * n_from / n_to) for j in range(n_to)]
        assert nearest_indices(n_from, n_to).tolist() == expected
        assert nearest_indices(n_from, n_to, 1, n_to - 1).tolist() == expected[1:-1]


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_standalone_label_pyramid_readable_at_every_level(tmp_path: Path, version: str) -> None:
    labels = blocky_labels()
    size = VoxelSize((0.5, 0.5, 1.0))
    properties = [{"label-value": 3, "voxels": 10}]
    write_labels(tmp_path / "l.ome.zarr", labels, voxel_size=size, ngff_version=version, properties=properties)
    assert zarr.open_group(str(tmp_path / "l.ome.zarr"), mode="r").metadata.zarr_format == FORMATS[version]
    node = read_nodes(tmp_path / "l.ome.zarr")[0]
    assert len(node.data) == 3
    for level, data in zip(pyramid((6, 130, 128), size.zyx), node.data):
        assert data.shape == level.shape
        assert np.array_equal(np.asarray(data), sampled(labels, level.shape))
    group = zarr.open_group(str(tmp_path / "l.ome.zarr"), mode="r")
    meta = group.attrs["ome"] if version == "0.5" else group.attrs
    assert meta["image-label"]["properties"] == properties


def make_image(path: Path, version: str, axes: str = "czyx", shape=(2, 6, 130, 128)) -> str:
    """An OME-Zarr image written by ome-zarr-py itself; returns a digest of its arrays."""
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    root = zarr.open_group(str(path), mode="w", zarr_format=FORMATS[version])
    image = np.random.default_rng(0).integers(0, 1000, size=shape).astype(np.uint16)
    write_image(image, root, axes=axes, fmt=FormatV04() if version == "0.4" else FormatV05(),
                scale={"z": 2.0, "y": 0.5, "x": 0.5}, axes_units={a: "micrometer" for a in "zyx"})
    return image_digest(path)


def image_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and "labels" not in p.relative_to(path).parts):
        digest.update(str(file.relative_to(path)).encode() + file.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_labels_into_image_match_its_levels_and_leave_it_untouched(tmp_path: Path, version: str) -> None:
    image = tmp_path / "img.ome.zarr"
    before = make_image(image, version)
    labels = blocky_labels()
    write_labels_into(image, "cells", labels, properties=[{"label-value": 1, "voxels": 4}])
    write_labels_into(image, "other", labels[::-1].copy())
    assert image_digest(image) == before
    nodes = read_nodes(image)
    image_node = nodes[0]
    label_nodes = [n for n in nodes if "image-label" in n.metadata or n.zarr.path.rstrip("/").endswith(("cells", "other"))]
    assert {Path(n.zarr.path.rstrip("/")).name for n in label_nodes} == {"cells", "other"}
    cells = next(n for n in label_nodes if n.zarr.path.rstrip("/").endswith("cells"))
    assert len(cells.data) == len(image_node.data) == 5
    for image_level, label_level in zip(image_node.data, cells.data):
        assert label_level.shape == image_level.shape[1:]  # the channel axis is dropped
        assert np.array_equal(np.asarray(label_level), sampled(labels, image_level.shape[1:]))
    image_transforms = image_node.metadata["coordinateTransformations"]
    for theirs, ours in zip(image_transforms, cells.metadata["coordinateTransformations"]):
        assert [{k: (v[1:] if isinstance(v, list) else v) for k, v in t.items()} for t in theirs] == ours
    group = zarr.open_group(str(image / "labels"), mode="r")
    listed = (group.attrs["ome"] if version == "0.5" else group.attrs)["labels"]
    assert listed == ["cells", "other"]


def test_labels_into_keep_the_images_overall_transformations(tmp_path: Path) -> None:
    image = tmp_path / "img.ome.zarr"
    make_image(image, "0.4")
    group = zarr.open_group(str(image), mode="r+")
    multiscales = group.attrs["multiscales"]
    multiscales[0]["coordinateTransformations"] = [{"type": "scale", "scale": [1.0, 3.0, 1.0, 1.0]}]
    group.attrs["multiscales"] = multiscales
    write_labels_into(image, "cells", blocky_labels())
    written = zarr.open_group(str(image / "labels" / "cells"), mode="r").attrs["multiscales"][0]
    assert written["coordinateTransformations"] == [{"type": "scale", "scale": [3.0, 1.0, 1.0]}]


def test_labels_into_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    image = tmp_path / "img.ome.zarr"
    make_image(image, "0.4")
    labels = blocky_labels()
    with pytest.raises(OutputError, match=r"holds an image of z 6, y 130, x 128, but the volume segmented is z 6, y 129, x 128"):
        write_labels_into(image, "cells", labels[:-1])
    write_labels_into(image, "cells", labels)
    with pytest.raises(OutputError, match=r"labels/cells exists; pass --overwrite to replace it, or another --label-name"):
        write_labels_into(image, "cells", labels)
    write_labels_into(image, "cells", labels + 1, overwrite=True)
    assert np.array_equal(zarr.open_array(str(image / "labels" / "cells" / "s0"), mode="r")[...], labels.transpose(2, 0, 1) + 1)
    with pytest.raises(OutputError, match=r"--label-name '../x' is not a folder name"):
        write_labels_into(image, "../x", labels)
    zarr.create_array(str(tmp_path / "plain.zarr"), shape=(6, 130, 128), dtype=np.uint8)
    with pytest.raises(OutputError, match=r"--labels-into \S+plain\.zarr is not an OME-Zarr image .*give the image's \.ome\.zarr folder"):
        write_labels_into(tmp_path / "plain.zarr", "cells", labels)
    assert not list(image.glob(".labels-*"))  # nothing half-written beside the image


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_labels_into_a_tczyx_image_with_planes_wider_than_a_chunk(tmp_path: Path, version: str) -> None:
    """ome-zarr-py's t, c, z, y, x image, 264 rows (two 256-row chunks): every level holds the
    labels (zarr split the broadcast assignment of issue 17 wrongly: "could not broadcast")."""
    image = tmp_path / "img.ome.zarr"
    make_image(image, version, axes="tczyx", shape=(1, 2, 6, 264, 40))
    labels = np.random.default_rng(1).integers(0, 50, size=(264, 40, 6)).astype(np.uint32)
    write_labels_into(image, "cells", labels)
    nodes = read_nodes(image)
    cells = next(n for n in nodes if n.zarr.path.rstrip("/").endswith("cells"))
    assert len(cells.data) == len(nodes[0].data) > 1
    for image_level, label_level in zip(nodes[0].data, cells.data):
        assert label_level.shape == (1, *image_level.shape[2:])  # t kept, c dropped
        assert np.array_equal(np.asarray(label_level)[0], sampled(labels, image_level.shape[2:]))


def test_write_zyx_fills_whole_rank_regions_across_chunks(tmp_path: Path) -> None:
    array = zarr.create_array(str(tmp_path / "a.zarr"), shape=(1, 4, 300, 70), chunks=(1, 2, 256, 32), dtype=np.uint16)
    data = np.arange(3 * 300 * 70, dtype=np.uint16).reshape(3, 300, 70)
    write_zyx(array, ((1, 4), (0, 300), (0, 70)), data)
    assert np.array_equal(array[0, 1:], data) and not array[0, 0].any()
    assert np.array_equal(read_zyx(array, (slice(1, 4), slice(None), slice(None))), data)
    assert np.array_equal(read_zyx(array, (np.array([1, 3]), np.array([0, 299]), np.array([5]))), data[[0, 2]][:, [0, 299]][:, :, [5]])


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ngff_metadata_carries_no_float_noise_at_any_level(tmp_path: Path, version: str) -> None:
    """0.05 * 48 / 48 is 0.05000000000000001 and (that - 0.05) / 2 is 3.47e-18: written as 0.05 and 0."""
    import json

    size = VoxelSize((0.012, 0.012, 0.05))
    levels = pyramid((48, 128, 128), size.zyx)
    assert levels[1].scale[0] != 0.05 and 0 < levels[1].translation[0] < 1e-17  # the noise is there to remove
    write_labels(tmp_path / "l.ome.zarr", np.zeros((128, 128, 48), np.uint8), voxel_size=size, ngff_version=version)
    text = (tmp_path / "l.ome.zarr" / (".zattrs" if version == "0.4" else "zarr.json")).read_text()
    meta = json.loads(text)
    multiscale = (meta["multiscales"] if version == "0.4" else meta["attributes"]["ome"]["multiscales"])[0]
    transforms = [d["coordinateTransformations"] for d in multiscale["datasets"]]
    assert len(transforms) == 3
    assert transforms[1] == [{"type": "scale", "scale": [0.05, 0.024, 0.024]}, {"type": "translation", "translation": [0.0, 0.006, 0.006]}]
    assert transforms[2] == [{"type": "scale", "scale": [0.05, 0.048, 0.048]}, {"type": "translation", "translation": [0.0, 0.018, 0.018]}]
    assert "0000000" not in text and "e-1" not in text
