"""``skoots-client evaluate`` as a user runs it: the console script in a subprocess, real files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

CLIENT = Path(sys.executable).parent / "skoots-client"


def client(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CLIENT), *map(str, args)], capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"}
    )


@pytest.fixture(scope="module", autouse=True)
def _console_script() -> None:
    if not CLIENT.is_file():
        pytest.skip(f"no console script at {CLIENT}: install the project (pip install -e .)")


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[Path, Path]:
    true = np.zeros((4, 10, 12), np.uint16)
    true[:, 1:4, 1:4], true[:, 6:9, 2:10] = 1, 2
    pred = np.zeros((4, 10, 12), np.uint32)
    pred[:, 1:4, 1:4], pred[:, 6:9, 2:5], pred[:, 6:9, 5:10] = 7, 8, 9  # object 2 split 3:5
    tifffile.imwrite(tmp_path / "true.tif", true)
    zarr.save_array(str(tmp_path / "pred.zarr"), pred)
    return tmp_path / "pred.zarr", tmp_path / "true.tif"


def test_evaluate_prints_a_table(pair: tuple[Path, Path]) -> None:
    done = client("evaluate", *pair)
    assert done.returncode == 0, done.stderr
    assert "predicted 3, ground truth 2" in done.stdout
    assert re.search(r"\n\s*0\.50\s+2\s+1\s+0\s", done.stdout)  # IoU, TP, FP, FN: the 5/8 part matches
    assert re.search(r"\n\s*0\.75\s+1\s+2\s+1\s", done.stdout)
    assert "adjusted Rand index" in done.stdout and "split" in done.stdout


def test_evaluate_json_is_machine_readable(pair: tuple[Path, Path]) -> None:
    done = client("evaluate", *pair, "--json")
    assert done.returncode == 0, done.stderr
    scores = json.loads(done.stdout)
    assert (scores["pred_instances"], scores["true_instances"]) == (3, 2)
    at_50, at_75 = scores["matches"]
    assert (at_50["threshold"], at_50["tp"], at_50["fp"], at_50["fn"]) == (0.5, 2, 1, 0)
    assert at_50["f1"] == pytest.approx(0.8) and at_50["ap"] == pytest.approx(2 / 3)
    assert (at_75["threshold"], at_75["tp"], at_75["fp"], at_75["fn"]) == (0.75, 1, 2, 1)
    assert at_75["f1"] == pytest.approx(0.4) and at_75["ap"] == pytest.approx(0.25)
    assert scores["vi_split"] > 0 and scores["vi_merge"] == 0.0
    assert 0 < scores["adjusted_rand_index"] < 1


def test_same_file_twice_scores_one(pair: tuple[Path, Path]) -> None:
    scores = json.loads(client("evaluate", pair[1], pair[1], "--json").stdout)
    assert scores["adjusted_rand_index"] == 1.0 and all(m["f1"] == 1.0 for m in scores["matches"])


def _write(path: Path, array: np.ndarray) -> Path:
    tifffile.imwrite(path, array)
    return path


def _text(path: Path) -> Path:
    path.write_text("not an image")
    return path


@pytest.mark.parametrize(
    "make_pred,match",
    [
        (lambda d: d / "missing.tif", "input not found: .*missing.tif"),
        (lambda d: _write(d / "small.tif", np.zeros((4, 10, 11), np.uint16)), r"small.tif is z 4, y 10, x 11 but .*true.tif is z 4, y 10, x 12; evaluate labels of the same volume"),
        (lambda d: _write(d / "float.tif", np.zeros((4, 10, 12), np.float32)), "holds float32 values; a label volume holds integers"),
        (lambda d: _write(d / "flat.tif", np.zeros((10, 12), np.uint16)), "has 2 dimensions"),
        (lambda d: _write(d / "negative.tif", np.full((4, 10, 12), -3, np.int16)), "negative labels"),
        (lambda d: _text(d / "notes.txt"), "unknown input format"),
    ],
)
def test_user_errors_are_one_line(pair: tuple[Path, Path], tmp_path: Path, make_pred, match: str) -> None:
    done = client("evaluate", make_pred(tmp_path), pair[1])
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert re.search(match, lines[0]), lines[0]


# ------------------------------------------------- the tool's own outputs, in every format it writes

SHAPE_ZYX = (12, 40, 56)  # not square, so a transposed read would not even match in shape


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, e2e_repository: Path) -> Path:
    """One segmentation written by ``segment`` as TIFF, N5, precomputed and OME-Zarr, and a
    ground truth (TIFF) that differs from it: two objects merged, one split."""
    from scipy import ndimage

    import skoots_client

    folder = tmp_path_factory.mktemp("outputs")
    field = ndimage.gaussian_filter(np.random.default_rng(1).random(SHAPE_ZYX), sigma=(1, 3, 3))
    tifffile.imwrite(folder / "v.tif", ((field - field.min()) / np.ptp(field) * 65535).astype(np.uint16))
    labels = None
    for out in ["l.tif", f"n5://{folder}/l.n5", f"precomputed://{folder}/pre", "l.ome.zarr"]:
        result = skoots_client.segment(folder / "v.tif", out=out if "://" in out else folder / out, repository=e2e_repository,
                                       device="cpu", quiet=True)
        labels = result.labels
    assert labels is not None and labels.max() >= 4
    truth = labels.astype(np.uint16)
    largest = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
    x = np.nonzero(labels == largest)[2]
    truth[(labels == largest) & (np.arange(SHAPE_ZYX[2]) >= np.median(x))] = 500  # split
    truth[truth == (2 if largest != 2 else 3)] = 1 if largest != 1 else 4  # merged
    tifffile.imwrite(folder / "truth.tif", truth)
    return folder


def test_own_outputs_in_every_format_score_as_the_tiff(outputs: Path) -> None:
    """N5 and precomputed by path and by URL (n5:///…, precomputed:///…), OME-Zarr: the TIFF's scores."""
    tiff = json.loads(client("evaluate", outputs / "l.tif", outputs / "truth.tif", "--json").stdout)
    assert tiff["vi_merge"] > 0 and tiff["vi_split"] > 0 and tiff["matches"][0]["fp"] > 0
    forms = [outputs / "l.n5", f"n5://{outputs}/l.n5", outputs / "pre", f"precomputed://{outputs}/pre", outputs / "l.ome.zarr"]
    for form in forms:
        done = client("evaluate", form, outputs / "truth.tif", "--json")
        assert done.returncode == 0, f"{form}: {done.stderr}"
        scores = json.loads(done.stdout)
        assert {k: v for k, v in scores.items() if k != "prediction"} == {k: v for k, v in tiff.items() if k != "prediction"}, form
    swapped = json.loads(client("evaluate", outputs / "truth.tif", f"n5://{outputs}/l.n5", "--json").stdout)
    assert swapped["matches"][0]["tp"] == tiff["matches"][0]["tp"] and swapped["vi_split"] == pytest.approx(tiff["vi_merge"])


def test_a_shape_mismatch_names_z_y_x(outputs: Path, tmp_path: Path) -> None:
    """A precomputed volume's shape is said as z, y, x, not in its x, y, z, channel storage order."""
    tifffile.imwrite(tmp_path / "narrow.tif", np.zeros((12, 40, 50), np.uint16))
    done = client("evaluate", f"precomputed://{outputs}/pre", tmp_path / "narrow.tif")
    assert done.returncode == 2 and done.stdout == ""
    assert re.fullmatch(r"error: precomputed://\S+/pre is z 12, y 40, x 56 but \S+narrow.tif is z 12, y 40, x 50; "
                        r"evaluate labels of the same volume\n", done.stderr), done.stderr


def test_an_intensity_image_is_scored_with_a_warning(pair: tuple[Path, Path], tmp_path: Path) -> None:
    """Issue 27 (8): a raw uint16 image given as the ground truth was scored without a word."""
    from scipy import ndimage

    field = ndimage.gaussian_filter(np.random.default_rng(0).random((4, 10, 12)), sigma=(1, 3, 3))
    tifffile.imwrite(tmp_path / "raw.tif", ((field - field.min()) / np.ptp(field) * 65535).astype(np.uint16))
    done = client("evaluate", pair[0], tmp_path / "raw.tif")
    assert done.returncode == 0, done.stderr
    assert done.stderr == (f"warning: the ground truth {tmp_path / 'raw.tif'} looks like an intensity image, not labels (most neighbouring "
                           "voxels differ); its scores mean nothing — give its label volume (e.g. segment's output)\n")
    assert client("evaluate", *pair).stderr == ""  # real labels, small instances: no warning


def test_a_float_image_is_refused_naming_the_argument(pair: tuple[Path, Path], tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "raw.tif", np.random.default_rng(0).random((4, 10, 12)).astype(np.float32))
    done = client("evaluate", tmp_path / "raw.tif", pair[1])
    assert done.returncode == 2
    assert done.stderr == (f"error: prediction: {tmp_path / 'raw.tif'} holds float32 values; a label volume holds integers "
                           "(0 = background): give labels (e.g. segment's output), not an intensity image\n")
