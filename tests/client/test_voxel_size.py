"""Voxel size: read from each input format, given as an option, and written to every output
so that tifffile, zarr and ome-zarr-py read the same physical sizes back."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from skoots_client.errors import InputError
from skoots_client.label_write import write_labels
from skoots_client.voxel_size import UNKNOWN_VOXEL_SIZE, UnitOption, VoxelSize, voxel_size_option
from skoots_client.voxel_size_read import read_voxel_size, resolve_voxel_size

# Runtime X (file rows), Y (file columns), Z (slices): all different, so a swapped axis shows.
SIZE = VoxelSize((0.5, 0.25, 2.0), "micrometer")


def labels_xyz(shape=(70, 66, 5), dtype=np.uint16) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 9, size=shape).astype(dtype)


def test_imagej_tiff_round_trip_sets_what_fiji_reads(tmp_path: Path) -> None:
    write_labels(tmp_path / "l.tif", labels_xyz(), voxel_size=SIZE)
    with tifffile.TiffFile(tmp_path / "l.tif") as tif:
        assert tif.is_imagej
        assert tif.imagej_metadata["spacing"] == 2.0 and tif.imagej_metadata["unit"] == "um"
        page = tif.pages[0]
        x_res, y_res = page.tags["XResolution"].value, page.tags["YResolution"].value  # pixels per unit
        assert x_res[0] / x_res[1] == pytest.approx(1 / 0.25)  # columns: the runtime's Y
        assert y_res[0] / y_res[1] == pytest.approx(1 / 0.5)  # rows: the runtime's X
    assert read_voxel_size(tmp_path / "l.tif") == SIZE


def test_uint32_tiff_is_ome_with_physical_sizes(tmp_path: Path) -> None:
    write_labels(tmp_path / "l.tif", labels_xyz(dtype=np.uint32) * 70000, voxel_size=SIZE)
    with tifffile.TiffFile(tmp_path / "l.tif") as tif:
        assert tif.is_ome
        assert 'PhysicalSizeX="0.25"' in tif.ome_metadata and 'PhysicalSizeY="0.5"' in tif.ome_metadata
        assert 'PhysicalSizeZ="2.0"' in tif.ome_metadata
    assert read_voxel_size(tmp_path / "l.tif") == SIZE


def test_plain_zarr_states_its_voxel_size(tmp_path: Path) -> None:
    write_labels(tmp_path / "l.zarr", labels_xyz(), voxel_size=SIZE)
    attrs = zarr.open_array(str(tmp_path / "l.zarr"), mode="r").attrs
    assert attrs["voxel_size_zyx"] == [2.0, 0.5, 0.25] and attrs["unit"] == "micrometer"
    assert read_voxel_size(tmp_path / "l.zarr") == SIZE


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_scale_and_units_read_back_by_ome_zarr_py(tmp_path: Path, version: str) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    write_labels(tmp_path / "l.ome.zarr", labels_xyz(), voxel_size=SIZE, ngff_version=version)
    logging.getLogger("ome_zarr").setLevel(logging.ERROR)
    node = list(Reader(parse_url(str(tmp_path / "l.ome.zarr")))())[0]
    assert [a["unit"] for a in node.metadata["axes"]] == ["micrometer"] * 3
    assert node.metadata["coordinateTransformations"][0] == [{"type": "scale", "scale": [2.0, 0.5, 0.25]}]
    assert read_voxel_size(tmp_path / "l.ome.zarr") == SIZE


def test_unknown_size_writes_no_unit(tmp_path: Path) -> None:
    write_labels(tmp_path / "l.ome.zarr", labels_xyz())
    write_labels(tmp_path / "l.tif", labels_xyz())
    axes = zarr.open_group(str(tmp_path / "l.ome.zarr"), mode="r").attrs["multiscales"][0]["axes"]
    assert all("unit" not in a for a in axes)
    assert read_voxel_size(tmp_path / "l.ome.zarr") is None and read_voxel_size(tmp_path / "l.tif") is None


@pytest.mark.parametrize("unit", ["micron", "\\u00B5m", "um"])  # ImageJ metadata is ASCII
def test_imagej_input_written_by_others_is_read(tmp_path: Path, unit: str) -> None:
    data = np.zeros((4, 10, 12), np.uint16)  # [Z, rows, columns]
    tifffile.imwrite(tmp_path / "v.tif", data, imagej=True, resolution=(1 / 0.3, 1 / 0.4),
                     metadata={"spacing": 1.5, "unit": unit, "axes": "ZYX"})
    assert read_voxel_size(tmp_path / "v.tif") == VoxelSize((pytest.approx(0.4), pytest.approx(0.3), 1.5))


def test_ome_tiff_input_with_nanometres_is_read(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "v.ome.tif", np.zeros((4, 10, 12), np.uint8), ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 30, "PhysicalSizeY": 40, "PhysicalSizeZ": 50,
                               **{f"PhysicalSize{a}Unit": "nm" for a in "XYZ"}})
    assert read_voxel_size(tmp_path / "v.ome.tif") == VoxelSize((40.0, 30.0, 50.0), "nanometer")


def test_ome_zarr_input_scale_times_global_scale(tmp_path: Path) -> None:
    group = zarr.open_group(str(tmp_path / "img.ome.zarr"), mode="w", zarr_format=2)
    group.create_array("0", shape=(2, 4, 6, 8), dtype=np.uint8)
    group.attrs["multiscales"] = [{
        "version": "0.4",
        "axes": [{"name": "c", "type": "channel"}] + [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1.0, 0.2, 0.1]}]}],
        "coordinateTransformations": [{"type": "scale", "scale": [1, 3.0, 2.0, 2.0]}],
    }]
    assert read_voxel_size(tmp_path / "img.ome.zarr") == VoxelSize((0.4, 0.2, 3.0))


def test_plain_tiff_states_nothing(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "v.tif", np.zeros((3, 4, 5), np.uint8))
    assert read_voxel_size(tmp_path / "v.tif") is None


@pytest.mark.parametrize(
    "text, unit, expected",
    [
        ("0.5,0.25,2", None, SIZE),
        ("0.5,0.25,2um", None, SIZE),
        ("0.5,0.25,2 µm", None, SIZE),
        ("500,250,2000", "nm", VoxelSize((500.0, 250.0, 2000.0), "nanometer")),
        ("500,250,2000nm", "nanometer", VoxelSize((500.0, 250.0, 2000.0), "nanometer")),
        (None, None, None),
    ],
)
def test_voxel_size_option(text, unit, expected) -> None:
    assert voxel_size_option(text, unit) == expected


@pytest.mark.parametrize(
    "text, unit, match",
    [
        ("0.5,0.5", None, r"--voxel-size '0.5,0.5' needs three numbers X,Y,Z"),
        ("0.5,0.5,2furlong", None, r"--voxel-size 'furlong' is not a length unit; use one of um, nm"),
        ("0.5,0.5,2", "parsec", r"--unit 'parsec' is not a length unit"),
        ("0.5,0.5,2nm", "um", r"says nm and --unit says um; give the unit once"),
        ("0.5,0,2", None, r"sizes must be positive"),
        (None, "furlong", r"--unit 'furlong' is not a length unit"),
    ],
)
def test_voxel_size_option_mistakes(text, unit, match) -> None:
    with pytest.raises(InputError, match=match):
        voxel_size_option(text, unit)


def test_option_wins_and_a_conflict_is_one_warning(tmp_path: Path) -> None:
    lines: list[str] = []
    stated = VoxelSize((500.0, 250.0, 2000.0), "nanometer")  # the same size, in other units
    assert resolve_voxel_size(SIZE, stated, tmp_path / "v.tif", lines.append) == SIZE
    assert lines == []
    assert resolve_voxel_size(SIZE, VoxelSize((1.0, 1.0, 1.0)), tmp_path / "v.tif", lines.append) == SIZE
    assert len(lines) == 1 and lines[0].startswith("--voxel-size z 2, y 0.5, x 0.25 um differs from")
    assert resolve_voxel_size(None, stated, tmp_path / "v.tif", lines.append) == stated
    assert resolve_voxel_size(None, None, tmp_path / "v.tif", lines.append) == UNKNOWN_VOXEL_SIZE


def test_a_scale_without_a_unit_is_neither_pixels_nor_a_unit(tmp_path: Path) -> None:
    """Issue 17 (2): OME-Zarr axes with a scale but no unit: scaled values, in no named unit."""
    from skoots_client.instances import PartialStats, instance_table

    unitless = VoxelSize((0.012, 0.012, 0.05), None)
    assert unitless.describe() == "z 0.05, y 0.012, x 0.012 (a scale without a unit; name it with --unit)"
    assert UNKNOWN_VOXEL_SIZE.describe() == "z 1, y 1, x 1 px" and SIZE.describe() == "z 2, y 0.5, x 0.25 um"
    labels = np.zeros((3, 4, 5), np.uint8)
    labels[1, 1:3, 1:4] = 7
    columns = instance_table(PartialStats.of_block(labels), labels.shape, unitless)
    assert [c for c in columns if "_" in c and not c.startswith(("bbox", "touches"))] == [
        "volume_units3", "centroid_z", "centroid_y", "centroid_x", "centroid_z_units", "centroid_y_units", "centroid_x_units"]
    assert columns["volume_units3"][0] == pytest.approx(6 * 0.012 * 0.012 * 0.05)
    assert "volume_px3" in instance_table(PartialStats.of_block(labels), labels.shape, UNKNOWN_VOXEL_SIZE)


def test_unit_alone_names_the_unit_of_the_files_scale(tmp_path: Path) -> None:
    unitless, path = VoxelSize((0.012, 0.012, 0.05), None), tmp_path / "v.ome.zarr"
    assert voxel_size_option(None, "nm") == UnitOption("nanometer")
    assert resolve_voxel_size(UnitOption("nanometer"), unitless, path) == VoxelSize((0.012, 0.012, 0.05), "nanometer")
    assert resolve_voxel_size(UnitOption("micrometer"), SIZE, path) == SIZE
    with pytest.raises(InputError, match=r"^--unit needs --voxel-size: \S+v\.ome\.zarr states no scale for nm to apply to; give both"):
        resolve_voxel_size(UnitOption("nanometer"), None, path)
    with pytest.raises(InputError, match=r"^--unit nm: \S+ states its voxel size in micrometer \(z 2, y 0\.5, x 0\.25 um\); drop --unit"):
        resolve_voxel_size(UnitOption("nanometer"), SIZE, path)


def pyramid_image(path: Path, version: str = "0.4") -> None:
    """ome-zarr-py's image, 3 levels (s0, s1, s2), with a multiscale-wide scale of 3 on z."""
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.scale import Scaler
    from ome_zarr.writer import write_image

    logging.getLogger("ome_zarr").setLevel(logging.ERROR)
    root = zarr.open_group(str(path), mode="w", zarr_format=2 if version == "0.4" else 3)
    write_image(np.arange(4 * 80 * 72, dtype=np.uint16).reshape(4, 80, 72), root, axes="zyx", scale={"z": 2.0, "y": 0.5, "x": 0.25},
                fmt=FormatV04() if version == "0.4" else FormatV05(), axes_units={a: "micrometer" for a in "zyx"},
                scaler=Scaler(max_layer=2))
    attrs = root.attrs.asdict()
    meta = attrs["ome"] if version == "0.5" else attrs
    meta["multiscales"][0]["coordinateTransformations"] = [{"type": "scale", "scale": [3.0, 1.0, 1.0]}]
    root.attrs.update({"ome": meta} if version == "0.5" else meta)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_a_level_of_an_image_has_its_own_voxel_size(tmp_path: Path, version: str) -> None:
    """Issue 17 (6b): IMAGE/s1 and --level 1 read level 1 with its scale (times the image's
    own), not 1 px; a level that is not there is one line naming those that are."""
    from skoots_client.levels import level_path
    from skoots_client.volume_read import read_volume

    image = tmp_path / "img.ome.zarr"
    pyramid_image(image, version)
    assert read_voxel_size(image) == VoxelSize((0.5, 0.25, 6.0))
    assert level_path(image, 1) == image / "s1"
    assert read_voxel_size(image / "s1") == VoxelSize((1.0, 0.5, 6.0))
    assert read_voxel_size(image / "s2") == VoxelSize((2.0, 1.0, 6.0))
    volume = read_volume(image / "s1")
    assert volume.shape == (40, 36, 4) and volume.axes == "ZYX" and volume.axes_from == "file"
    assert np.array_equal(np.asarray(volume.data), zarr.open_array(str(image / "s1"), mode="r")[...].transpose(1, 2, 0))
    with pytest.raises(InputError, match=r"^--level 3: \S+img\.ome\.zarr has levels 0 \(s0\), 1 \(s1\), 2 \(s2\); choose one of them$"):
        level_path(image, 3)
    with pytest.raises(InputError, match=r"^\S+s7: \S+img\.ome\.zarr has no level s7; its levels are 0 \(s0\), 1 \(s1\), 2 \(s2\) \(or pass --level N\)$"):
        read_volume(image / "s7")
    tifffile.imwrite(tmp_path / "v.tif", np.zeros((3, 4, 5), np.uint8))
    with pytest.raises(InputError, match=r"^--level 1: \S+v\.tif is not an OME-Zarr image with resolution levels; drop --level$"):
        level_path(tmp_path / "v.tif", 1)


def test_a_levels_default_output_lies_beside_the_image() -> None:
    from skoots_client.cli import default_output

    assert default_output(Path("d/img.ome.zarr")) == Path("d/img_labels.tif")
    assert default_output(Path("d/img.ome.zarr"), 1) == Path("d/img_level1_labels.tif")
    assert default_output(Path("d/img.ome.zarr/s1")) == Path("d/img_s1_labels.tif")
