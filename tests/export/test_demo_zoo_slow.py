"""Issue 31 on the demo model and volume (examples/demo.py's): the IR from torch.export gives the
labels of the IR the TorchScript trace made before it; the checkpoint becomes a zoo package that
``bioimageio test`` passes offline, and the package's repository gives the checkpoint's labels."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
import tifffile
import torch
from test_bioimageio import BIOIMAGEIO, offline_env

import skoots_client
from examples.demo import CHECKPOINT, DEMO_SEED, DEMO_SHAPE
from examples.synthetic import SyntheticSpec, generate, write_volume
from skoots_client.evaluate import evaluate
from skoots_export.architecture import build_network, load_weights
from skoots_export.bioimageio_package import export_bioimageio
from skoots_export.checkpoint import load_checkpoint
from skoots_export.contract.choices import Device
from skoots_export.contract.wire import INPUT, OUTPUTS
from skoots_export.exporter import export_checkpoint, parameters_for
from skoots_export.head import InferenceHead
from skoots_export.openvino_ir import save_ir

pytestmark = pytest.mark.slow


def traced_ir(checkpoint: Path, xml: Path) -> None:
    """The IR as export made it before issue 31: openvino.convert_model on the module (its
    TorchScript trace), at batch 1 and the minimum crop."""
    loaded = load_checkpoint(checkpoint)
    network = build_network(loaded.cfg["MODEL"])
    load_weights(network, loaded.state_dict)
    parameters, _ = parameters_for(loaded, minimum_size=2 ** (1 + len(loaded.cfg["MODEL"]["DIMS"]) // 2))
    head = InferenceHead(network, parameters.prob_threshold, parameters.skeleton_threshold).eval()
    example = torch.zeros((1, 1, *(parameters.minimum_size,) * 3), dtype=torch.float16)
    with torch.inference_mode():
        model = ov.convert_model(head, example_input=(example,), input=[(INPUT.name, ov.PartialShape([1, 1, -1, -1, -1]), ov.Type.f16)])
    for output, spec in zip(model.outputs, OUTPUTS):
        output.get_tensor().set_names({spec.name})
    save_ir(model, xml)


def labels(volume: Path, out: Path, **options) -> np.ndarray:
    skoots_client.segment(volume, out=out, device="cpu", quiet=True, **options)
    return tifffile.imread(out)


def test_demo_ir_labels_and_zoo_round_trip(tmp_path: Path) -> None:
    volume, truth = write_volume(tmp_path / "demo.tif", generate(DEMO_SEED, dataclasses.replace(SyntheticSpec(), shape=DEMO_SHAPE)))
    repository = tmp_path / "checkpoint_repository"
    export_checkpoint(CHECKPOINT, repository=repository, backend="python", device=Device.CPU, max_batch_size=2)
    exported = labels(volume, tmp_path / "exported.tif", model=repository, runtime="openvino")
    assert evaluate(exported, tifffile.imread(truth)).adjusted_rand_index >= 0.9

    traced = tmp_path / "traced_repository"
    shutil.copytree(repository, traced)
    traced_ir(CHECKPOINT, traced / "skoots" / "1" / "model.xml")
    assert np.array_equal(labels(volume, tmp_path / "traced.tif", model=traced, runtime="openvino"), exported)

    package = tmp_path / "demo.zip"
    export_bioimageio(CHECKPOINT, package)
    done = subprocess.run([str(BIOIMAGEIO), "test", str(package)], capture_output=True, text=True, timeout=900,
                          env=offline_env(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]
    from_package = tmp_path / "package_repository"
    export_checkpoint(package, repository=from_package, backend="python", device=Device.CPU, max_batch_size=2)
    assert np.array_equal(labels(volume, tmp_path / "package.tif", model=from_package, runtime="openvino"), exported)
