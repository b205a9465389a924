"""Segment end to end with the issue-13 options, in process with the tiny lively model:
skipping empty crops (--mask, --skip-below), the instance table (--table, measure), voxel size
and labels written into an OME-Zarr image (--labels-into), on the command line too."""

from __future__ import annotations

import csv
import logging
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from reference_pipeline import same_partition
from test_segment_e2e import CLIENT, blobs_volume

import skoots_client
from skoots_client.errors import InputError, OutputError
from skoots_client.in_memory import segment_volume
from skoots_client.model_source import EmbeddedModel
from skoots_client.skip import SkipRule
from skoots_client.specs import OutputSpec
from skoots_client.tiling import crop_grid
from skoots_client.volume import Volume
from skoots_client.volume_read import read_volume
from skoots_client.voxel_size import VoxelSize
from skoots_client.voxel_size_read import read_voxel_size
from skoots_client.workdir import WorkDir, fingerprint

SHAPE_ZXY = (20, 60, 52)


@pytest.fixture(scope="module")
def model(e2e_repository: Path) -> EmbeddedModel:
    return EmbeddedModel(e2e_repository, "skoots")


@pytest.fixture(scope="module")
def unmasked(model: EmbeddedModel):
    volume = Volume(blobs_volume(SHAPE_ZXY, seed=2).transpose(1, 2, 0), Path("blobs"))
    return volume, segment_volume(volume, model.info.parameters, [model], batch_size=4, output=OutputSpec(save_intermediates=True))


def upscaled(mask_xyz: np.ndarray, shape) -> np.ndarray:
    """Naive oracle of the nearest-neighbour scaling: each voxel takes the mask voxel under its centre."""
    index = [np.array([int((i + 0.5) * m / n) for i in range(n)]) for m, n in zip(mask_xyz.shape, shape)]
    return mask_xyz[np.ix_(*index)]


def test_masked_run_equals_unmasked_on_inferred_crops(model: EmbeddedModel, unmasked) -> None:
    volume, full = unmasked
    mask = np.zeros((15, 13, 5), np.uint8)  # a quarter of the resolution, [X, Y, Z]
    mask[2:6, 1:5, 1:3] = 1
    mask[10:12, 9:12, 3:5] = 7
    masked = segment_volume(volume, model.info.parameters, [model], batch_size=4, output=OutputSpec(save_intermediates=True),
                            skip=SkipRule(mask))
    parameters = model.info.parameters
    grid = crop_grid(volume.shape, parameters.crop, parameters.overlap)
    big = upscaled(mask, volume.shape)
    inferred = {c.index for c in grid if big[c.window].any()}  # foreground anywhere in the whole window
    assert masked.skipped == len(grid) - len(inferred) and 0 < masked.skipped < len(grid) - 4
    assert masked.inferred == len(inferred) and masked.crops == full.crops == len(grid)
    assert masked.seconds_saved > 0
    for crop in grid:
        for name in ("skeleton", "vectors"):
            ours, theirs = masked.intermediates[name], full.intermediates[name]
            region = (slice(None), *crop.source) if name == "vectors" else crop.source
            if crop.index in inferred:
                assert np.array_equal(ours[region], theirs[region]), (crop.index, name)
            else:
                assert not ours[region].any(), (crop.index, name)
    # Labels: equal up to renumbering where the mask is on, inside crops whose neighbours were all inferred.
    starts = [sorted({c.start[a] for c in grid}) for a in range(3)]
    position = {c.index: tuple(s.index(c.start[a]) for a, s in enumerate(starts)) for c in grid}
    at = {p: i for i, p in position.items()}
    region = np.zeros(volume.shape, bool)
    for crop in grid:
        near = [at.get(tuple(p + d - 1 for p, d in zip(position[crop.index], step))) for step in np.ndindex(3, 3, 3)]
        if all(i is None or i in inferred for i in near):
            region[crop.source] = True
    region &= big > 0
    assert region.sum() > 500
    assert same_partition(masked.labels[region], full.labels[region])
    assert masked.labels[region].max() > 0


def test_skip_below_counts_and_summary(tmp_path: Path, e2e_repository: Path) -> None:
    data = blobs_volume(SHAPE_ZXY, seed=3)
    data[:, 30:, :] = 0  # dark resin in half the rows
    tifffile.imwrite(tmp_path / "v.tif", data)
    volume = read_volume(tmp_path / "v.tif")
    grid = crop_grid(volume.shape, (24, 24, 8), (4, 4, 2))
    expected = sum(int(np.asarray(volume.data[c.window]).max() < 1) for c in grid)
    assert 0 < expected < len(grid)
    text = skoots_client.segment(tmp_path / "v.tif", out=tmp_path / "l.tif", repository=e2e_repository, device="cpu",
                                 quiet=True, skip_below=1).summary
    assert f"skipped {expected} of {len(grid)} crops (empty by --mask / --skip-below), saving about" in text
    labels = tifffile.imread(tmp_path / "l.tif")
    assert labels.max() > 0


def test_work_dir_fingerprint_names_the_skip_rule(tmp_path: Path, model: EmbeddedModel) -> None:
    tifffile.imwrite(tmp_path / "v.tif", np.zeros((8, 30, 30), np.uint8))
    made = lambda skip: fingerprint(tmp_path / "v.tif", (30, 30, 8), np.uint8, None, "skoots", model.info.parameters,  # noqa: E731
                                    reference_borders=False, probability=False, skip=skip)
    work = WorkDir(tmp_path / "w", made({"mask": None, "below": 5.0}))
    list(work.restore(crop_grid((30, 30, 8), (24, 24, 8), (4, 4, 2))))
    work.close()
    with pytest.raises(OutputError, match=r"was made for another run \(differs in: skip\)"):
        WorkDir(tmp_path / "w", made({"mask": None, "below": 6.0}))
    with pytest.raises(OutputError, match=r"differs in: skip"):
        WorkDir(tmp_path / "w", made(None))


def test_segment_refuses_a_bad_mask_table_or_labels_into_before_any_work(tmp_path: Path, e2e_repository: Path) -> None:
    tifffile.imwrite(tmp_path / "v.tif", blobs_volume((8, 30, 30)))
    common = dict(repository=e2e_repository, device="cpu", quiet=True)
    with pytest.raises(InputError, match=r"^mask=: input not found: \S+nomask\.tif"):
        skoots_client.segment(tmp_path / "v.tif", out=tmp_path / "l.tif", mask=tmp_path / "nomask.tif", **common)
    with pytest.raises(OutputError, match=r"^table='\S+t\.txt': unknown table type"):
        skoots_client.segment(tmp_path / "v.tif", out=tmp_path / "l.tif", table=tmp_path / "t.txt", **common)
    with pytest.raises(OutputError, match=r"^labels_into='\S+v\.tif' is not an OME-Zarr image"):
        skoots_client.segment(tmp_path / "v.tif", out=None, labels_into=tmp_path / "v.tif", **common)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.tif"]


def test_table_of_segment_equals_measure_of_its_output(tmp_path: Path, e2e_repository: Path) -> None:
    tifffile.imwrite(tmp_path / "v.tif", blobs_volume(SHAPE_ZXY, seed=0), imagej=True, resolution=(1 / 0.2, 1 / 0.1),
                     metadata={"axes": "ZYX", "spacing": 0.5, "unit": "micron"})
    text = skoots_client.segment(tmp_path / "v.tif", out=tmp_path / "l.ome.zarr", table=tmp_path / "t.csv",
                                 repository=e2e_repository, device="cpu", quiet=True, ngff_version="0.5").summary
    size = VoxelSize((0.1, 0.2, 0.5))
    assert "voxel size z 0.5, y 0.1, x 0.2 um" in text and read_voxel_size(tmp_path / "l.ome.zarr") == size
    from skoots_client import measure

    measure(tmp_path / "l.ome.zarr", raw=tmp_path / "v.tif", out=tmp_path / "m.csv")
    ours, theirs = (list(csv.DictReader(open(tmp_path / n, newline=""))) for n in ("t.csv", "m.csv"))
    assert ours == theirs and len(ours) >= 3
    labels = zarr.open_array(str(tmp_path / "l.ome.zarr" / "0"), mode="r")[...]
    first = ours[0]
    assert int(first["voxels"]) == int((labels == int(first["label"])).sum())
    assert float(first["volume_um3"]) == pytest.approx(int(first["voxels"]) * 0.1 * 0.2 * 0.5)
    properties = zarr.open_group(str(tmp_path / "l.ome.zarr"), mode="r").attrs["ome"]["image-label"]["properties"]
    assert [p["label-value"] for p in properties] == [int(r["label"]) for r in ours]


def run_client(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CLIENT, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, "COLUMNS": "200"})


def test_cli_labels_into_an_ome_zarr_image_then_measure(tmp_path: Path, e2e_repository: Path) -> None:
    from ome_zarr.format import FormatV05
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr.writer import write_image

    image = tmp_path / "img.ome.zarr"
    raw = blobs_volume((8, 40, 40), seed=5)  # 4 crops: the command line, not the model, is under test here
    write_image(raw, zarr.open_group(str(image), mode="w", zarr_format=3), axes="zyx", fmt=FormatV05(),
                scale={"z": 1.0, "y": 0.25, "x": 0.25}, axes_units={a: "micrometer" for a in "zyx"})
    done = run_client("segment", image, "-r", e2e_repository, "--device", "cpu", "--labels-into", image, "--label-name", "cells",
                      "--table", "t.csv", "--voxel-size", "0.3,0.3,1um", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"warning: --voxel-size z 1, y 0.3, x 0.3 um differs from {image}'s metadata z 1, y 0.25, x 0.25 um; using --voxel-size"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.ome.zarr", "t.csv"]
    logging.getLogger("ome_zarr").setLevel(logging.ERROR)
    nodes = list(Reader(parse_url(str(image)))())
    cells = next(n for n in nodes if str(n.zarr.path).rstrip("/").endswith("cells"))
    assert [d.shape for d in cells.data] == [d.shape for d in nodes[0].data]
    measured = run_client("measure", image / "labels" / "cells", "--raw", image, "--voxel-size", "0.3,0.3,1",
                          "--out", "m.csv", cwd=tmp_path)
    assert measured.returncode == 0, measured.stderr
    assert "instances, voxel size z 1, y 0.3, x 0.3 um → m.csv" in measured.stdout
    assert (tmp_path / "t.csv").read_text() == (tmp_path / "m.csv").read_text()
    assert len((tmp_path / "t.csv").read_text().splitlines()) > 1
    again = run_client("segment", image, "-r", e2e_repository, "--labels-into", image, "--label-name", "cells", cwd=tmp_path)
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert again.stderr.startswith("error: --labels-into") and "labels/cells exists; pass --overwrite" in again.stderr


@pytest.mark.parametrize(
    "args, match",
    [
        (["--ngff-version", "0.6"], r"^error: Invalid value for '--ngff-version': '0\.6' is not one of '0\.4', '0\.5' — see skoots-client segment --help$"),
        (["--unit", "um"], r"^error: --unit needs --voxel-size"),
    ],
)
def test_cli_option_mistakes_are_one_line(tmp_path: Path, args, match) -> None:
    tifffile.imwrite(tmp_path / "v.tif", np.zeros((4, 8, 8), np.uint8))
    done = run_client("segment", "v.tif", *args, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert re.search(match, done.stderr.strip())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.tif"]


# --- issue 17: labels written into a t,c,z,y,x image, and never lost after inference ----------

def ome_zarr_py_image(path: Path, data: np.ndarray, axes: str, version: str = "0.4", scale=None, units: bool = True) -> None:
    """An OME-Zarr image as ome-zarr-py writes it (its own chunks, level paths s0, s1, ...)."""
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    write_image(data, zarr.open_group(str(path), mode="w", zarr_format=2 if version == "0.4" else 3), axes=axes,
                fmt=FormatV04() if version == "0.4" else FormatV05(), scale=scale or {"z": 2.0, "y": 0.5, "x": 0.5},
                axes_units={a: "micrometer" for a in "zyx"} if units else None)


def test_labels_into_a_tczyx_image_wider_than_a_chunk_with_channel_1(tmp_path: Path, e2e_repository: Path) -> None:
    """Issue 17 (1): t, c, z, y, x, 264 rows (two 256-row chunks), channel 1 of 2: the labels go
    into every level of labels/cells, equal to --out's (c5d0a84 died with "could not broadcast")."""
    logging.getLogger("ome_zarr").setLevel(logging.ERROR)
    image = tmp_path / "img.ome.zarr"
    raw = np.stack([np.zeros((8, 264, 40), np.uint16), blobs_volume((8, 264, 40), seed=4)])[None]
    ome_zarr_py_image(image, raw, "tczyx")
    skoots_client.segment(image, out=tmp_path / "l.tif", labels_into=image, label_name="cells", channel=1,
                          repository=e2e_repository, device="cpu", quiet=True)
    expected = tifffile.imread(tmp_path / "l.tif")
    assert expected.max() >= 3
    group = zarr.open_group(str(image / "labels" / "cells"), mode="r")
    datasets = group.attrs["multiscales"][0]["datasets"]
    assert [d["path"] for d in datasets] == list(zarr.open_group(str(image), mode="r").attrs["multiscales"][0]["datasets"][i]["path"]
                                                  for i in range(len(datasets)))
    for i, d in enumerate(datasets):
        level = group[d["path"]][...]
        assert level.shape[:2] == (1, 8)
        rows = [int((j + 0.5) * 264 / level.shape[2]) for j in range(level.shape[2])]
        cols = [int((j + 0.5) * 40 / level.shape[3]) for j in range(level.shape[3])]
        assert np.array_equal(level[0], expected[:, rows][:, :, cols]), i


def four_channel_tif(path: Path) -> None:
    """[Z, Y, X, C], 4 channels: segment warns which one it takes (channel 2), before inferring."""
    tifffile.imwrite(path, np.stack([blobs_volume((8, 40, 40), seed=s) for s in range(4)], axis=-1))


@pytest.fixture(scope="module")
def four_channel_labels(tmp_path_factory, e2e_repository: Path) -> tuple[Path, np.ndarray]:
    folder = tmp_path_factory.mktemp("keep")
    four_channel_tif(folder / "v.tif")
    skoots_client.segment(folder / "v.tif", out=folder / "expected.tif", repository=e2e_repository, device="cpu", quiet=True)
    return folder / "v.tif", tifffile.imread(folder / "expected.tif")


@pytest.mark.parametrize("fault", ["output appeared", "folder removed"])
def test_a_write_failing_after_inference_keeps_the_labels(tmp_path: Path, e2e_repository: Path, four_channel_labels, fault: str) -> None:
    """Issue 17 (1): the destination goes wrong after the checks, while the model runs (a file
    appears at --out; --out's folder is removed): the one-line error names where the labels
    are kept, a Zarr array beside the output (or beside the input when the output's folder is
    gone), bitwise the labels of a run that could write."""
    from skoots_client.volume_read import read_labels

    source, expected = four_channel_labels
    four_channel_tif(tmp_path / "v.tif")
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "l.tif"

    def meanwhile(line: str) -> None:  # called with the channel warning: after the checks, before inference
        if fault == "output appeared":
            out.write_bytes(b"someone else's file")
        else:
            (tmp_path / "out").rmdir()

    with pytest.raises(OutputError) as caught:
        skoots_client.segment(tmp_path / "v.tif", out=out, repository=e2e_repository, device="cpu", quiet=True, warn=meanwhile)
    message = str(caught.value)
    assert "\n" not in message
    kept = Path(re.search(r"the labels are kept in (\S+\.zarr) \(a Zarr array \[Z, Y, X\]", message).group(1))
    assert kept.parent == (tmp_path / "out" if fault == "output appeared" else tmp_path)
    assert kept.name.startswith("l.partial-")
    if fault == "output appeared":
        assert message.startswith(f"out={str(out)!r} exists; pass overwrite=True")
        assert out.read_bytes() == b"someone else's file"
    else:
        assert message.startswith(f"out={str(out)!r}: folder {tmp_path / 'out'} does not exist")
    labels = read_labels(kept)
    assert labels.dtype == expected.dtype and np.array_equal(labels, expected)


def test_a_writer_bug_after_inference_keeps_the_labels_as_one_line(tmp_path: Path, e2e_repository: Path, four_channel_labels,
                                                                  monkeypatch) -> None:
    """Issue 17 (1): a writer raising what zarr raised (fault injected into the NGFF writer):
    --labels-into fails in one line naming the kept labels; the image gets no labels/."""
    import skoots_client.ngff as ngff

    source, expected = four_channel_labels
    image = tmp_path / "img.ome.zarr"
    ome_zarr_py_image(image, tifffile.imread(source).transpose(3, 0, 1, 2), "czyx")

    def broken(*args, **kwargs):
        raise ValueError("could not broadcast input array from shape (32,256,400) into shape (32,256,256)")

    monkeypatch.setattr(ngff, "write_label_image", broken)
    with pytest.raises(OutputError, match=r"^writing the labels failed \(ValueError: could not broadcast .*\) — the labels are kept in "
                                          r"\S+/img\.partial-\w+\.zarr \(a Zarr array") as caught:
        skoots_client.segment(image, out=None, labels_into=image, channel=2, repository=e2e_repository, device="cpu", quiet=True)
    kept = Path(re.search(r"kept in (\S+\.zarr)", str(caught.value)).group(1))
    assert kept.parent == tmp_path and not (image / "labels").exists()
    from skoots_client.volume_read import read_labels

    assert np.array_equal(read_labels(kept), expected)
    assert read_voxel_size(kept) == VoxelSize((0.5, 0.5, 2.0))


def test_a_scale_without_a_unit_is_said_so_and_unit_names_it(tmp_path: Path, e2e_repository: Path) -> None:
    """Issue 17 (2): OME-Zarr axes with a scale but no unit: the summary prints no px on the
    scaled sizes, the table's scaled columns end in _units; --unit alone names the unit."""
    image = tmp_path / "img.ome.zarr"
    ome_zarr_py_image(image, blobs_volume((8, 40, 40), seed=5), "zyx", scale={"z": 0.05, "y": 0.012, "x": 0.012}, units=False)
    options = dict(repository=e2e_repository, device="cpu", quiet=True)
    text = skoots_client.segment(image, out=tmp_path / "l.tif", table=tmp_path / "t.csv", **options).summary
    assert "voxel size z 0.05, y 0.012, x 0.012 (a scale without a unit; name it with --unit)" in text and " px" not in text
    rows = list(csv.DictReader(open(tmp_path / "t.csv", newline="")))
    assert len(rows) >= 1 and "volume_units3" in rows[0] and "centroid_z_units" in rows[0] and "skeleton_length_units" in rows[0]
    assert not [c for c in rows[0] if c.endswith(("_px", "_px3"))]
    assert float(rows[0]["volume_units3"]) == pytest.approx(int(rows[0]["voxels"]) * 0.05 * 0.012 * 0.012)
    text = skoots_client.segment(image, out=tmp_path / "n.tif", table=tmp_path / "n.csv", unit="nanometer", **options).summary
    assert "voxel size z 0.05, y 0.012, x 0.012 nm" in text
    named = list(csv.DictReader(open(tmp_path / "n.csv", newline="")))
    assert [float(r["volume_nm3"]) for r in named] == [float(r["volume_units3"]) for r in rows]


def test_segment_one_level_of_an_image_with_its_voxel_size(tmp_path: Path, e2e_repository: Path) -> None:
    """Issue 17 (6b): --level 1 and IMAGE/s1 segment level 1 with its own scale (c5d0a84: 1 px);
    the labels state it; a level not there is one line naming the levels."""
    from ome_zarr.scale import Scaler

    image = tmp_path / "img.ome.zarr"
    logging.getLogger("ome_zarr").setLevel(logging.ERROR)
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_image

    big = np.kron(blobs_volume((8, 40, 40), seed=5), np.ones((1, 2, 2), np.uint16))
    write_image(big, zarr.open_group(str(image), mode="w", zarr_format=2), axes="zyx", fmt=FormatV04(), scaler=Scaler(max_layer=1),
                scale={"z": 2.0, "y": 0.5, "x": 0.5}, axes_units={a: "micrometer" for a in "zyx"})
    options = dict(repository=e2e_repository, device="cpu", quiet=True)
    text = skoots_client.segment(image, level=1, out=tmp_path / "a.ome.zarr", **options).summary
    assert f"{image / 's1'} → " in text and "voxel size z 2, y 1, x 1 um" in text
    assert read_voxel_size(tmp_path / "a.ome.zarr") == VoxelSize((1.0, 1.0, 2.0))
    skoots_client.segment(image / "s1", out=tmp_path / "b.tif", **options)
    assert read_voxel_size(tmp_path / "b.tif") == VoxelSize((1.0, 1.0, 2.0))
    labels = tifffile.imread(tmp_path / "b.tif")
    assert labels.shape == (8, 40, 40) and labels.max() >= 1
    assert np.array_equal(zarr.open_array(str(tmp_path / "a.ome.zarr" / "0"), mode="r")[...], labels)
    done = run_client("segment", image, "--level", "2", "-r", e2e_repository, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.strip() == f"error: --level 2: {image} has levels 0 (s0), 1 (s1); choose one of them"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ome.zarr", "b.tif", "img.ome.zarr"]


def test_a_preview_failing_after_the_labels_says_where_they_are(tmp_path: Path, e2e_repository: Path, four_channel_labels) -> None:
    source, expected = four_channel_labels
    four_channel_tif(tmp_path / "v.tif")
    (tmp_path / "p").mkdir()

    def meanwhile(line: str) -> None:  # the preview's folder goes away while the model runs
        (tmp_path / "p").rmdir()

    with pytest.raises(OutputError, match=r"^cannot write the preview \S+p/p\.png \(.*\) — the labels were written to \S+l\.tif$"):
        skoots_client.segment(tmp_path / "v.tif", out=tmp_path / "l.tif", preview=tmp_path / "p" / "p.png", repository=e2e_repository,
                              device="cpu", quiet=True, warn=meanwhile)
    assert np.array_equal(tifffile.imread(tmp_path / "l.tif"), expected)


def test_measure_names_a_scale_without_a_unit_and_unit_alone_names_it(tmp_path: Path) -> None:
    """Issue 17 (2), measure on the command line: labels whose OME-Zarr scale has no unit get
    _units columns and say so; --unit nm alone gives _nm columns of the same values."""
    from skoots_client.label_write import write_labels

    labels = np.zeros((20, 16, 6), np.uint8)
    labels[2:8, 3:9, 1:4] = 1
    labels[12:18, 10:14, 2:6] = 2
    write_labels(tmp_path / "l.ome.zarr", labels, voxel_size=VoxelSize((0.012, 0.012, 0.05), None))
    done = run_client("measure", "l.ome.zarr", "--out", "u.csv", "--no-skeleton", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "voxel size z 0.05, y 0.012, x 0.012 (a scale without a unit; name it with --unit)" in done.stdout
    named = run_client("measure", "l.ome.zarr", "--out", "n.csv", "--no-skeleton", "--unit", "nm", cwd=tmp_path)
    assert named.returncode == 0, named.stderr
    units, nm = (list(csv.DictReader(open(tmp_path / n, newline=""))) for n in ("u.csv", "n.csv"))
    assert [float(r["volume_units3"]) for r in units] == [float(r["volume_nm3"]) for r in nm] == pytest.approx(
        [108 * 0.012 * 0.012 * 0.05, 96 * 0.012 * 0.012 * 0.05])
    assert not [c for c in units[0] if "_px" in c]
