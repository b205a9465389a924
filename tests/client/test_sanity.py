"""Segment-time normalisation, the cheap looks at an input, axis declarations and named triples."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from examples.synthetic import shape_option
from skoots_client.destinations import check_not_input
from skoots_client.errors import InputError, OutputError
from skoots_client.normalize import Normalization, NormalizeChoice, parse_normalize, resolve_normalization
from skoots_client.sanity import (
    SAMPLE_WINDOW,
    SAMPLE_WINDOWS_PER_AXIS,
    check_something_to_infer,
    empty_result_warning,
    intensity_warning,
    sample_voxels,
)
from skoots_client.volume import Volume, describe_shape
from skoots_client.volume_read import read_volume
from skoots_export.contract.errors import OptionError
from skoots_export.contract.triples import option_triple, parse_triple


@pytest.mark.parametrize(
    "text,expected",
    [
        (None, NormalizeChoice("auto", (), False)),
        ("auto", NormalizeChoice("auto", (), True)),
        ("DType", NormalizeChoice("dtype", (), True)),
        ("minmax", NormalizeChoice("minmax", (), True)),
        ("percentile", NormalizeChoice("percentile", (1.0, 99.8), True)),
        ("percentile:0.5,99", NormalizeChoice("percentile", (0.5, 99.0), True)),
        ("mean-std:120,30.5", NormalizeChoice("mean-std", (120.0, 30.5), True)),
    ],
)
def test_normalize_forms(text, expected) -> None:
    assert parse_normalize(text) == expected


@pytest.mark.parametrize(
    "text,match",
    [
        ("zscore", r"choose auto, dtype, minmax, percentile\[:LOW,HIGH\] or mean-std:M,S"),
        ("minmax:1,2", "choose auto"),
        ("percentile:1", "two percentiles LOW < HIGH within 0..100"),
        ("percentile:5,101", "two percentiles LOW < HIGH"),
        ("percentile:a,b", r"'a,b' is not two numbers"),
        ("mean-std:1", "the mean and a positive standard deviation"),
        ("mean-std:nan,1", "must be finite"),
    ],
)
def test_bad_normalize_forms_are_named(text: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        parse_normalize(text)


def test_each_rule_resolves_to_one_global_mapping() -> None:
    sample = np.arange(1000, dtype=np.uint16)
    assert resolve_normalization(parse_normalize(None), None, None, sample) == Normalization("dtype", detail=", the model's rule")
    assert resolve_normalization(parse_normalize(None), 10.0, 2.0, sample) == Normalization("mean-std", 10.0, 2.0, " (the model's)")
    assert resolve_normalization(parse_normalize("dtype"), 10.0, 2.0, sample).offset is None, "dtype overrides the model's mean/std"
    assert resolve_normalization(parse_normalize("mean-std:5,4"), 10.0, 2.0, sample) == Normalization("mean-std", 5.0, 4.0)
    assert resolve_normalization(parse_normalize("minmax"), None, None, sample) == Normalization("minmax", 0.0, 999.0)
    low, high = np.percentile(sample, (2, 98))
    assert resolve_normalization(parse_normalize("percentile:2,98"), None, None, sample) == Normalization("percentile", low, high - low, " 2-98")


def test_a_crops_normalisation_does_not_depend_on_where_it_is_cut() -> None:
    volume = np.random.default_rng(0).integers(0, 4096, (30, 20, 10)).astype(np.uint16)
    rule = resolve_normalization(parse_normalize("percentile"), None, None, volume.ravel())
    whole = rule.apply(volume)
    assert np.array_equal(rule.apply(volume[5:17, 3:20, 2:9]), whole[5:17, 3:20, 2:9])
    assert np.array_equal(whole, ((volume.astype(np.float32) - np.float32(rule.offset)) / np.float32(rule.scale)).astype(np.float16))


def test_stretching_a_constant_volume_is_refused() -> None:
    with pytest.raises(InputError, match=r"--normalize percentile: the volume's percentiles 1 and 99\.8 are both 0, so there is no range to stretch; use --normalize dtype or percentiles further apart"):
        resolve_normalization(parse_normalize("percentile"), None, None, np.zeros(100, np.uint8))


def test_the_sample_is_bounded_and_deterministic_on_a_huge_volume() -> None:
    """2.4e10 voxels that are never there (a broadcast view): the sample reads a few million."""
    huge = np.broadcast_to(np.arange(3000, dtype=np.uint16)[:, None, None], (3000, 4000, 2000))
    volume = Volume(huge, Path("huge.zarr"))
    sample = sample_voxels(volume)
    assert sample.size == SAMPLE_WINDOWS_PER_AXIS**3 * int(np.prod(SAMPLE_WINDOW))
    assert sample.min() == 0 and sample.max() == 2999, "the windows reach both ends of every axis"
    assert np.array_equal(sample, sample_voxels(volume))
    small = np.arange(6 * 7 * 5, dtype=np.uint8).reshape(6, 7, 5)
    assert np.array_equal(np.sort(sample_voxels(Volume(small, Path("s.tif")))), small.ravel()), "a small volume is read whole"


DTYPE_RULE = Normalization("dtype", detail=", the model's rule")


@pytest.mark.parametrize(
    "values,dtype,rule,explicit,expected",
    [
        ([0.0, 0.5, 1.0], np.float32, DTYPE_RULE, False, None),
        ([-0.3, 0.5, 1.4], np.float32, DTYPE_RULE, False, "values span -0.3 to 1.4, but the model takes float input as already normalised to [0, 1]; if the labels look wrong, pass --normalize percentile"),
        ([0.0, 200.0], np.float32, DTYPE_RULE, True, None),
        ([0, 15], np.uint8, DTYPE_RULE, True, None),
        ([0, 4095], np.uint16, DTYPE_RULE, True, None),
        ([0, 4096], np.uint16, DTYPE_RULE, False, None),
        ([-20000, 20000], np.int16, DTYPE_RULE, False, None),
        ([0, 16], np.uint8, DTYPE_RULE, False, None),
        ([0, 4095], np.uint16, Normalization("mean-std", 100.0, 20.0), False, None),
        ([7, 7], np.uint16, Normalization("percentile", 1.0, 2.0), True, "every sampled voxel of the volume is 7: there is nothing to segment — check the file, --channel and --axes"),
    ],
)
def test_intensity_looks(values, dtype, rule, explicit, expected) -> None:
    found = intensity_warning(np.array(values, dtype), dtype, rule, explicit)
    assert found == expected or (expected is not None and found is not None and found.endswith(expected)), found


def test_float_far_beyond_one_under_the_dtype_rule_is_refused() -> None:
    with pytest.raises(InputError, match=r"float64 volume's values span 0 to 255, .* or --normalize dtype to take it as is"):
        intensity_warning(np.array([0.0, 255.0]), np.float64, DTYPE_RULE, False)


@pytest.mark.parametrize(
    "values,dtype,match",
    [
        ([0, 4095], np.uint16, r"^the uint16 volume uses only 0 to 4095 of its range 0 to 65535 \(e\.g\. 12-bit camera data\), so under the "
                               r"dtype rule x / 65536 the model sees it nearly black; pass --normalize percentile \(or minmax\) to rescale it, "
                               r"or --normalize dtype to take it as is$"),
        ([3, 15], np.uint8, r"^the uint8 volume uses only 0 to 15 of its range 0 to 255 .* x / 256 .*--normalize dtype to take it as is$"),
        ([-1024, 3071], np.int16, r"^the int16 volume spans only -1024 to 3071 of its range -32768 to 32767, so under the dtype rule "
                                  r"\(x \+ 32768\) / 65536 the model sees it nearly uniform; pass --normalize percentile .*--normalize dtype"),
    ],
)
def test_integers_using_under_a_sixteenth_of_their_range_are_refused_under_the_dtype_rule(values, dtype, match) -> None:
    """The labels would come out empty after a whole inference (issue 17: 90 s for nothing)."""
    with pytest.raises(InputError, match=match):
        intensity_warning(np.array(values, dtype), dtype, DTYPE_RULE, False)


def test_a_mask_without_foreground_or_a_skip_below_above_every_voxel_is_refused(tmp_path: Path) -> None:
    data = np.zeros((40, 30, 20), np.uint16)
    data[39, 29, 19] = 900  # the last voxel read: the whole volume is scanned, slab by slab
    volume = Volume(data, tmp_path / "v.tif")
    with pytest.raises(InputError, match=r"^--mask has no foreground \(no nonzero voxel\): every crop would be skipped and the labels empty; "):
        check_something_to_infer(volume, np.zeros((4, 3, 2), np.uint8), slab_bytes=100)
    with pytest.raises(InputError, match=r"^--skip-below 901 is above every voxel of the volume \(its maximum is 900\): every crop would be "
                                         r"skipped and the labels empty; lower it, or drop --skip-below$"):
        check_something_to_infer(volume, None, 901, slab_bytes=100)
    check_something_to_infer(volume, np.eye(4, dtype=bool)[:, :, None], 900, slab_bytes=100)
    check_something_to_infer(volume)


def test_a_nearly_empty_result_is_flagged() -> None:
    labels = np.zeros((100, 100, 20), np.uint8)
    assert empty_result_warning(0, labels).startswith("no instances found; likely causes: ")
    labels[0, 0, :2] = 1
    assert empty_result_warning(1, labels).startswith("1 instances cover only 0.0010% of the volume; likely causes: ")
    labels[:10, :10, :10] = 1
    assert empty_result_warning(1, labels) is None


def test_destinations_are_checked_against_the_input(tmp_path: Path) -> None:
    (tmp_path / "v.tif").write_bytes(b"raw")
    (tmp_path / "link.tif").symlink_to(tmp_path / "v.tif")
    check_not_input("--out", tmp_path / "o.tif", [tmp_path / "v.tif"])
    check_not_input("--out", tmp_path / "v.tif", [tmp_path / "missing.tif"])
    with pytest.raises(OutputError, match=r"--table \S+link\.tif is the input \S+v\.tif; choose another path"):
        check_not_input("--table", tmp_path / "link.tif", [tmp_path / "v.tif"])


def test_axes_are_declared_in_napari_letters(tmp_path: Path) -> None:
    czyx = np.random.default_rng(0).integers(0, 255, (2, 4, 6, 5)).astype(np.uint8)
    zarr.create_array(str(tmp_path / "c.zarr"), data=czyx)
    volume = read_volume(tmp_path / "c.zarr", channel=1, axes="czyx")
    assert (volume.axes, volume.axes_from, volume.shape) == ("CZYX", "--axes", (6, 5, 4))
    assert np.array_equal(np.asarray(volume.data), czyx[1].transpose(1, 2, 0))
    yxz = czyx[0].transpose(1, 2, 0)
    tifffile.imwrite(tmp_path / "yxz.tif", yxz)
    assert np.array_equal(np.asarray(read_volume(tmp_path / "yxz.tif", axes="YXZ").data), yxz), "YXZ is the runtime's own order"
    tifffile.imwrite(tmp_path / "t.tif", czyx)
    with pytest.raises(InputError, match=r"time series \(2 time points, axes TZYX\)"):
        read_volume(tmp_path / "t.tif", axes="TZYX")
    with pytest.raises(InputError, match=r"--axes 'ZYXX': name each of Z, Y, X once"):
        read_volume(tmp_path / "t.tif", axes="ZYXX")
    assert describe_shape((40, 32, 8)) == "z 8, y 40, x 32"


@pytest.mark.parametrize(
    "text,kind,expected",
    [
        ("300,280,20", int, (300, 280, 20)),
        ("x=280,y=300,z=20", int, (300, 280, 20)),
        ("Z=20, Y=300, X=280", int, (300, 280, 20)),
        ("y=60,x=50.5,z=12", float, (60.0, 50.5, 12.0)),
    ],
)
def test_triples_take_the_seed_order_or_napari_names(text: str, kind: type, expected: tuple) -> None:
    assert parse_triple(text, kind) == expected
    assert option_triple("--crop", text, kind) == expected


@pytest.mark.parametrize("text", ["300,300", "x=1,y=2", "x=1,y=2,z=3,x=4", "x=1,y=2,w=3", "x=1,2,3"])
def test_malformed_triples_are_one_line_with_both_forms(text: str) -> None:
    with pytest.raises(OptionError, match=r"needs three integers X,Y,Z, e\.g\. --overlap 300,300,20, or named as napari shows the axes, e\.g\. --overlap y=300,x=300,z=20"):
        option_triple("--overlap", text)


def test_the_synthetic_generators_shape_takes_both_forms() -> None:
    assert shape_option("y=64,x=48,z=16") == shape_option("64,48,16") == (64, 48, 16)
    with pytest.raises(argparse.ArgumentTypeError, match="or named as napari shows the axes"):
        shape_option("y=64")
