"""--tile end to end: the tile in the summary, reference mode on the model's crop, blockwise
with a tile bitwise equal to in memory with it, the refusals as one line, the work directory
keyed by the tile, and a served model's max_tile_voxels."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import serving
from test_segment_e2e import blobs_volume, run_client

import skoots_client
from skoots_client.errors import InputError, OutputError
from skoots_client.plan import ClusterSpec, InputSpec, ModelSpec, OutputSpec, ResumeSpec, prepare
from skoots_client.progress import Watch
from skoots_client.run import run_segment
from skoots_client.tiling import crop_grid
from skoots_client.workdir import WorkDir

SHAPE_ZXY = (12, 56, 56)  # e2e model crop 24x24x8, overlap 4x4x2: 18 crops


@pytest.fixture(scope="module")
def volume(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tile") / "v.tif"
    tifffile.imwrite(path, blobs_volume(SHAPE_ZXY, seed=3))
    return path


def test_auto_in_process_sees_the_whole_volume_and_says_so(e2e_repository: Path, volume: Path) -> None:
    options = dict(repository=e2e_repository, device="cpu", quiet=True)
    crop = skoots_client.segment(volume, tile="crop", **options)
    assert "tile z 8, y 24, x 24, 2.20 network input voxels per output voxel" in crop.summary  # the model's crop: 18 crops
    auto = skoots_client.segment(volume, tile="auto", **options)
    assert "1 crops" in auto.summary and "tile z 12, y 56, x 56, 1.00 network input voxels per output voxel" in auto.summary
    larger = skoots_client.segment(volume, tile=(100, 1000, 1000), **options)  # larger than the volume on every axis
    assert np.array_equal(larger.labels, auto.labels) and larger.labels.max() >= 2


def test_reference_mode_tiles_with_the_models_crop(e2e_repository: Path, volume: Path) -> None:
    options = dict(repository=e2e_repository, device="cpu", quiet=True, reference_borders=True)
    crop, auto = skoots_client.segment(volume, tile="crop", **options), skoots_client.segment(volume, tile="auto", **options)
    assert np.array_equal(crop.labels, auto.labels) and "tile z 8, y 24, x 24" in auto.summary


def test_a_tile_with_reference_borders_is_one_line(e2e_repository: Path, volume: Path, tmp_path: Path) -> None:
    done = run_client("segment", str(volume), "-r", str(e2e_repository), "--out", str(tmp_path / "l.tif"),
                      "--reference-borders", "--tile", "56,56,12")
    assert done.returncode != 0 and not (tmp_path / "l.tif").exists()
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert "tile z 12, y 56, x 56 with --reference-borders: reference mode tiles with the model's crop" in done.stderr
    with pytest.raises(InputError, match=r"with reference_borders=True: .* drop tile="):
        skoots_client.segment(volume, repository=e2e_repository, reference_borders=True, tile=(12, 56, 56), quiet=True)


def test_a_tile_over_the_memory_budget_is_one_line(e2e_repository: Path, volume: Path) -> None:
    """In-process, the activation estimate of one crop against the memory left after the
    volume's post-processing: with 1 GiB available, a whole-volume tile of 56x56x12 fits, and the
    refusal names the estimate, the budget and the fix."""
    def run(tile, available: int):
        return run_segment(InputSpec(volume), OutputSpec(), ModelSpec(repository=e2e_repository, tile=tile), ResumeSpec(),
                           ClusterSpec(memory_available=available), watch=Watch(quiet=True))

    assert "tile z 12, y 56, x 56" in run((56, 56, 12), 1 << 30).summary
    with pytest.raises(InputError) as raised:
        run((56, 56, 12), 150 << 20)
    message = str(raised.value)
    assert re.fullmatch(r"tile z 12, y 56, x 56 needs ~134 MiB to infer one crop in this process \(this network's activation "
                        r"estimate\), over the 11\d MiB budget \(three quarters of the memory available, less what post-processing the volume "
                        r"needs\): pass a smaller --tile, or --tile auto \(the largest that fits\)", message), message
    assert "tile z 8, y 24, x 24" in run("auto", 150 << 20).summary  # auto: the crop when nothing larger fits


def test_blockwise_with_a_tile_equals_in_memory_with_it(e2e_repository: Path, volume: Path, tmp_path: Path) -> None:
    options = dict(repository=e2e_repository, device="cpu", quiet=True, tile=(12, 32, 32))  # 2 x 2 x 1 tiles, none snapped
    skoots_client.segment(volume, out=tmp_path / "m.tif", **options)
    blockwise = skoots_client.segment(volume, out=tmp_path / "b.tif", blockwise=True, block=(12, 24, 24), workers=2, **options)
    assert "blockwise: 4 blocks" in blockwise.summary and "tile z 12, y 32, x 32" in blockwise.summary
    a, b = tifffile.imread(tmp_path / "m.tif"), tifffile.imread(tmp_path / "b.tif")
    assert a.max() >= 2 and a.dtype == b.dtype and np.array_equal(a, b)


def test_auto_on_a_volume_smaller_than_the_crop_runs(e2e_repository: Path, tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "small.tif", blobs_volume((3, 10, 30)))
    done = run_client("segment", str(tmp_path / "small.tif"), "-r", str(e2e_repository), "--out", str(tmp_path / "s.tif"), "--tile", "auto")
    assert done.returncode == 0, done.stderr
    assert tifffile.imread(tmp_path / "s.tif").shape == (3, 10, 30) and "tile z 8, y 10, x 30" in done.stdout


def test_a_work_directory_of_another_tile_is_not_reused(e2e_repository: Path, volume: Path, tmp_path: Path) -> None:
    def plan(tile):
        return prepare(InputSpec(volume), OutputSpec(out=tmp_path / "l.tif"), ModelSpec(repository=e2e_repository, tile=tile),
                       ResumeSpec(resume=True), ClusterSpec(), Watch(quiet=True))

    crop, auto = plan("crop"), plan("auto")
    assert crop.tile == (24, 24, 8) and auto.tile == (56, 56, 12) and auto.model_crop == (24, 24, 8)
    work = WorkDir(tmp_path / "w", crop.fingerprint())
    list(work.restore(crop_grid(crop.volume.shape, crop.tile, crop.parameters.overlap)))  # made, as a run makes it
    work.close()
    with pytest.raises(OutputError, match="was made for another run"):
        WorkDir(tmp_path / "w", auto.fingerprint())
    assert plan((24, 24, 8)).fingerprint() == crop.fingerprint()  # the crop asked by size (runtime X, Y, Z) is the same run


@pytest.fixture(scope="module")
def capped_server(tmp_path_factory, lively_checkpoint: Path):
    """The lively model exported with max_tile_voxels 9000 (a 24x24x8 crop is 4608), served."""
    from conftest import E2E_EXPORT

    from skoots_export.contract.choices import Device
    from skoots_export.exporter import export_checkpoint

    repository = tmp_path_factory.mktemp("capped") / "model_repository"
    export_checkpoint(lively_checkpoint, repository=repository, backend="python", device=Device.CPU, max_batch_size=4,
                      max_tile_voxels=9000, **E2E_EXPORT)
    yield from serving(repository)


@pytest.mark.slow
def test_a_served_models_limit_bounds_the_tile(capped_server, volume: Path, tmp_path: Path) -> None:
    url = capped_server.grpc_url
    refused = run_client("segment", str(volume), "--url", url, "--out", str(tmp_path / "r.tif"), "--tile", "56,56,12")
    assert refused.returncode != 0 and not (tmp_path / "r.tif").exists() and refused.stderr.strip().count("\n") == 0
    assert ("tile z 12, y 56, x 56 is 37,632 voxels per crop, over the 9,000 that model skoots allows (max_tile_voxels in its "
            "config, set by skoots export --max-tile-voxels): pass a smaller --tile") in refused.stderr
    auto = run_client("segment", str(volume), "--url", url, "--out", str(tmp_path / "a.tif"), "--tile", "auto")
    assert auto.returncode == 0, auto.stderr
    size = re.search(r"tile z (\d+), y (\d+), x (\d+)", auto.stdout)
    assert size is not None and 4608 < np.prod([int(v) for v in size.groups()]) <= 9000
