"""The written repository: TorchScript round trip, config ⇔ TorchScript I/O, both variants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from checkpoints import TINY, skoots_cfg, write_checkpoint
from tritonclient.grpc import model_config_pb2 as pb

from skoots_export.architecture import build_network, load_weights
from skoots_export.checkpoint import load_checkpoint
from skoots_export.contract.choices import Device
from skoots_export.contract.wire import INPUT, OUTPUTS, ModelParameters, config_from_text, contract_problems, parameters_from_config
from skoots_export.errors import VerificationError
from skoots_export.exporter import export_checkpoint
from skoots_export.head import InferenceHead
from skoots_export.torchscript import script_head, verify_scripted

NUMPY_OF = {"TYPE_FP16": torch.float16, "TYPE_UINT8": torch.uint8}


def eager_head(checkpoint: Path, prob: float = 0.5, skel: float = 0.8) -> InferenceHead:
    loaded = load_checkpoint(checkpoint)
    network = build_network(loaded.cfg.MODEL)
    load_weights(network, loaded.state_dict)
    return InferenceHead(network, prob, skel).eval()


def read_config(model_dir: Path) -> pb.ModelConfig:
    return config_from_text((model_dir / "config.pbtxt").read_text())


def random_crops(batch: int, shape=(24, 24, 8), seed: int = 3) -> torch.Tensor:
    return torch.rand((batch, 1, *shape), generator=torch.Generator().manual_seed(seed)).half()


def test_written_torchscript_equals_eager_head(exported_repository: Path, tiny_checkpoint: Path) -> None:
    loaded = torch.jit.load(str(exported_repository / "skoots" / "1" / "model.pt"))
    crops = random_crops(3)
    with torch.inference_mode():
        expected = eager_head(tiny_checkpoint)(crops)
        got = loaded(crops)
    for e, g in zip(expected, got):
        assert e.dtype == g.dtype
        assert torch.equal(e, g)


def test_head_applies_reference_thresholds(tiny_checkpoint: Path) -> None:
    head = eager_head(tiny_checkpoint, prob=0.4, skel=0.6)
    crops = random_crops(2)
    with torch.inference_mode():
        raw = torch.cat([head.network(crop.float()) for crop in crops.split(1)])  # the head runs crops alone
        vectors, skeleton, prob = head(crops)
    mask = raw[:, 4:5] > 0.4
    assert torch.equal(vectors, (raw[:, :3] * mask).half())
    assert torch.equal(skeleton, ((raw[:, 3:4] * mask) > 0.6).to(torch.uint8))
    assert torch.equal(prob, raw[:, 4:5].half())
    assert 0 < int(skeleton.sum()) < skeleton.numel(), "thresholds should split this random crop"


@pytest.mark.parametrize("model", ["skoots", "skoots_python"])
def test_config_parses_and_matches_torchscript_io(exported_repository: Path, model: str) -> None:
    config = read_config(exported_repository / model)
    assert config.name == model
    assert contract_problems(config) == []
    assert [i.name for i in config.input] == [INPUT.name]
    module = torch.jit.load(str(exported_repository / model / "1" / "model.pt"))
    assert module.forward.schema.arguments[1].name == INPUT.name, "libtorch matches inputs by name"
    crop = tuple(int(v) for v in config.model_warmup[0].inputs[INPUT.name].dims[1:])
    batch = config.max_batch_size
    with torch.inference_mode():
        outputs = module(random_crops(batch, crop))
    assert len(outputs) == len(config.output) == len(OUTPUTS)
    for tensor, declared in zip(outputs, config.output):
        index = int(declared.name.rsplit("__", 1)[1])
        assert outputs[index] is tensor
        assert tensor.dtype == NUMPY_OF[pb.DataType.Name(declared.data_type)]
        assert tensor.shape[0] == batch
        assert [d if d != -1 else s for d, s in zip(declared.dims, tensor.shape[1:])] == list(tensor.shape[1:])


def test_variants_share_one_model_and_differ_only_in_backend(exported_repository: Path) -> None:
    libtorch, python = read_config(exported_repository / "skoots"), read_config(exported_repository / "skoots_python")
    assert libtorch.platform == "pytorch_libtorch" and not libtorch.backend
    assert python.backend == "python" and not python.platform
    assert (exported_repository / "skoots" / "1" / "model.pt").read_bytes() == (
        exported_repository / "skoots_python" / "1" / "model.pt"
    ).read_bytes()
    model_py = (exported_repository / "skoots_python" / "1" / "model.py").read_text()
    compile(model_py, "model.py", "exec")
    assert "skoots_" not in model_py, "the server loads model.py alone"
    assert not (exported_repository / "skoots" / "1" / "model.py").exists()
    for config in (libtorch, python):
        assert config.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU
        assert config.dynamic_batching is not None and config.HasField("dynamic_batching")
        assert sorted(w.batch_size for w in config.model_warmup) == [1, 4]
        assert all(list(w.inputs[INPUT.name].dims) == [1, 24, 24, 8] for w in config.model_warmup)
    assert parameters_from_config(libtorch) == parameters_from_config(python)


def test_parameters_carry_seed_defaults_checkpoint_constants_and_overrides(tmp_path: Path) -> None:
    cfg = skoots_cfg(**TINY)
    cfg.SKOOTS.VECTOR_SCALING = (30, 40, 5)
    cfg.SKOOTS.ANISOTROPY = (1.0, 1.0, 4.0)
    checkpoint = write_checkpoint(tmp_path / "c.trch", cfg, dataset_mean=torch.tensor(0.25), dataset_std=0.1)
    export_checkpoint(
        checkpoint, repository=tmp_path / "repo", device=Device.CPU, crop=(16, 16, 8), overlap=(2, 2, 1),
        embedding_iterations=10, dilations_2d=2,
    )
    config = read_config(tmp_path / "repo" / "skoots")
    assert config.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU
    assert parameters_from_config(config) == ModelParameters(
        crop=(16, 16, 8), overlap=(2, 2, 1), vector_scaling=(30.0, 40.0, 5.0), anisotropy=(1.0, 1.0, 4.0),
        embedding_iterations=10, dilations_2d=2, dataset_mean=0.25, dataset_std=0.1,
    )
    assert config.parameters["normalization"].string_value == "mean_std"
    assert "VECTOR_SCALING" in config.parameters["skoots_cfg"].string_value


def test_default_device_is_gpu_libtorch(tmp_path: Path, tiny_checkpoint: Path) -> None:
    export_checkpoint(tiny_checkpoint, repository=tmp_path, crop=(16, 16, 8), overlap=(2, 2, 1))
    config = read_config(tmp_path / "skoots")
    assert config.platform == "pytorch_libtorch"
    assert config.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    assert config.max_batch_size == 8
    assert parameters_from_config(config) == ModelParameters(crop=(16, 16, 8), overlap=(2, 2, 1))


def test_contract_problems_names_what_is_wrong(exported_repository: Path) -> None:
    config = read_config(exported_repository / "skoots")
    config.output[1].data_type = pb.TYPE_FP32
    config.output[0].name = "vectors"
    config.input[0].dims[0] = 3
    problems = contract_problems(config)
    assert any("no output 'vectors__0'" in p for p in problems)
    assert any("skeleton__1" in p and "TYPE_FP32" in p for p in problems)
    assert any("input__0" in p and "dims" in p for p in problems)


def test_missing_parameter_is_named(exported_repository: Path) -> None:
    config = read_config(exported_repository / "skoots")
    del config.parameters["overlap"]
    with pytest.raises(ValueError, match="no parameter 'overlap'"):
        parameters_from_config(config)
    config.parameters["overlap"].string_value = "1,2"
    with pytest.raises(ValueError, match="overlap"):
        parameters_from_config(config)


def test_verification_refuses_a_scripted_module_of_other_weights(tiny_checkpoint: Path, tmp_path: Path) -> None:
    other = eager_head(write_checkpoint(tmp_path / "other.trch", seed=9))
    with pytest.raises(VerificationError, match="nothing was written"):
        verify_scripted(eager_head(tiny_checkpoint), script_head(other), (16, 16, 8))


def test_verification_accepts_its_own_script(tiny_checkpoint: Path) -> None:
    head = eager_head(tiny_checkpoint)
    verify_scripted(head, script_head(head), (16, 16, 8))


def test_outputs_have_wire_sizes(exported_repository: Path) -> None:
    module = torch.jit.load(str(exported_repository / "skoots" / "1" / "model.pt"))
    crops = random_crops(1)
    with torch.inference_mode():
        vectors, skeleton, _ = module(crops)
    voxels = crops.numel()
    assert (crops.element_size() * voxels + vectors.element_size() * vectors.numel() + skeleton.element_size() * skeleton.numel()) / voxels == 9
    assert np.asarray(skeleton).max() <= 1


@pytest.mark.parametrize(
    "change,match",
    [
        ({"crop": (4, 8, 8), "overlap": (0, 0, 0)}, r"crop \(4, 8, 8\) is below the network's minimum of 8"),
        ({"crop": (16, 16, 8), "overlap": (2, 2, 1), "minimum_size": 16}, r"below the network's minimum of 16"),
        ({"vector_scaling": (60.0, float("inf"), 12.0)}, r"vector_scaling = .* must be finite"),
        ({"anisotropy": (1.0, 1.0, float("nan"))}, r"anisotropy = .* must be finite"),
        ({"dataset_mean": float("nan"), "dataset_std": 1.0}, r"dataset_mean = nan must be finite"),
        ({"dataset_mean": 0.0, "dataset_std": float("inf")}, r"dataset_std = inf must be finite"),
        ({"prob_threshold": float("nan")}, r"prob_threshold = nan must lie in \[0, 1\)"),
    ],
)
def test_parameters_refuse_what_no_model_can_run(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ModelParameters(**change)


@pytest.mark.parametrize("runtime", ["torchscript", "openvino"])
def test_a_crops_answer_does_not_depend_on_its_batch(exported_repository: Path, runtime: str) -> None:
    """The dynamic batcher merges requests at will; each crop's answer must be the same alone."""
    from skoots_export.contract.openvino_runtime import OpenVinoHead

    version = exported_repository / "skoots" / "1"
    if runtime == "openvino":
        head = OpenVinoHead(str(version / "model.xml"))
        model = lambda crops: tuple(torch.from_numpy(o) for o in head(crops.numpy()))  # noqa: E731
    else:
        model = torch.jit.load(str(version / "model.pt"))
    batch = torch.rand((4, 1, 24, 24, 8), generator=torch.Generator().manual_seed(3)).half()
    with torch.inference_mode():
        together = model(batch)
        alone = [model(batch[i : i + 1]) for i in range(4)]
        pairs = [model(batch[i : i + 2]) for i in (0, 2)]
    for k, output in enumerate(together):
        assert torch.equal(output, torch.cat([a[k] for a in alone]))
        assert torch.equal(output, torch.cat([p[k] for p in pairs]))


@pytest.mark.parametrize("where", ["under-a-file", "is-a-file"])
def test_an_unwritable_repository_fails_before_the_network_is_captured(
    where: str, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skoots_export import exporter
    from skoots_export.errors import ExportError

    def captured(*args, **kwargs):
        raise AssertionError("the network was captured for a repository that cannot be written")

    monkeypatch.setattr(exporter, "export_program", captured)
    (tmp_path / "notes").write_text("a file")
    repository = tmp_path / "notes" / "repo" if where == "under-a-file" else tmp_path / "notes"
    with pytest.raises(ExportError, match=r"cannot write the model repository .*(Not a directory|File exists) — choose a writable"):
        export_checkpoint(tiny_checkpoint, repository=repository, backend="python", device=Device.CPU, crop=(24, 24, 8), overlap=(4, 4, 2))
    assert (tmp_path / "notes").read_text() == "a file"


def test_the_suites_graph_memo_tells_networks_apart(tiny_checkpoint: Path) -> None:
    """tests/graph_capture_memo.py reuses a capture only for the same structure, thresholds and weights."""
    from graph_capture_memo import fingerprint

    head = eager_head(tiny_checkpoint)
    assert fingerprint(head) == fingerprint(eager_head(tiny_checkpoint))
    assert fingerprint(head) != fingerprint(eager_head(tiny_checkpoint, prob=0.4))
    other = eager_head(tiny_checkpoint)
    with torch.no_grad():
        next(other.parameters()).view(-1)[0] += 1e-3
    assert fingerprint(head) != fingerprint(other)
