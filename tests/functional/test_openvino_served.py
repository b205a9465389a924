"""The Python-backend model on a real tritonserver runs the OpenVINO IR on its CPU instance, and
its labels are those of the TorchScript model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from test_segment_e2e import blobs_volume  # tests/functional/test_segment_e2e.py

import skoots_client
from skoots_client.evaluate import evaluate


def test_the_python_backend_model_runs_openvino_with_torchscripts_labels(triton_server, e2e_repository: Path, tmp_path: Path) -> None:
    assert any("skoots (instance" in line and "runs model.xml with OpenVINO FP32 on CPU" in line for line in triton_server.logs)
    tifffile.imwrite(tmp_path / "v.tif", blobs_volume())
    common = dict(device="cpu", quiet=True)
    skoots_client.segment(tmp_path / "v.tif", out=tmp_path / "served.tif", url=[triton_server.grpc_url], **common)
    text = skoots_client.segment(tmp_path / "v.tif", out=tmp_path / "ts.tif", repository=e2e_repository, runtime="torchscript", **common).summary
    assert "inference in-process: TorchScript FP32 on CPU" in text
    served, torchscript = tifffile.imread(tmp_path / "served.tif"), tifffile.imread(tmp_path / "ts.tif")
    assert torchscript.max() > 5, "the lively model should find many instances"
    assert np.array_equal(served, torchscript) or evaluate(served, torchscript).adjusted_rand_index >= 0.9999


def test_skoots_serve_of_a_default_export_serves_the_openvino_model(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """A plain ``skoots export`` (device gpu): the Python-backend model is KIND_AUTO, so the wheel's
    CPU-only tritonserver loads it, as ``skoots serve`` picks it, and its CPU instance runs the IR."""
    import pytest

    from skoots_export.errors import ServerError
    from skoots_export.exporter import export_checkpoint
    from skoots_export.model_backends import servable_models
    from skoots_export.server import ServerConfig, TritonServer, find_binary

    repository = tmp_path / "model_repository"
    export_checkpoint(tiny_checkpoint, repository=repository, crop=(24, 24, 8), overlap=(4, 4, 2))
    names, _ = servable_models(repository, frozenset({"python"}))
    models = tuple(names)
    assert models == ("skoots_python",)
    try:
        binary = find_binary()
    except ServerError as e:
        pytest.skip(f"no tritonserver: {e}")
    server = TritonServer(ServerConfig(repository=repository, models=models), binary).start(timeout=180)
    try:
        assert any("skoots_python (instance" in line and "OpenVINO FP32 on CPU" in line for line in server.logs)
    finally:
        server.stop()
