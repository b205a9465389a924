"""The Python-backend model on a real tritonserver runs the OpenVINO IR on its CPU instance, and
its labels are those of the TorchScript model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from skoots_client.evaluate import evaluate
from skoots_client.run import segment_file
from test_segment_e2e import blobs_volume  # tests/functional/test_segment_e2e.py


def test_the_python_backend_model_runs_openvino_with_torchscripts_labels(triton_server, e2e_repository: Path, tmp_path: Path) -> None:
    assert any("skoots (instance" in line and "runs model.xml with OpenVINO FP32 on CPU" in line for line in triton_server.logs)
    tifffile.imwrite(tmp_path / "v.tif", blobs_volume())
    common = dict(device="cpu", quiet=True)
    segment_file(tmp_path / "v.tif", out=tmp_path / "served.tif", urls=[triton_server.grpc_url], **common)
    text = segment_file(tmp_path / "v.tif", out=tmp_path / "ts.tif", repository=e2e_repository, runtime="torchscript", **common)
    assert "inference in-process: TorchScript FP32 on CPU" in text
    served, torchscript = tifffile.imread(tmp_path / "served.tif"), tifffile.imread(tmp_path / "ts.tif")
    assert torchscript.max() > 5, "the lively model should find many instances"
    assert np.array_equal(served, torchscript) or evaluate(served, torchscript).adjusted_rand_index >= 0.9999
