"""The OpenVINO IR: the TorchScript head's answers, the wire contract's names and types, and a
model Triton's ``openvino`` backend accepts.

No server with the OpenVINO backend exists here, so its model is checked against what that
backend's source (triton-inference-server/openvino_backend, src/openvino.cc) does at load and
at inference: it reads ``<version>/model.xml``, matches inputs and outputs by name, sets their
element types from the config, gives the input the layout ``N...``, sets the batch to
``max_batch_size`` and compares output dims exactly; every request batch must equal
``max_batch_size`` unless ``ENABLE_BATCH_PADDING``; it reads only its own parameter keys.
The same steps are run here with OpenVINO's Python API.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
import pytest
import torch
from checkpoints import TINY, lively, random_state_dict, skoots_cfg
from tritonclient.grpc import model_config_pb2 as pb

from skoots_export.architecture import build_network
from skoots_export.contract.choices import Device
from skoots_export.contract.openvino_runtime import OpenVinoHead
from skoots_export.contract.wire import INPUT, OUTPUTS, config_from_text, contract_problems, parameters_from_config
from skoots_export.errors import VerificationError
from skoots_export.exporter import export_checkpoint
from skoots_export.head import InferenceHead
from skoots_export.openvino_ir import convert_head, save_ir, verify_ir
from skoots_export.torchscript import reference_answer, script_head

# The backend's own parameter keys (openvino.cc ParseParameters); it ignores every other key.
BACKEND_KEYS = {"CPU_EXTENSION_PATH", "SKIP_OV_DYNAMIC_BATCHSIZE", "ENABLE_BATCH_PADDING", "RESHAPE_IO_LAYERS",
                "TARGET_DEVICE", "INFERENCE_NUM_THREADS", "COMPILATION_NUM_THREADS", "HINT_BF16", "NUM_STREAMS",
                "PERFORMANCE_HINT"}
OV_TYPES = {"TYPE_FP16": ov.Type.f16, "TYPE_UINT8": ov.Type.u8}


def random_crops(batch: int = 2, shape: tuple[int, int, int] = (40, 40, 16), seed: int = 5) -> torch.Tensor:
    return torch.rand((batch, 1, *shape), generator=torch.Generator().manual_seed(seed)).half()


@torch.inference_mode()
def lively_head(kernel: int = 3, activation: str = "gelu") -> InferenceHead:
    """Random weights, thresholds at quantiles of its own outputs on :func:`random_crops`: ~70 %
    object and ~20 % of it skeleton whatever the activation, so thresholds are tested."""
    cfg = skoots_cfg(**{**TINY, "KERNEL_SIZE": kernel, "ACTIVATION": activation})
    network = build_network(cfg.MODEL).eval()
    network.load_state_dict(lively(random_state_dict(cfg)))
    raw = network(random_crops()[:1].float())
    prob, skel = raw[:, 4].flatten(), raw[:, 3].flatten()
    prob_threshold = float(prob.quantile(0.3))
    return InferenceHead(network, prob_threshold, float(skel[prob > prob_threshold].quantile(0.8))).eval()


@pytest.fixture(scope="module")
def lively_ir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default `lively_head`'s IR, converted once for the tests of this module that read it."""
    xml = tmp_path_factory.mktemp("ir") / "model.xml"
    save_ir(convert_head(lively_head(), minimum_size=8), xml)
    return xml


# One architecture in the quick run; the others (a torch.export capture and conversion each, ~20 s) in the slow one.
@pytest.fixture(scope="module", params=[(3, "gelu"), pytest.param((5, "relu"), marks=pytest.mark.slow),
                                        pytest.param((7, "silu"), marks=pytest.mark.slow)], ids=lambda p: f"k{p[0]}-{p[1]}")
def converted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.jit.ScriptModule, Path]:
    head = lively_head(*request.param)
    if request.param == (3, "gelu"):
        return script_head(head), request.getfixturevalue("lively_ir")
    xml = tmp_path_factory.mktemp("ir") / "model.xml"
    save_ir(convert_head(head, minimum_size=8), xml)
    return script_head(head), xml


def test_openvino_fp32_answers_as_torchscript_per_crop(converted) -> None:
    scripted, xml = converted
    crops = random_crops()
    with torch.inference_mode():
        expected = [o.numpy() for o in scripted(crops)]
    got = OpenVinoHead(str(xml), precision="fp32")(crops.numpy())
    for e, g in zip(expected, got):
        assert e.dtype == g.dtype and e.shape == g.shape
    vectors, skeleton, prob = expected
    assert 0.05 < skeleton.mean() < 0.5, "thresholds split the crop"
    # Vectors are masked by prob > threshold: a voxel whose probability lies within rounding of
    # the threshold may flip in or out of the object, like the skeleton's (seen: 1 voxel of 51,200
    # with kernel 5 / relu, vectors 0.96 apart there, 5e-4 at most elsewhere); elsewhere they agree.
    inside, inside_ov = (vectors != 0).any(axis=1), (got[0] != 0).any(axis=1)
    assert (inside != inside_ov).mean() <= 1e-4
    both = (inside & inside_ov)[:, None].repeat(3, axis=1)
    assert np.abs(vectors.astype(np.float32) - got[0].astype(np.float32))[both].max() <= 1e-3
    assert (skeleton != got[1]).mean() <= 1e-4
    assert np.abs(prob.astype(np.float32) - got[2].astype(np.float32)).max() <= 1e-3


def test_ir_speaks_the_contract_with_fp32_weights(converted) -> None:
    scripted, xml = converted
    model = ov.Core().read_model(str(xml))
    assert [(i.get_any_name(), i.get_element_type()) for i in model.inputs] == [(INPUT.name, ov.Type.f16)]
    assert str(model.inputs[0].get_partial_shape()) == "[1,1,?,?,?]"
    assert [(o.get_any_name(), o.get_element_type()) for o in model.outputs] == [(s.name, OV_TYPES[s.data_type]) for s in OUTPUTS]
    parameters = sum(p.numel() for p in scripted.parameters())
    assert xml.with_suffix(".bin").stat().st_size >= 4 * parameters, "weights were compressed to FP16"


def test_a_crops_answer_does_not_depend_on_its_shape_cache_or_neighbours(converted) -> None:
    _, xml = converted
    head = OpenVinoHead(str(xml))
    batch = torch.rand((3, 1, 24, 24, 8), generator=torch.Generator().manual_seed(1)).half().numpy()
    smaller = batch[:1, :, :16, :16]
    together = head(batch)
    head(smaller)  # another shape compiles beside the first
    alone = [head(batch[i : i + 1]) for i in range(3)]
    for k, output in enumerate(together):
        assert np.array_equal(output, np.concatenate([a[k] for a in alone]))
    assert [o.shape[2:] for o in head(smaller)] == [(16, 16, 8)] * 3


def test_verification_refuses_an_ir_of_other_weights(lively_ir: Path) -> None:
    xml = lively_ir
    other = InferenceHead(build_network(skoots_cfg(**TINY).MODEL)).eval()
    other.network.load_state_dict(random_state_dict(skoots_cfg(**TINY), seed=9))
    with pytest.raises(VerificationError, match="OpenVINO IR's outputs differ from the eager head; nothing was written"):
        verify_ir(reference_answer(other, (16, 16, 8)), xml)
    verify_ir(reference_answer(lively_head(), (16, 16, 8)), xml)


# --- the repository's variants ---------------------------------------------------------------


@pytest.fixture(scope="module")
def every_variant(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    repository = tmp_path_factory.mktemp("all") / "model_repository"
    export_checkpoint(tiny_checkpoint, repository=repository, device=Device.CPU, max_batch_size=4, crop=(24, 24, 8), overlap=(4, 4, 2))
    return repository


def read_config(model_dir: Path) -> pb.ModelConfig:
    return config_from_text((model_dir / "config.pbtxt").read_text())


def test_default_export_writes_every_variant_sharing_files(every_variant: Path) -> None:
    assert sorted(p.name for p in every_variant.iterdir()) == ["skoots", "skoots_openvino", "skoots_python"]
    assert sorted(p.name for p in (every_variant / "skoots_openvino" / "1").iterdir()) == ["model.bin", "model.xml"]
    assert sorted(p.name for p in (every_variant / "skoots_python" / "1").iterdir()) == [
        "model.bin", "model.pt", "model.py", "model.xml", "openvino_runtime.py"]
    assert sorted(p.name for p in (every_variant / "skoots" / "1").iterdir()) == ["model.bin", "model.pt", "model.xml"]
    for name in ("model.xml", "model.bin"):
        files = [every_variant / model / "1" / name for model in ("skoots", "skoots_python", "skoots_openvino")]
        assert len({f.stat().st_ino for f in files}) == 1, "hard links, not copies"


def test_openvino_backend_config_meets_the_backends_requirements(every_variant: Path) -> None:
    config = read_config(every_variant / "skoots_openvino")
    assert config.backend == "openvino" and not config.platform and not config.default_model_filename  # model.xml
    assert contract_problems(config) == []
    assert parameters_from_config(config) == parameters_from_config(read_config(every_variant / "skoots"))
    assert config.max_batch_size == 1 and not config.HasField("dynamic_batching"), "one crop per request: batch-independent"
    assert [g.kind for g in config.instance_group] == [pb.ModelInstanceGroup.KIND_CPU]
    assert not BACKEND_KEYS & set(config.parameters), "no backend option: its defaults, which cannot ask for FP32"
    assert [w.batch_size for w in config.model_warmup] == [1]


def load_like_the_backend(model_dir: Path, config: pb.ModelConfig) -> ov.CompiledModel:
    """What openvino_backend does at load (ValidateInputs, ValidateOutputs, LoadModel)."""
    core = ov.Core()
    model = core.read_model(str(model_dir / "1" / "model.xml"))
    names = {o.get_any_name() for o in model.inputs} | {o.get_any_name() for o in model.outputs}
    assert {t.name for t in (*config.input, *config.output)} <= names
    ppp = ov.preprocess.PrePostProcessor(model)
    for tensor in config.input:
        ppp.input(tensor.name).tensor().set_element_type(OV_TYPES[pb.DataType.Name(tensor.data_type)]).set_layout(ov.Layout("N..."))
    for tensor in config.output:
        ppp.output(tensor.name).tensor().set_element_type(OV_TYPES[pb.DataType.Name(tensor.data_type)])
    model = ppp.build()
    ov.set_batch(model, config.max_batch_size)
    for tensor in config.output:  # CompareDimsSupported, compare_exact: batch then dims; -1 matches a dynamic axis
        shape = model.output(tensor.name).get_partial_shape()
        full = [config.max_batch_size, *tensor.dims]
        assert len(shape) == len(full)
        assert all(d == -1 and shape[i].is_dynamic or shape[i].is_static and shape[i].get_length() == d for i, d in enumerate(full))
    return core.compile_model(model, "CPU")  # no precision hint: the backend has none for FP32


def test_the_openvino_backends_load_and_inference_steps_accept_the_model(every_variant: Path) -> None:
    model_dir = every_variant / "skoots_openvino"
    config = read_config(model_dir)
    compiled = load_like_the_backend(model_dir, config)
    crop = torch.rand((1, 1, 24, 24, 8), generator=torch.Generator().manual_seed(2)).half().numpy()
    served = compiled(crop)
    reference = OpenVinoHead(str(model_dir / "1" / "model.xml"))(crop)
    for spec, expected in zip(OUTPUTS, reference):
        answer = served[spec.name]
        assert answer.dtype == expected.dtype and answer.shape == expected.shape
    # Where the CPU has BF16, the backend computes in BF16 (no way to ask for FP32): close, not equal.
    assert np.abs(served["vectors__0"].astype(np.float32) - reference[0].astype(np.float32)).max() <= 0.05


def test_export_without_openvino_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from skoots_export.errors import ExportError

    monkeypatch.setitem(__import__("sys").modules, "openvino", None)  # what a missing package looks like
    with pytest.raises(ExportError, match=r"cannot import openvino .*: install it \(pip install 'openvino>=2024.4'\)"):
        convert_head(lively_head(), minimum_size=8)
