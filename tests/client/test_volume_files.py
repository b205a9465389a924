from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from skoots_client.errors import InputError, OutputError
from skoots_client.label_write import check_output_path, write_labels
from skoots_client.normalize import normalize_crop
from skoots_client.volume_read import read_volume


def zxy_volume(shape=(6, 10, 8), dtype=np.uint16, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, np.iinfo(dtype).max if dtype != np.float32 else 2, size=shape).astype(dtype)


def test_tiff_is_read_as_xyz(tmp_path: Path) -> None:
    data = zxy_volume()
    tifffile.imwrite(tmp_path / "v.tif", data)
    volume = read_volume(tmp_path / "v.tif")
    assert volume.shape == (10, 8, 6)
    assert np.array_equal(np.asarray(volume.data), data.transpose(1, 2, 0))
    assert np.array_equal(volume.data[2:5, 1:3, 0:4], data[0:4, 2:5, 1:3].transpose(1, 2, 0))


def test_compressed_tiff_is_read(tmp_path: Path) -> None:
    data = zxy_volume(dtype=np.uint8)
    tifffile.imwrite(tmp_path / "v.tiff", data, compression="zlib")
    assert np.array_equal(np.asarray(read_volume(tmp_path / "v.tiff").data), data.transpose(1, 2, 0))


@pytest.mark.parametrize("fmt", [2, 3])
def test_zarr_array_and_ome_zarr_are_read(tmp_path: Path, fmt: int) -> None:
    data = zxy_volume()
    zarr.create_array(str(tmp_path / "a.zarr"), data=data, zarr_format=fmt)
    assert np.array_equal(np.asarray(read_volume(tmp_path / "a.zarr").data), data.transpose(1, 2, 0))
    labels = np.arange(np.prod(data.shape), dtype=np.uint32).reshape(data.shape).transpose(1, 2, 0)
    write_labels(tmp_path / "b.ome.zarr", labels)
    group = zarr.open_group(str(tmp_path / "b.ome.zarr"), mode="r")
    assert group.attrs["multiscales"][0]["datasets"][0]["path"] == "0"
    assert np.array_equal(group["0"][...], labels.transpose(2, 0, 1))


def test_channel_rules(tmp_path: Path) -> None:
    data = zxy_volume(shape=(4, 6, 5, 5))
    tifffile.imwrite(tmp_path / "c5.tif", data, photometric="minisblack", planarconfig="contig")
    assert np.array_equal(np.asarray(read_volume(tmp_path / "c5.tif").data), data[..., 2].transpose(1, 2, 0))
    assert np.array_equal(np.asarray(read_volume(tmp_path / "c5.tif", channel=4).data), data[..., 4].transpose(1, 2, 0))
    with pytest.raises(InputError, match="out of range"):
        read_volume(tmp_path / "c5.tif", channel=5)
    rgb = zxy_volume(shape=(4, 6, 5, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    with pytest.raises(InputError, match="--channel"):
        read_volume(tmp_path / "rgb.tif")


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda p: None, "not found"),
        (lambda p: p.write_bytes(b""), "cannot read TIFF"),
        (lambda p: p.write_bytes(b"II*\x00garbage" * 10), "cannot read TIFF"),
        (lambda p: tifffile.imwrite(p, np.zeros((5, 5), np.uint16)), "2 dimensions"),
        (lambda p: tifffile.imwrite(p, np.zeros((2, 2, 2, 2, 2), np.uint16)), "5 dimensions"),
        (lambda p: tifffile.imwrite(p, np.zeros((3, 4, 4), np.int32)), "int32"),
        (lambda p: tifffile.imwrite(p, np.zeros((3, 4, 4), bool)), "bool"),
        (lambda p: tifffile.imwrite(p, np.full((3, 4, 5), np.nan)), r"NaN or infinite values \(first at z 0, y 0, x 0\)"),
        (lambda p: (tifffile.imwrite(p, zxy_volume(), compression="zlib"), p.write_bytes(p.read_bytes()[:300])), "corrupt or truncated"),
    ],
)
def test_bad_inputs_are_named(tmp_path: Path, make, match: str) -> None:
    path = tmp_path / "bad.tif"
    make(path)
    with pytest.raises(InputError, match=match):
        read_volume(path)


def test_unknown_input_format(tmp_path: Path) -> None:
    (tmp_path / "v.png").write_bytes(b"x")
    with pytest.raises(InputError, match="unknown input format"):
        read_volume(tmp_path / "v.png")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32])
def test_labels_tiff_round_trip_in_input_axis_order(tmp_path: Path, dtype) -> None:
    labels = np.random.default_rng(1).integers(0, 200, size=(9, 7, 5)).astype(dtype)
    path = write_labels(tmp_path / "out.tif", labels)
    back = tifffile.imread(path)
    assert back.dtype == dtype and np.array_equal(back, labels.transpose(2, 0, 1))
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        if dtype != np.uint32:
            assert tif.is_imagej and tif.imagej_metadata["images"] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"], "no staging left"


def test_existing_output_is_kept_without_overwrite(tmp_path: Path) -> None:
    (tmp_path / "out.tif").write_bytes(b"keep")
    with pytest.raises(OutputError, match="--overwrite"):
        write_labels(tmp_path / "out.tif", np.zeros((2, 2, 2), np.uint8))
    assert (tmp_path / "out.tif").read_bytes() == b"keep"
    write_labels(tmp_path / "out.tif", np.ones((2, 2, 2), np.uint8), overwrite=True)
    assert tifffile.imread(tmp_path / "out.tif").sum() == 8


@pytest.mark.parametrize(
    "name,match", [("missing/out.tif", "does not exist"), ("out.png", "unknown extension"), ("file.tif/out.tif", "does not exist")]
)
def test_output_paths_are_checked_before_work(tmp_path: Path, name: str, match: str) -> None:
    (tmp_path / "file.tif").write_bytes(b"")
    with pytest.raises(OutputError, match=match):
        check_output_path(tmp_path / name, overwrite=False)


def test_normalisation_follows_the_seed() -> None:
    u16 = np.array([[[0, 32768, 65535]]], dtype=np.uint16)
    assert np.array_equal(normalize_crop(u16), (u16.astype(np.float32) / 2**16).astype(np.float16))
    u8 = np.array([[[0, 128, 255]]], dtype=np.uint8)
    assert np.array_equal(normalize_crop(u8), (u8.astype(np.float32) / 2**8).astype(np.float16))
    assert normalize_crop(u8, dataset_mean=128.0, dataset_std=64.0)[0, 0, 1] == 0
    assert normalize_crop(np.full((1, 1, 2), 0.25, np.float32)).dtype == np.float16
    with pytest.raises(InputError, match="NaN"):
        normalize_crop(np.array([[[np.nan]]], np.float32))


def test_int16_maps_its_range_onto_0_1_as_uint16_does(tmp_path: Path) -> None:
    """The dtype rule for int16 is (x + 2**15) / 2**16: the very FP16 input of x + 2**15 as uint16."""
    signed = np.array([[[-32768, -1024, 0, 3071, 32767]]], dtype=np.int16)
    shifted = (signed.astype(np.int32) + 2**15).astype(np.uint16)
    assert np.array_equal(normalize_crop(signed), normalize_crop(shifted)) and normalize_crop(signed).dtype == np.float16
    assert normalize_crop(signed)[0, 0, 0] == 0 and normalize_crop(signed)[0, 0, 2] == 0.5
    assert normalize_crop(signed, dataset_mean=-1024.0, dataset_std=4096.0)[0, 0, 1] == 0
    tifffile.imwrite(tmp_path / "s.tif", np.full((3, 4, 5), -7, np.int16))
    assert read_volume(tmp_path / "s.tif").dtype == np.int16
    with pytest.raises(InputError, match="cannot normalise int32 voxels; SKOOTS reads uint8, uint16, int16 or float"):
        normalize_crop(np.zeros((1, 1, 1), np.int32))


def test_imagej_hyperstack_channel_axis_is_found_where_it_is(tmp_path: Path) -> None:
    zcyx = zxy_volume(shape=(4, 2, 6, 5))
    tifffile.imwrite(tmp_path / "zcyx.tif", zcyx, imagej=True, metadata={"axes": "ZCYX"})
    volume = read_volume(tmp_path / "zcyx.tif", channel=1)
    assert volume.shape == (6, 5, 4)
    assert np.array_equal(np.asarray(volume.data), zcyx[:, 1].transpose(1, 2, 0))
    assert np.array_equal(volume.data[1:4, 0:2, 2:3], zcyx[2:3, 1, 1:4, 0:2].transpose(1, 2, 0))
    with pytest.raises(InputError, match=r"2 channels; choose one with --channel 0\.\.1"):
        read_volume(tmp_path / "zcyx.tif")


def test_single_time_point_and_single_channel_are_taken_as_is(tmp_path: Path) -> None:
    tzcyx = zxy_volume(shape=(1, 4, 1, 6, 5))
    tifffile.imwrite(tmp_path / "t.tif", tzcyx, metadata={"axes": "TZCYX"})
    assert np.array_equal(np.asarray(read_volume(tmp_path / "t.tif").data), tzcyx[0, :, 0].transpose(1, 2, 0))


def test_time_series_is_refused_with_the_fix(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "t.tif", zxy_volume(shape=(3, 4, 6, 5)), imagej=True, metadata={"axes": "TZYX"})
    with pytest.raises(InputError, match=r"time series \(3 time points, axes TZYX\); save one time point"):
        read_volume(tmp_path / "t.tif")


def test_ome_zarr_axes_are_honoured(tmp_path: Path) -> None:
    """A 5-D OME-Zarr image (t, c, z, y, x), the layout napari and bioformats2raw write."""
    tczyx = zxy_volume(shape=(1, 3, 4, 6, 5))
    group = zarr.open_group(str(tmp_path / "img.ome.zarr"), mode="w", zarr_format=2)
    group.create_array("0", data=tczyx)
    group.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": n} for n in "tczyx"], "datasets": [{"path": "0"}]}]
    volume = read_volume(tmp_path / "img.ome.zarr", channel=1)
    assert volume.shape == (6, 5, 4)
    assert np.array_equal(np.asarray(volume.data), tczyx[0, 1].transpose(1, 2, 0))
    with pytest.raises(InputError, match="3 channels"):
        read_volume(tmp_path / "img.ome.zarr")


@pytest.mark.parametrize("shape", [(3, 10, 30), (4, 6, 5, 3)], ids=["three-slices-tifffile-calls-SYX", "contig-samples-QYXS"])
def test_tifffile_guesses_are_not_axis_names(tmp_path: Path, shape: tuple[int, ...]) -> None:
    data = zxy_volume(shape=shape)
    tifffile.imwrite(tmp_path / "v.tif", data)
    expected = data if len(shape) == 3 else data[..., 0]
    assert np.array_equal(np.asarray(read_volume(tmp_path / "v.tif", channel=0).data), expected.transpose(1, 2, 0))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("mean_std", [(None, None), (300.5, 12.25)])
def test_normalisation_into_a_batch_slot_equals_the_plain_formula(dtype, mean_std) -> None:
    rng = np.random.default_rng(0)
    crop = (rng.random((7, 6, 5)) * (np.iinfo(dtype).max if np.dtype(dtype).kind == "u" else 2)).astype(dtype)
    mean, std = mean_std
    if mean is not None:
        expected = ((crop.astype(np.float32) - np.float32(mean)) / np.float32(std)).astype(np.float16)
    elif np.dtype(dtype).kind == "u":
        expected = (crop.astype(np.float32) / np.float32(2 ** (8 * np.dtype(dtype).itemsize))).astype(np.float16)
    else:
        expected = crop.astype(np.float16)
    batch = np.zeros((2, 1, 7, 6, 5), np.float16)
    normalize_crop(crop, dataset_mean=mean, dataset_std=std, out=batch[1, 0])
    assert np.array_equal(batch[1, 0], expected) and not batch[0].any()
    assert np.array_equal(normalize_crop(crop, dataset_mean=mean, dataset_std=std), expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
@pytest.mark.parametrize("mean_std", [(None, None), (300.5, 12.25), (-20.5, 3.3)])
def test_every_integer_value_normalises_into_a_strided_slot_bit_for_bit(dtype, mean_std) -> None:
    """Into a slot, integer crops go through a float16 table: every value of the type, in a
    strided crop and a strided slot, must give the bits of the whole-array formula."""
    info = np.iinfo(dtype)
    values = np.arange(info.min, info.max + 1).astype(dtype)
    crop = np.random.default_rng(1).permutation(np.resize(values, 2 * 2 * values.size)).reshape(4, -1, 2)[:, ::-1]
    mean, std = mean_std
    expected = normalize_crop(np.ascontiguousarray(crop), dataset_mean=mean, dataset_std=std)
    batch = np.zeros((1, 1, 4, crop.shape[1] + 3, 2), np.float16)
    slot = batch[0, 0, :, 1 : 1 + crop.shape[1]]
    normalize_crop(crop, dataset_mean=mean, dataset_std=std, out=slot)
    assert np.array_equal(slot.view(np.uint16), expected.view(np.uint16))
    assert not batch[0, 0, :, 0].any() and not batch[0, 0, :, -2:].any()


def test_a_long_last_axis_is_not_read_as_channels(tmp_path: Path) -> None:
    """Issue 27 (1): a (2, 48, 384, 384) array, two channels first, was read as [Z, Y, X, C]
    with 384 channels (channel 2 taken). An array or a plain TIFF whose last axis is longer than
    8 is refused with the axes fix; a declared order reads it; real channel stacks still read."""
    from skoots_client.volume_read import volume_from_array

    stack = np.zeros((2, 6, 16, 16), np.uint8)
    with pytest.raises(InputError, match=r'^<numpy array> of shape \(2, 6, 16, 16\) would read as \[Z, Y, X, C\] with 16 channels \(more than 8\); name its axes, e.g. axes="CZYX" \(or "TZYX"\)$'):
        volume_from_array(stack)
    assert volume_from_array(stack, channel=1, axes="CZYX").shape == (16, 16, 6)
    tifffile.imwrite(tmp_path / "czyx.tif", stack)
    with pytest.raises(InputError, match=r"with 16 channels \(more than 8\); name its axes, e.g. --axes CZYX"):
        read_volume(tmp_path / "czyx.tif")
    assert read_volume(tmp_path / "czyx.tif", channel=0, axes="CZYX").shape == (16, 16, 6)
    tifffile.imwrite(tmp_path / "c8.tif", np.zeros((4, 16, 16, 8), np.uint8))
    assert read_volume(tmp_path / "c8.tif").channel == 2  # a file's 8 channels: the seed's default, warned


def test_an_array_with_more_than_3_channels_needs_a_channel() -> None:
    """Issue 27 (1): an array's channel 2 of 4 was taken silently; now channel= is asked for."""
    from skoots_client.volume_read import volume_from_array

    data = np.zeros((4, 16, 16, 5), np.uint8)
    with pytest.raises(InputError, match=r"^<numpy array> of shape \(4, 16, 16, 5\) has 5 channels \(last axis\); choose one with channel=0\.\.4$"):
        volume_from_array(data)
    assert volume_from_array(data, channel=4).channel == 4
    assert volume_from_array(np.zeros((4, 16, 16, 1), np.uint8)).channels == 1
