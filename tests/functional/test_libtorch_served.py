"""The ``skoots`` variant (platform pytorch_libtorch) served by Triton's PyTorch backend, built
here, in the wheel's tritonserver beside the Python-backend model: both answer with the labels
of the embedded TorchScript run, at batch 1 and 4; without the build, ``skoots serve`` names the
build step in one line and serves the rest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import E2E_EXPORT, served_inferences
from test_segment_e2e import blobs_volume  # tests/functional/test_segment_e2e.py

import skoots_client

SKOOTS = str(Path(sys.executable).parent / "skoots")


@pytest.fixture(scope="module")
def cpu_repository(tmp_path_factory: pytest.TempPathFactory, lively_checkpoint: Path) -> Path:
    """The lively model's libtorch and Python variants, KIND_CPU, up to 4 crops per request."""
    from skoots_export.contract.choices import Device
    from skoots_export.exporter import export_checkpoint

    repository = tmp_path_factory.mktemp("libtorch") / "model_repository"
    export_checkpoint(lively_checkpoint, repository=repository, backend="both", device=Device.CPU, max_batch_size=4, **E2E_EXPORT)
    return repository


@pytest.fixture(scope="module")
def both_served(cpu_repository: Path, pytorch_backend: Path):
    """The wheel's tritonserver with the PyTorch backend, serving ``skoots`` and ``skoots_python``."""
    from skoots_export.errors import ServerError
    from skoots_export.server import ServerConfig, TritonServer, find_binary

    try:
        binary = find_binary()
    except ServerError as e:
        pytest.skip(f"no tritonserver: {e}")
    config = ServerConfig(repository=cpu_repository, models=("skoots", "skoots_python"), pytorch_backend=pytorch_backend)
    server = TritonServer(config, binary).start(timeout=180)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory, cpu_repository: Path) -> tuple[Path, np.ndarray]:
    """A volume of many crops, and its labels from the embedded TorchScript run."""
    folder = tmp_path_factory.mktemp("volume")
    tifffile.imwrite(folder / "v.tif", blobs_volume())
    skoots_client.segment(folder / "v.tif", out=folder / "embedded.tif", repository=cpu_repository, runtime="torchscript", device="cpu", quiet=True)
    embedded = tifffile.imread(folder / "embedded.tif")
    assert embedded.max() > 5, "the lively model should find many instances"
    return folder / "v.tif", embedded


def test_the_libtorch_variant_is_ready_on_the_pytorch_backend(both_served) -> None:
    import tritonclient.grpc as grpcclient

    assert both_served.model_states() == {"skoots": "READY", "skoots_python": "READY"}
    client = grpcclient.InferenceServerClient(both_served.grpc_url)
    try:
        config = client.get_model_config("skoots", as_json=True)["config"]
    finally:
        client.close()
    assert config["platform"] == "pytorch_libtorch" and config["backend"] == "pytorch"
    assert config["input"][0]["data_type"] == "TYPE_FP16"
    assert {g["kind"] for g in config["instance_group"]} == {"KIND_CPU"}


@pytest.mark.parametrize("model,batch", [("skoots", 1), ("skoots", 4), ("skoots_python", 4)])
def test_served_labels_equal_the_embedded_run(both_served, volume, tmp_path: Path, model: str, batch: int) -> None:
    path, embedded = volume
    skoots_client.segment(path, out=tmp_path / "served.tif", url=[both_served.grpc_url], model=model, batch=batch, device="cpu", quiet=True)
    served = tifffile.imread(tmp_path / "served.tif")
    assert served.dtype == embedded.dtype and np.array_equal(served, embedded)


def test_without_model_a_cpu_server_gets_the_python_variant_and_the_summary_says_why(both_served, volume, tmp_path: Path) -> None:
    """Both variants run on the CPU here (KIND_CPU), where libtorch is the slowest (0.86 against
    2.08 crops/s measured on two cores): the client takes the Python-backend model and says so."""
    path, embedded = volume
    before = {m: served_inferences(both_served.grpc_url, m) for m in ("skoots", "skoots_python")}
    result = skoots_client.segment(path, out=tmp_path / "served.tif", url=[both_served.grpc_url], device="cpu", quiet=True)
    after = {m: served_inferences(both_served.grpc_url, m) for m in ("skoots", "skoots_python")}
    assert after["skoots_python"] > before["skoots_python"] and after["skoots"] == before["skoots"]
    assert np.array_equal(tifffile.imread(tmp_path / "served.tif"), embedded)
    assert (f"model skoots_python (python backend) on {both_served.grpc_url}; chosen over skoots (libtorch): the server runs "
            "its models on the CPU, where the Python-backend model (OpenVINO IR) and OpenVINO are faster") in result.summary.splitlines()


def test_a_named_model_is_used_and_the_summary_names_its_backend(both_served, volume, tmp_path: Path) -> None:
    path, _ = volume
    result = skoots_client.segment(path, out=tmp_path / "served.tif", url=[both_served.grpc_url], model="skoots", device="cpu", quiet=True)
    assert f"model skoots (libtorch backend) on {both_served.grpc_url}" in result.summary.splitlines()


def _serve_banner(repository: Path, cache: Path | None) -> tuple[list[str], list[str]]:
    """``skoots serve``'s banner and warnings, up to its ``grpc`` line; then it is stopped with SIGINT."""
    env = dict(os.environ)
    if cache is not None:
        env["XDG_CACHE_HOME"] = str(cache)
    banner = []
    with subprocess.Popen([SKOOTS, "serve", str(repository)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as process:
        try:
            deadline = time.monotonic() + 180
            assert process.stdout is not None and process.stderr is not None
            while time.monotonic() < deadline:
                line = process.stdout.readline()
                if not line and process.poll() is not None:
                    raise AssertionError(f"serve exited {process.returncode}: {process.stderr.read()}")
                banner.append(line.rstrip())
                if line.startswith("grpc "):
                    break
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=60) == 0, process.stderr.read()
            warnings = process.stderr.read().splitlines()
        finally:
            if process.poll() is None:
                process.kill()
    return banner, warnings


def test_skoots_serve_serves_every_variant_it_has_a_backend_for(cpu_repository: Path, pytorch_backend: Path) -> None:
    pytest.importorskip("pytriton", reason="the server extra is not installed")
    banner, warnings = _serve_banner(cpu_repository, cache=pytorch_backend.parent.parent.parent.parent)
    rows = {line.split()[0]: line.split()[1:] for line in banner if line.startswith("  ")}
    assert rows == {"skoots": ["READY", "pytorch"], "skoots_python": ["READY", "python"]}, banner
    assert warnings == []


def test_skoots_serve_without_the_build_names_it_in_one_line_and_serves_the_rest(cpu_repository: Path, tmp_path: Path) -> None:
    pytest.importorskip("pytriton", reason="the server extra is not installed")
    banner, warnings = _serve_banner(cpu_repository, cache=tmp_path / "empty-cache")
    assert warnings == ["warning: skoots (pytorch_libtorch) needs Triton's PyTorch backend: build it with skoots build-backend pytorch"]
    rows = {line.split()[0]: line.split()[1:] for line in banner if line.startswith("  ")}
    assert rows == {"skoots_python": ["READY", "python"]}, banner
