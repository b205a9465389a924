"""Whole volumes through a real tritonserver on 127.0.0.1 and through the embedded model."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr
from conftest import start_server
from reference_pipeline import reference_segment, same_partition

import skoots_client
from skoots_client.in_memory import segment_volume
from skoots_client.model_source import EmbeddedModel, TritonEndpoint
from skoots_client.volume_read import read_volume

CLIENT = str(Path(sys.executable).parent / "skoots-client")


def blobs_volume(shape_zxy=(20, 60, 52), seed=0, dtype=np.uint16) -> np.ndarray:
    """Bright smooth blobs on a dim background, [Z, X, Y]."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random(shape_zxy), sigma=(1, 3, 3))
    field = (field - field.min()) / (field.max() - field.min())
    top = np.iinfo(dtype).max
    return (field * top).astype(dtype)


def volume_and_labels(folder: Path, repository: Path, shape_zxy: tuple[int, int, int], seed: int) -> tuple[Path, np.ndarray]:
    """A blobs volume written to ``folder/v.tif`` and the labels of an undisturbed in-memory run
    of it, which a run disturbed by a fault must equal (the fault tests' ``volume`` fixture)."""
    tifffile.imwrite(folder / "v.tif", blobs_volume(shape_zxy, seed=seed))
    skoots_client.segment(folder / "v.tif", out=folder / "expected.tif", repository=repository, device="cpu", quiet=True)
    return folder / "v.tif", tifffile.imread(folder / "expected.tif")


@pytest.fixture(scope="module")
def volume_tif(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vol") / "blobs.tif"
    tifffile.imwrite(path, blobs_volume())
    return path


def run_client(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([CLIENT, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, "COLUMNS": "200"})


def test_triton_path_equals_embedded_path_bitwise(triton_server, e2e_repository: Path, volume_tif: Path, tmp_path: Path) -> None:
    served = run_client("segment", str(volume_tif), "--url", triton_server.grpc_url, "--out", str(tmp_path / "t.tif"), "--device", "cpu",
                        "--tile", "crop")  # the same tiles on both paths (auto sizes them to each one's budget)
    assert served.returncode == 0, served.stderr
    embedded = run_client("segment", str(volume_tif), "-r", str(e2e_repository), "--out", str(tmp_path / "e.tif"), "--device", "cpu",
                          "--tile", "crop")
    assert embedded.returncode == 0, embedded.stderr
    a, b = tifffile.imread(tmp_path / "t.tif"), tifffile.imread(tmp_path / "e.tif")
    assert a.shape == (20, 60, 52)
    assert a.dtype == b.dtype and np.array_equal(a, b)
    assert a.max() > 5, "the lively model should find many instances"
    assert "instances" in served.stdout and "Mvoxels/s" in served.stdout


def test_labels_equal_a_literal_transcription_of_the_reference(e2e_repository: Path, volume_tif: Path, tmp_path: Path) -> None:
    model = torch.jit.load(str(e2e_repository / "skoots" / "1" / "model.pt"))

    def infer(batch: np.ndarray):
        with torch.inference_mode():
            v, s, _ = model(torch.from_numpy(batch))
        return v.numpy(), s.numpy()

    volume = tifffile.imread(volume_tif).transpose(1, 2, 0)
    expected = reference_segment(volume, infer, (24, 24, 8), (4, 4, 2), (4.0, 4.0, 2.0), half_widths=(1, 1, 0))
    skoots_client.segment(volume_tif, out=tmp_path / "l.tif", repository=e2e_repository, device="cpu", batch=1, quiet=True,
                          tile="crop")  # the transcription tiles with the model's crop
    got = tifffile.imread(tmp_path / "l.tif").transpose(1, 2, 0)
    assert same_partition(got, expected)
    assert len(np.unique(got)) - 1 == got.max()


class ShuffledEmbedded:
    """The real embedded model behind random delays, so answers come back out of order."""

    def __init__(self, inner: EmbeddedModel, seed: int) -> None:
        self.inner, self.name, self.concurrency = inner, "shuffled", 4
        self.rng = random.Random(seed)

    def infer(self, batch, probability=False):
        time.sleep(self.rng.random() * 0.05)
        return self.inner.infer(batch, probability)


def test_shuffled_answer_order_gives_the_same_labels(e2e_repository: Path, volume_tif: Path) -> None:
    embedded = EmbeddedModel(e2e_repository, "skoots")
    volume = read_volume(volume_tif)
    ordered = segment_volume(volume, embedded.info.parameters, [embedded], batch_size=1)
    for seed in (1, 2):
        shuffled = segment_volume(volume, embedded.info.parameters, [ShuffledEmbedded(embedded, seed)], batch_size=1)
        assert np.array_equal(ordered.labels, shuffled.labels)


def test_two_servers_give_the_same_labels(triton_server, e2e_repository: Path, volume_tif: Path, tmp_path: Path) -> None:
    second = start_server(e2e_repository)
    try:
        both = run_client(
            "segment", str(volume_tif), "--url", triton_server.grpc_url, "--url", second.grpc_url,
            "--out", str(tmp_path / "two.tif"), "--batch", "1", "--device", "cpu",
        )
        assert both.returncode == 0, both.stderr
        one = run_client("segment", str(volume_tif), "--url", second.grpc_url, "--out", str(tmp_path / "one.tif"), "--batch", "1", "--device", "cpu")
        assert one.returncode == 0, one.stderr
    finally:
        second.stop()
    assert np.array_equal(tifffile.imread(tmp_path / "two.tif"), tifffile.imread(tmp_path / "one.tif"))


def test_zarr_in_zarr_out_round_trip(e2e_repository: Path, volume_tif: Path, tmp_path: Path) -> None:
    data = tifffile.imread(volume_tif)
    zarr.create_array(str(tmp_path / "in.zarr"), data=data, chunks=(8, 32, 32))
    result = run_client("segment", str(tmp_path / "in.zarr"), "-r", str(e2e_repository), "--out", str(tmp_path / "out.ome.zarr"), "--device", "cpu", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    tif = run_client("segment", str(volume_tif), "-r", str(e2e_repository), "--out", str(tmp_path / "out.tif"), "--device", "cpu", "-q")
    assert tif.returncode == 0, tif.stderr
    labels = zarr.open_group(str(tmp_path / "out.ome.zarr"), mode="r")["0"][...]
    assert np.array_equal(labels, tifffile.imread(tmp_path / "out.tif"))


def test_volume_smaller_than_a_crop(e2e_repository: Path, tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "small.tif", blobs_volume((3, 10, 30)))
    result = run_client("segment", str(tmp_path / "small.tif"), "-r", str(e2e_repository), "--out", str(tmp_path / "s.tif"), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert tifffile.imread(tmp_path / "s.tif").shape == (3, 10, 30)


def test_save_intermediates(e2e_repository: Path, volume_tif: Path, tmp_path: Path) -> None:
    result = run_client("segment", str(volume_tif), "-r", str(e2e_repository), "--out", str(tmp_path / "o.tif"), "--save-intermediates", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    group = zarr.open_group(str(tmp_path / "o_intermediates.zarr"), mode="r")
    assert group["skeleton"].shape == (20, 60, 52) and group["vectors"].shape == (3, 20, 60, 52)
    assert group["probability"].dtype == np.float16


# User errors: tests/cli/test_segment_cli.py (the bad-input catalogue).


def test_triton_endpoint_reads_the_models_constants(triton_server) -> None:
    endpoint = TritonEndpoint(triton_server.grpc_url, "skoots")
    try:
        assert endpoint.info.parameters.crop == (24, 24, 8)
        assert endpoint.info.max_batch_size == 4
    finally:
        endpoint.close()
