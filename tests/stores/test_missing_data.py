"""Issue 26: missing data and destinations, never a silent wrong answer.

A chunk a store does not hold (a file removed, an HTTP server that starts answering 404) fails
the run in one line naming the chunk and ``--fill-missing``; with it the run completes and says
how many chunks it read as zeros. A destination that cannot be written (a bucket that does not
exist, a read-only folder) is refused before inference in one line, with a bounded number of
requests; labels that cannot be written after inference are kept beside the destination, never
in the input's folder. Real files, a real loopback HTTP server and moto's S3 server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

import skoots_client
from skoots_client.errors import InputError, OutputError
from skoots_client.stores import parse
from skoots_client.volume_read import read_volume

from .stores_support import (
    S3_ENV,
    counting_proxy,
    failing_http_server,
    http_server,
    moto_server,
    one_line,
    read_only_folder,
    write_zarr3_sharded,
)

CLIENT = str(Path(sys.executable).parent / "skoots-client")


def _copy_without_a_chunk(stores_folder: Path, tmp_path: Path, kind: str) -> tuple[Path, int]:
    """A copy of one of the stores' volumes with one chunk file (a shard: 4 chunks) removed;
    the path to segment and the number of chunks missing."""
    import zarr

    zyx = tifffile.imread(stores_folder / "v.tif")
    if kind == "zarr2 read by zarr-python":  # a filter TensorStore lacks
        import numcodecs

        zarr.create_array(str(tmp_path / "delta.zarr"), data=zyx, chunks=(4, 16, 16), zarr_format=2, filters=[numcodecs.Delta(dtype="u2")])
        folder, path, missing = tmp_path / "delta.zarr", tmp_path / "delta.zarr", 1
    elif kind == "zarr3":
        zarr.create_array(str(tmp_path / "v3.zarr"), data=zyx, chunks=(4, 16, 16), zarr_format=3)
        folder, path, missing = tmp_path / "v3.zarr", tmp_path / "v3.zarr", 1
    elif kind == "zarr3 sharded":
        write_zarr3_sharded(tmp_path / "sharded.zarr", zyx)
        folder, path, missing = tmp_path / "sharded.zarr", tmp_path / "sharded.zarr", 4  # shard c/1/0/0: z 8-12, 2 x 2 chunks of 16
    else:
        name = {"precomputed": "pre", "n5": "v.n5", "ome-zarr": "img.ome.zarr"}[kind]
        shutil.copytree(stores_folder / name, tmp_path / name)
        folder, missing = tmp_path / name, 1
        path = folder / "s0" if kind == "n5" else folder
    chunks = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith((".json", "info", ".zarray", ".zattrs", ".zgroup")))
    chunks[len(chunks) // 2].unlink()
    return path, missing


@pytest.mark.parametrize("kind", ["precomputed", "n5", "zarr3", "zarr3 sharded", "ome-zarr", "zarr2 read by zarr-python"])
def test_a_removed_chunk_is_an_error_and_fill_missing_reads_it_as_zeros_and_says_so(
    kind: str, stores_folder: Path, e2e_repository: Path, tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    path, missing = _copy_without_a_chunk(stores_folder, tmp_path / "in", kind)
    options = dict(repository=e2e_repository, device="cpu", quiet=True)
    with pytest.raises(InputError, match=r" is missing — the volume is incomplete .*; restore it, or pass fill_missing=True to read missing chunks as zeros$"):
        skoots_client.segment(path, out=tmp_path / "labels.tif", **options)
    assert not (tmp_path / "labels.tif").exists()
    warnings: list[str] = []
    skoots_client.segment(path, out=tmp_path / "labels.tif", fill_missing=True, warn=warnings.append, **options)
    filled = [w for w in warnings if "read as zeros" in w]
    assert filled and filled[0].startswith(f"{missing} missing chunk{'s' if missing > 1 else ''} of {path} "), warnings
    zeros = np.count_nonzero(np.asarray(read_volume(path, fill_missing=True).data) == 0)
    assert zeros >= missing * 4 * 16 * 16 > np.count_nonzero(tifffile.imread(stores_folder / "v.tif") == 0)


def test_on_the_command_line_a_missing_chunk_is_one_error_line_and_exit_2(stores_folder: Path, e2e_repository: Path, tmp_path: Path) -> None:
    path, _ = _copy_without_a_chunk(stores_folder, tmp_path, "precomputed")
    command = [CLIENT, "segment", str(path), "--out", str(tmp_path / "l.tif"), "-r", str(e2e_repository), "--device", "cpu", "--quiet"]
    failed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert failed.returncode == 2 and one_line(failed.stderr).startswith(f"error: {path}: chunk "), failed.stderr
    assert "--fill-missing" in failed.stderr and not (tmp_path / "l.tif").exists()
    filled = subprocess.run([*command, "--fill-missing"], capture_output=True, text=True, timeout=300)
    assert filled.returncode == 0, filled.stderr
    assert f"warning: 1 missing chunk of {path} was read as zeros (--fill-missing)" in filled.stderr


# Blockwise (~18 s: a Dask cluster against a flaky HTTP server) in the slow run; the reads that
# must fail are the same code in memory.
@pytest.mark.parametrize("blockwise", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["in memory", "blockwise"])
def test_a_server_that_starts_answering_404_mid_run_fails_the_run_unless_fill_missing(
    blockwise: bool, stores_folder: Path, e2e_repository: Path, tmp_path: Path
) -> None:
    out = tmp_path / ("l.zarr" if blockwise else "l.tif")
    options = ["-r", str(e2e_repository), "--device", "cpu", "--quiet", *(["--blockwise", "--workers", "1"] if blockwise else [])]
    with failing_http_server(stores_folder, healthy=12) as server:  # 48 chunks: the 13th on answers 404
        failed = subprocess.run([CLIENT, "segment", f"precomputed://{server.url}/pre", "--out", str(out), *options],
                                capture_output=True, text=True, timeout=300)
    assert failed.returncode == 2, failed.stderr
    line = one_line(failed.stderr)
    assert line.startswith(f"error: precomputed://{server.url}/pre: chunk ") and "is missing" in line and "--fill-missing" in line, line
    assert not out.exists()
    with failing_http_server(stores_folder, healthy=12) as server:
        filled = subprocess.run([CLIENT, "segment", f"precomputed://{server.url}/pre", "--out", str(out), "--fill-missing", *options],
                                capture_output=True, text=True, timeout=300)
    assert filled.returncode == 0, filled.stderr
    counts = [int(w.split("warning: ")[1].split(" ")[0]) for w in filled.stderr.splitlines() if "read as zeros (--fill-missing)" in w]
    assert len(counts) == 1 and 30 <= counts[0] <= 48, filled.stderr  # the chunks served after the first 12 (blocks may overlap)
    assert out.exists()


def test_a_chunk_read_that_keeps_failing_is_an_error_even_with_fill_missing(stores_folder: Path) -> None:
    with failing_http_server(stores_folder, healthy=0, status=503) as server:
        volume = read_volume(parse(f"precomputed://{server.url}/pre"), fill_missing=True)
        with pytest.raises(InputError, match=rf"^precomputed://{server.url}/pre: cannot read data \(.*503.*\); the store kept failing after retries"):
            np.asarray(volume.data)
        assert 5 <= server.requests <= 5 * 48  # each chunk retried a bounded number of times, then the error


@pytest.fixture
def s3_env() -> None:
    saved = {k: os.environ.get(k) for k in S3_ENV}
    os.environ.update(S3_ENV)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_a_bucket_that_does_not_exist_is_one_line_before_inference_in_a_few_requests(
    s3_env: None, stores_folder: Path, e2e_repository: Path, tmp_path: Path
) -> None:
    stages: list[str] = []
    with moto_server() as moto, counting_proxy(moto) as proxy:
        with pytest.raises(OutputError, match=r"^out='precomputed://s3://nobucket/labels': bucket nobucket does not exist; create it first"):
            skoots_client.segment(stores_folder / "v.tif", out="precomputed://s3://nobucket/labels", s3_endpoint=proxy.url,
                                  repository=e2e_repository, device="cpu", quiet=True, progress=lambda stage, *_: stages.append(stage))
        assert stages == [] and 1 <= proxy.requests <= 10, (stages, proxy.requests)  # refused before any crop, no retry loop
        proxy.requests = 0
        result = subprocess.run([CLIENT, "segment", str(stores_folder / "v.tif"), "--out", "n5://s3://nobucket/labels",
                                 "--s3-endpoint", proxy.url, "-r", str(e2e_repository), "--device", "cpu", "--blockwise"],
                                capture_output=True, text=True, timeout=120, env={**os.environ, **S3_ENV})
        assert result.returncode == 2 and one_line(result.stderr).startswith("error: --out n5://s3://nobucket/labels: bucket nobucket does not exist")
        assert 1 <= proxy.requests <= 10, proxy.requests
        with pytest.raises(InputError, match=r"^s3://nobucket/raw: bucket nobucket does not exist; check the name"):
            skoots_client.segment("s3://nobucket/raw", out=tmp_path / "l.tif", s3_endpoint=proxy.url, repository=e2e_repository)
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_destination_is_refused_before_inference_and_nothing_is_written(
    stores_folder: Path, e2e_repository: Path, tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    shutil.copytree(stores_folder / "pre", inputs / "pre")
    before = sorted(inputs.rglob("*"))
    with read_only_folder(tmp_path) as folder:
        for out in [folder / "l.tif", folder / "l.ome.zarr", f"precomputed://{folder}/labels", f"n5://{folder}/labels"]:
            stages: list[str] = []
            with pytest.raises(OutputError, match=rf"^out={re.escape(repr(str(out)))}: folder {folder} is not writable"):
                skoots_client.segment(inputs / "pre", out=out, repository=e2e_repository, device="cpu", quiet=True,
                                      progress=lambda stage, *_, stages=stages: stages.append(stage))
            assert stages == [], out
        result = subprocess.run([CLIENT, "segment", str(inputs / "pre"), "--out", f"precomputed://{folder}/labels",
                                 "-r", str(e2e_repository), "--device", "cpu"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and one_line(result.stderr).startswith(f"error: --out precomputed://{folder}/labels: folder")
    assert sorted(inputs.rglob("*")) == before


def test_labels_that_cannot_be_written_after_inference_are_kept_beside_the_destination_never_in_the_inputs_folder(
    stores_folder: Path, e2e_repository: Path, tmp_path: Path
) -> None:
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    shutil.copytree(stores_folder / "pre", inputs / "pre")
    outputs.mkdir()
    before = sorted(inputs.rglob("*"))

    def destination_goes_away(stage: str, done: int, total: int) -> None:
        shutil.rmtree(outputs, ignore_errors=True)  # the destination's folder vanishes during inference

    with pytest.raises(OutputError, match=r" — the labels are kept in (\S+) ") as failed:
        skoots_client.segment(inputs / "pre", out=f"precomputed://{outputs}/labels", repository=e2e_repository, device="cpu",
                              quiet=True, progress=destination_goes_away)
    kept = Path(str(failed.value).split(" — the labels are kept in ")[1].split(" ")[0])
    assert kept.is_dir() and inputs not in kept.parents, kept
    assert sorted(inputs.rglob("*")) == before
    shutil.rmtree(kept, ignore_errors=True)


def test_a_server_without_range_and_a_precomputed_folder_without_info_are_one_clear_line(stores_folder: Path, tmp_path: Path) -> None:
    write_zarr3_sharded(tmp_path / "sharded.zarr", tifffile.imread(stores_folder / "v.tif"))
    with http_server(tmp_path) as url:  # python -m http.server answers every Range request with the whole file
        volume = read_volume(parse(f"{url}/sharded.zarr"))
        with pytest.raises(InputError, match=r"the HTTP server ignores Range requests, which sharded Zarr v3 needs; serve the volume with a server that supports them"):
            np.asarray(volume.data)
    shutil.copytree(stores_folder / "pre", tmp_path / "pre")
    (tmp_path / "pre" / "info").unlink()
    with pytest.raises(InputError, match=rf"^{tmp_path}/pre looks like a Neuroglancer precomputed volume \(scale 8_4_40\) without its info file"):
        read_volume(tmp_path / "pre")


@pytest.mark.parametrize("blockwise", [False, True], ids=["in memory", "blockwise"])
def test_a_roi_counts_the_missing_chunks_it_read_as_zeros(blockwise: bool, stores_folder: Path, e2e_repository: Path, tmp_path: Path) -> None:
    """The count reaches through the --roi cutout, and a chunk read by several blocks counts once."""
    (tmp_path / "in").mkdir()
    path, missing = _copy_without_a_chunk(stores_folder, tmp_path / "in", "precomputed")
    z, y, x = tifffile.imread(stores_folder / "v.tif").shape
    warnings: list[str] = []
    options = dict(blockwise=True, block=(8, 24, 24), workers=1) if blockwise else {}
    skoots_client.segment(path, out=tmp_path / "labels.zarr", roi=f"0:{z},0:{y},0:{x - 1}", fill_missing=True, repository=e2e_repository,
                          device="cpu", quiet=True, warn=warnings.append, **options)
    assert [w for w in warnings if "read as zeros" in w] == [
        f"{missing} missing chunk of {path} was read as zeros (fill_missing=True): the labels there are background"], warnings
