"""Issue 31, served: a BioImage Model Zoo package exported from a SKOOTS checkpoint, exported
back into a repository and served by a real tritonserver, gives the checkpoint's labels bitwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import E2E_EXPORT, served_inferences, start_server
from functional.test_segment_e2e import blobs_volume

CLIENT = Path(sys.executable).parent / "skoots-client"


@pytest.mark.slow  # two exports (one through ONNX for the package), a Python-backend server: ~90 s here
def test_served_package_repository_gives_the_checkpoints_labels(lively_checkpoint: Path, tmp_path: Path) -> None:
    """One server holds both models: ``checkpoint`` exported from the lively checkpoint and
    ``package`` exported from its zoo package; the same volume through each with ``--url``."""
    from skoots_export.bioimageio_package import export_bioimageio
    from skoots_export.contract.choices import Device
    from skoots_export.contract.wire import config_from_text, parameters_from_config
    from skoots_export.exporter import export_checkpoint

    package = tmp_path / "skoots.zip"
    export_bioimageio(lively_checkpoint, package, **E2E_EXPORT)
    repository = tmp_path / "model_repository"
    common = dict(repository=repository, backend="python", device=Device.CPU, max_batch_size=4)
    export_checkpoint(lively_checkpoint, name="checkpoint", **common, **E2E_EXPORT)
    export_checkpoint(package, name="package", **common)  # every constant from the package's config
    read = lambda name: parameters_from_config(config_from_text((repository / name / "config.pbtxt").read_text()))  # noqa: E731
    assert read("package") == read("checkpoint")

    tifffile.imwrite(tmp_path / "v.tif", blobs_volume((12, 56, 56), seed=3))
    server = start_server(repository)
    try:
        for model in ("checkpoint", "package"):
            done = subprocess.run([str(CLIENT), "segment", str(tmp_path / "v.tif"), "--url", server.grpc_url, "--model", model,
                                   "--out", str(tmp_path / f"{model}.tif"), "--device", "cpu", "--tile", "crop", "-q"],
                                  capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
            assert done.returncode == 0, done.stderr
        assert served_inferences(server.grpc_url, "checkpoint") > 0 and served_inferences(server.grpc_url, "package") > 0
    finally:
        server.stop()
    expected, served = tifffile.imread(tmp_path / "checkpoint.tif"), tifffile.imread(tmp_path / "package.tif")
    assert expected.shape == (12, 56, 56) and len(np.unique(expected[expected > 0])) > 1, "the lively model finds several instances"
    assert served.dtype == expected.dtype and np.array_equal(served, expected)
