"""The Python API (``import skoots_client as skoots``): its examples run, its labels equal the
command line's bitwise (in-process and through a real tritonserver), it cancels cleanly."""

from __future__ import annotations

import doctest
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile

import skoots_client as skoots
from skoots_client import api
from skoots_client.errors import InputError

CLIENT = str(Path(sys.executable).parent / "skoots-client")


def blobs(shape_zyx=(20, 60, 52), seed=0) -> np.ndarray:
    """Bright smooth blobs on a dim background, uint16 ``[Z, Y, X]``: the lively model finds many instances."""
    from scipy import ndimage

    field = ndimage.gaussian_filter(np.random.default_rng(seed).random(shape_zyx), sigma=(1, 3, 3))
    return ((field - field.min()) / (field.max() - field.min()) * 65535).astype(np.uint16)


@pytest.fixture(scope="module")
def volume_tif(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("api") / "blobs.tif"
    tifffile.imwrite(path, blobs())
    return path


def run_client(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLIENT, *args], capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})


def test_public_names() -> None:
    assert set(skoots.__all__) >= {"segment", "measure", "Segmentation", "ClientError", "SkootsError", "Cancelled"}
    assert all(hasattr(skoots, name) for name in skoots.__all__)


def test_the_docstring_examples_run(e2e_repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The API's Examples as doctests, beside a ``model_repository`` (the tiny test model)."""
    (tmp_path / "model_repository").symlink_to(e2e_repository)
    monkeypatch.chdir(tmp_path)
    results = doctest.testmod(api, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert results.attempted >= 8 and results.failed == 0


def test_in_process_labels_equal_the_command_lines_bitwise(e2e_repository: Path, volume_tif: Path, tmp_path: Path) -> None:
    done = run_client("segment", str(volume_tif), "-r", str(e2e_repository), "--out", str(tmp_path / "cli.tif"), "--device", "cpu")
    assert done.returncode == 0, done.stderr
    expected = tifffile.imread(tmp_path / "cli.tif")
    from_array = skoots.segment(tifffile.imread(volume_tif), model=str(e2e_repository), device="cpu", quiet=True)
    from_path = skoots.segment(volume_tif, repository=e2e_repository, device="cpu", quiet=True)
    assert expected.max() > 5, "the lively model finds many instances"
    for result in (from_array, from_path):
        assert result.labels.dtype == np.uint32 and result.labels.shape == expected.shape == (20, 60, 52)
        assert np.array_equal(result.labels, expected) and np.array_equal(np.asarray(result), expected)
    assert from_path.summary.splitlines()[0] == f"{volume_tif} → labels in memory"
    assert len(from_array.table["label"]) == expected.max() == from_array.instances


def test_a_dask_array_segments_like_numpy(e2e_repository: Path, tmp_path: Path) -> None:
    import dask.array as da

    volume = blobs((12, 40, 36), seed=2)
    expected = skoots.segment(volume, model=str(e2e_repository), device="cpu", quiet=True).labels
    lazy = skoots.segment(da.from_array(volume, chunks=(4, 20, 20)), model=str(e2e_repository), device="cpu", quiet=True)
    assert np.array_equal(lazy.labels, expected)


def test_served_labels_equal_the_command_lines_bitwise(triton_server, volume_tif: Path, tmp_path: Path) -> None:
    url = triton_server.grpc_url
    done = run_client("segment", str(volume_tif), "--url", url, "--out", str(tmp_path / "cli.tif"), "--device", "cpu")
    assert done.returncode == 0, done.stderr
    result = skoots.segment(tifffile.imread(volume_tif), url=url, device="cpu", quiet=True)
    assert np.array_equal(result.labels, tifffile.imread(tmp_path / "cli.tif"))


def test_measure_equals_the_command_lines_table(e2e_repository: Path, volume_tif: Path, tmp_path: Path) -> None:
    labels = skoots.segment(volume_tif, repository=e2e_repository, device="cpu", quiet=True, out=tmp_path / "l.tif").labels
    done = run_client("measure", str(tmp_path / "l.tif"), "--raw", str(volume_tif), "--out", str(tmp_path / "t.csv"),
                      "--voxel-size", "z=0.05,y=0.012,x=0.012")
    assert done.returncode == 0, done.stderr
    table = skoots.measure(labels, raw=tifffile.imread(volume_tif), voxel_size=(0.05, 0.012, 0.012), out=tmp_path / "api.csv")
    assert (tmp_path / "api.csv").read_text() == (tmp_path / "t.csv").read_text()
    assert table.voxel_size.zyx == (0.05, 0.012, 0.012) and len(table["label"]) == labels.max()


@pytest.mark.parametrize("how", ["event", "callback"])
def test_cancel_stops_within_one_batch_and_leaves_nothing(e2e_repository: Path, volume_tif: Path, tmp_path: Path, how: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    calls: list[tuple[str, int, int]] = []
    cancel = threading.Event()

    def progress(stage: str, done: int, total: int) -> bool:
        calls.append((stage, done, total))
        if done > 0:  # the first batch is in: stop
            if how == "event":
                cancel.set()
            return how != "callback"
        return True

    with pytest.raises(skoots.Cancelled, match="cancelled"):
        skoots.segment(volume_tif, repository=e2e_repository, device="cpu", quiet=True, batch=2, out=out / "l.tif",
                       table=out / "t.csv", progress=progress, cancel=cancel)
    assert [c[1] for c in calls] == [0, 2] and calls[0][0] == "infer" and calls[0][2] > 2
    assert list(out.iterdir()) == []


def test_array_input_mistakes_are_named(e2e_repository: Path, tmp_path: Path) -> None:
    volume = blobs((12, 40, 36))
    common = dict(model=str(e2e_repository), quiet=True)
    with pytest.raises(InputError, match=r"^blockwise, resume and work_dir read the volume again from its file: give the volume as a path$"):
        skoots.segment(volume, resume=True, out=tmp_path / "l.tif", **common)
    with pytest.raises(InputError, match=r"^blockwise writes the labels block by block and never holds them: give out= or labels_into=$"):
        skoots.segment(tmp_path / "v.tif", blockwise=True, **common)
    with pytest.raises(InputError, match=r"^level= picks a resolution level of an OME-Zarr file"):
        skoots.segment(volume, level=1, **common)
    with pytest.raises(InputError, match=r"^cannot segment a list: give a NumPy, Dask or Zarr array, or a file path$"):
        skoots.segment([[1, 2]], **common)
    with pytest.raises(InputError, match=r"^crop=\(24, 24\) needs three values \(z, y, x\)$"):
        skoots.segment(volume, crop=(24, 24), **common)
    with pytest.raises(InputError, match=r"^ngff_version='0\.6': use 0\.4 \(Zarr v2\) or 0\.5 \(Zarr v3\)$"):
        skoots.segment(volume, ngff_version="0.6", **common)
    with pytest.raises(InputError, match=r"^labels must be a 3-D array \[Z, Y, X\] of integers, or the path of a label file$"):
        skoots.measure(np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match=r"^labels hold float32 values; labels are integers \(0 is background\)$"):
        skoots.measure(np.zeros((4, 4, 4), np.float32))


def test_tuples_follow_the_arrays_order() -> None:
    assert api.triple("--crop", (8, 24, 20)) == (24, 20, 8) == api.triple("--crop", "x=20,y=24,z=8")
    assert api.voxel_size_value((2.0, 0.5, 0.25), "nm").zyx == (2.0, 0.5, 0.25)
