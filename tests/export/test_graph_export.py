"""Export without TorchScript where it is not needed: the OpenVINO IR and the ONNX variant come
from ``torch.export``; with TorchScript unavailable the libtorch variant is skipped with one
warning line and the in-process and Python-backend variants still answer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import tifffile
import torch
from conftest import E2E_EXPORT
from test_openvino import lively_head, random_crops

import skoots_client
from skoots_export.contract.choices import Device
from skoots_export.contract.wire import INPUT, OUTPUTS, config_from_text
from skoots_export.errors import ServerError
from skoots_export.exporter import export_checkpoint
from skoots_export.graph_export import ONNX_OPSET, export_program, save_onnx
from skoots_export.head import GraphHead
from skoots_export.onnx_model import run_onnx
from skoots_export.server import ServerConfig, TritonServer, find_binary
from skoots_export.torchscript import script_head


def assert_within_openvino_tolerances(expected, got) -> None:
    """DESIGN.md's tolerances for a CPU runtime against TorchScript: vectors and probabilities
    within 1e-3 where both call a voxel object, at most 1e-4 of the voxels flipped at a threshold."""
    vectors, skeleton, prob = (np.asarray(e) for e in expected)
    for e, g in zip(expected, got):
        assert e.dtype == g.dtype and e.shape == g.shape
    inside, inside_other = (vectors != 0).any(axis=1), (got[0] != 0).any(axis=1)
    assert (inside != inside_other).mean() <= 1e-4
    both = (inside & inside_other)[:, None].repeat(3, axis=1)
    assert np.abs(vectors.astype(np.float32) - got[0].astype(np.float32))[both].max() <= 1e-3
    assert (skeleton != got[1]).mean() <= 1e-4
    assert np.abs(prob.astype(np.float32) - got[2].astype(np.float32)).max() <= 1e-3


def test_onnx_from_torch_export_answers_as_torchscript_at_any_batch_and_crop(tmp_path: Path) -> None:
    head = lively_head()
    path = tmp_path / "model.onnx"
    save_onnx(export_program(GraphHead(head), 8, INPUT.name), path, INPUT.name, [s.name for s in OUTPUTS])
    model = onnx.load(str(path))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [ONNX_OPSET]
    assert [i.name for i in model.graph.input] == [INPUT.name] and [o.name for o in model.graph.output] == [s.name for s in OUTPUTS]
    scripted = script_head(head)
    for crops in (random_crops(), random_crops(1, (24, 16, 8), seed=3)):  # batch 2 and 1, two crop shapes
        with torch.inference_mode():
            expected = [o.numpy() for o in scripted(crops)]
        assert 0.05 < expected[1].mean() < 0.5, "thresholds split the crop"
        assert_within_openvino_tolerances(expected, run_onnx(path, crops.numpy()))


@pytest.mark.slow  # a full --backend onnx export (~20 s); the ONNX answers are checked in the quick run above
def test_onnx_variant_is_an_onnxruntime_model_of_one_crop_per_request(tmp_path: Path, tiny_checkpoint: Path) -> None:
    repository = tmp_path / "model_repository"
    result = export_checkpoint(tiny_checkpoint, repository=repository, backend="onnx", device=Device.GPU, crop=(24, 24, 8), overlap=(4, 4, 2))
    assert result.warnings == ()
    assert sorted(p.name for p in (repository / "skoots" / "1").iterdir()) == ["model.onnx"]
    config = config_from_text((repository / "skoots" / "config.pbtxt").read_text())
    assert config.backend == "onnxruntime" and config.max_batch_size == 1 and not config.HasField("dynamic_batching")
    assert [g.kind for g in config.instance_group] == [config.instance_group[0].KIND_GPU]


NO_TORCHSCRIPT = """
import sys, torch
def refuse(*args, **kwargs):
    raise RuntimeError("torch.jit.script is disabled in this test")
torch.jit.script = refuse
from skoots_export.cli import main
sys.argv = ["skoots", "export", *sys.argv[1:]]
main()
"""


@pytest.fixture(scope="module")
def no_torchscript_export(tmp_path_factory: pytest.TempPathFactory, lively_checkpoint: Path) -> tuple[Path, subprocess.CompletedProcess]:
    repository = tmp_path_factory.mktemp("nojit") / "model_repository"
    options = ["--crop", "24,24,8", "--overlap", "4,4,2", "--dilations-3d", "0", "--dilations-2d", "1", "--vector-scaling", "4,4,2"]
    assert E2E_EXPORT["vector_scaling"] == (4.0, 4.0, 2.0) and E2E_EXPORT["dilations_2d"] == 1, "the options above are E2E_EXPORT's"
    done = subprocess.run([sys.executable, "-c", NO_TORCHSCRIPT, str(lively_checkpoint), "--repository", str(repository), "--device", "cpu",
                           "--max-batch", "4", *options], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return repository, done


def test_without_torchscript_libtorch_is_skipped_with_one_warning_line(no_torchscript_export) -> None:
    repository, done = no_torchscript_export
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: TorchScript is unavailable in this torch (torch.jit.script is disabled in this test): the libtorch variant (model.pt) "
        "is skipped; the other variants run the OpenVINO IR from torch.export"
    ]
    assert sorted(p.name for p in repository.iterdir()) == ["skoots_openvino", "skoots_python"]
    assert not list(repository.glob("*/1/model.pt"))
    assert sorted(p.name for p in (repository / "skoots_python" / "1").iterdir()) == ["model.bin", "model.py", "model.xml", "openvino_runtime.py"]


def blobs(tmp_path: Path) -> Path:
    from functional.test_segment_e2e import blobs_volume

    tifffile.imwrite(tmp_path / "v.tif", blobs_volume((12, 56, 56), seed=3))
    return tmp_path / "v.tif"


def test_without_torchscript_in_process_labels_equal_the_usual_exports(no_torchscript_export, e2e_repository: Path, tmp_path: Path) -> None:
    repository, _ = no_torchscript_export
    volume = blobs(tmp_path)
    skoots_client.segment(volume, out=tmp_path / "usual.tif", repository=e2e_repository, device="cpu", quiet=True)
    skoots_client.segment(volume, out=tmp_path / "nojit.tif", repository=repository, device="cpu", quiet=True)
    expected = tifffile.imread(tmp_path / "usual.tif")
    assert expected.max() >= 5
    assert np.array_equal(tifffile.imread(tmp_path / "nojit.tif"), expected)


@pytest.mark.slow
def test_without_torchscript_the_python_backend_model_serves_the_same_labels(no_torchscript_export, e2e_repository: Path, tmp_path: Path) -> None:
    repository, _ = no_torchscript_export
    volume = blobs(tmp_path)
    skoots_client.segment(volume, out=tmp_path / "usual.tif", repository=e2e_repository, device="cpu", quiet=True)
    try:
        binary = find_binary()
    except ServerError as e:
        pytest.skip(f"no tritonserver: {e}")
    # the wheel's server has no OpenVINO backend: the Python-backend model alone
    server = TritonServer(ServerConfig(repository=repository, models=("skoots_python",)), binary).start(timeout=180)
    try:
        skoots_client.segment(volume, out=tmp_path / "served.tif", url=server.grpc_url, model="skoots_python", device="cpu", quiet=True)
    finally:
        server.stop()
    assert np.array_equal(tifffile.imread(tmp_path / "served.tif"), tifffile.imread(tmp_path / "usual.tif"))
