"""Which in-process runtime runs a model, and the refusals for runtimes a machine cannot run.

The CUDA branch cannot run without a GPU: its choice and its refusal are tested here, the run
itself in benchmarks/gpu_check.sh.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from skoots_client.errors import DeviceError, InputError, ModelError
from skoots_client.model_source import EmbeddedModel
from skoots_client.runtimes import all_cores, check_precision, choose_runtime

HERE = Path("model/1")


def choose(requested: str = "auto", *, cuda=False, openvino=True, has_ir=True, has_torchscript=True) -> str:
    return choose_runtime(requested, cuda=cuda, openvino=openvino, has_ir=has_ir, has_torchscript=has_torchscript, where=HERE)


@pytest.mark.parametrize(
    "machine,expected",
    [
        ({"cuda": True}, "cuda"),
        ({"cuda": True, "has_ir": False}, "cuda"),
        ({}, "openvino"),
        ({"openvino": False}, "torchscript"),
        ({"has_ir": False}, "torchscript"),
        ({"cuda": True, "has_torchscript": False}, "openvino"),  # an OpenVINO-backend model's version
    ],
)
def test_auto_takes_the_gpu_then_openvino_then_torchscript(machine: dict, expected: str) -> None:
    assert choose("auto", **machine) == expected


def test_an_explicit_runtime_is_taken_where_it_can_run() -> None:
    assert choose("torchscript", cuda=True) == "torchscript"
    assert choose("openvino", cuda=True) == "openvino"
    assert choose("cuda", cuda=True) == "cuda"


@pytest.mark.parametrize(
    "requested,machine,error,match",
    [
        ("tpu", {}, InputError, r"--runtime 'tpu': choose auto, openvino, torchscript, cuda"),
        ("cuda", {}, DeviceError, r"--runtime cuda: no usable CUDA GPU here .* use --runtime auto"),
        ("openvino", {"has_ir": False}, ModelError, r"--runtime openvino: model/1 has no model\.xml — re-export"),
        ("openvino", {"openvino": False}, ModelError, r"the openvino package is not installed — pip install"),
        ("auto", {"openvino": False, "has_torchscript": False}, ModelError, r"the openvino package is not installed"),
        ("torchscript", {"has_torchscript": False}, ModelError, r"--runtime torchscript: model/1 has no model\.pt .* use --runtime openvino"),
        ("cuda", {"cuda": True, "has_torchscript": False}, ModelError, r"--runtime cuda: model/1 has no model\.pt"),
    ],
)
def test_a_runtime_that_cannot_run_is_refused_in_one_line(requested: str, machine: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        choose(requested, **machine)


def test_bf16_only_on_openvino_and_only_where_the_cpu_has_it() -> None:
    check_precision("fp32", "torchscript", lambda: False)
    check_precision("bf16", "openvino", lambda: True)
    with pytest.raises(DeviceError, match=r"this CPU has no native BF16 \(AVX512_BF16 or AMX\) — drop --precision bf16"):
        check_precision("bf16", "openvino", lambda: False)
    with pytest.raises(InputError, match=r"--precision bf16 runs on OpenVINO only, not cuda"):
        check_precision("bf16", "cuda", lambda: True)
    with pytest.raises(InputError, match=r"--precision 'fp16': choose fp32, bf16"):
        check_precision("fp16", "openvino", lambda: True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="auto takes the GPU here")
def test_embedded_model_runs_openvino_on_this_cpu_with_all_cores(exported_repository: Path) -> None:
    model = EmbeddedModel(exported_repository, "skoots")
    assert model.runtime == f"OpenVINO FP32 on CPU, {all_cores()} threads"
    fallback = EmbeddedModel(exported_repository, "skoots", runtime="torchscript", threads=1)
    assert fallback.runtime == "TorchScript FP32 on CPU, 1 threads"
    batch = torch.rand((2, 1, 24, 24, 8), generator=torch.Generator().manual_seed(4)).half().numpy()
    for a, b in zip(model.infer(batch, probability=True), fallback.infer(batch, probability=True)):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.abs(a.astype(np.float32) - b.astype(np.float32)).max() <= 1e-3
    torch.set_num_threads(all_cores())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_runs_torchscript_on_the_gpu_under_fp16_autocast(exported_repository: Path) -> None:
    model = EmbeddedModel(exported_repository, "skoots")
    assert model.runtime == "TorchScript on CUDA (FP16 autocast)"
    cpu = EmbeddedModel(exported_repository, "skoots", runtime="torchscript")
    batch = torch.rand((2, 1, 24, 24, 8), generator=torch.Generator().manual_seed(4)).half().numpy()
    gpu_answer, cpu_answer = model.infer(batch), cpu.infer(batch)
    assert [a.dtype for a in gpu_answer] == [a.dtype for a in cpu_answer]
    assert np.abs(gpu_answer[0].astype(np.float32) - cpu_answer[0].astype(np.float32)).max() <= 0.05  # FP16 network


def test_a_broken_ir_is_one_error_naming_it(exported_repository: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(exported_repository / "skoots", tmp_path / "skoots")
    (tmp_path / "skoots" / "1" / "model.xml").write_text("<net>cut short")
    with pytest.raises(ModelError, match=r"cannot load \S+model\.xml: OpenVINO cannot read it or its model\.bin — re-export the model"):
        EmbeddedModel(tmp_path, "skoots", runtime="openvino")


def test_openvino_computes_in_fp32_as_read_back_from_the_compiled_model(exported_repository: Path, tmp_path: Path) -> None:
    """The summary names the precision the CPU plugin compiled (INFERENCE_PRECISION_HINT read
    back), once a crop has run: FP32 by default."""
    import tifffile

    import skoots_client
    from skoots_export.contract.openvino_runtime import OpenVinoHead

    head = OpenVinoHead(str(exported_repository / "skoots" / "1" / "model.xml"))
    assert head.compiled_precision((24, 24, 8)) == "FP32"  # on a BF16 CPU too: the hint is f32, not the plugin's default
    model = EmbeddedModel(exported_repository, "skoots", runtime="openvino")
    model.infer(np.zeros((1, 1, 24, 24, 8), np.float16))
    assert model.runtime == f"OpenVINO FP32 on CPU, {all_cores()} threads"
    tifffile.imwrite(tmp_path / "v.tif", np.random.default_rng(0).integers(0, 255, (8, 24, 24), dtype=np.uint8))
    summary = skoots_client.segment(tmp_path / "v.tif", out=tmp_path / "l.tif", repository=exported_repository,
                                    runtime="openvino", device="cpu", quiet=True).summary
    assert f"inference in-process: OpenVINO FP32 on CPU, {all_cores()} threads" in summary


def test_the_precision_shown_is_the_compiled_one_not_the_request(exported_repository: Path) -> None:
    """Asked for BF16 on a CPU without it, the plugin compiles FP32: the read-back says so
    (an echo of the request would say BF16)."""
    from skoots_export.contract.openvino_runtime import OpenVinoHead, cpu_supports_bf16

    if cpu_supports_bf16():
        pytest.skip("this CPU computes BF16: the plugin takes the request")
    head = OpenVinoHead(str(exported_repository / "skoots" / "1" / "model.xml"), precision="bf16")
    assert head.compiled_precision() is None, "nothing compiled yet"
    assert head.compiled_precision((24, 24, 8)) == "FP32"
