"""What the Triton endpoint checks without a server: answers and TLS files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from skoots_client.answers import answer_problem, answer_size_problem
from skoots_client.errors import InputError, ModelError
from skoots_client.model_info import choose_model
from skoots_client.model_source import EmbeddedModel, Tls
from skoots_client.triton_wire import parse_reply
from skoots_client.variants import CPU_KIND_PREFERENCE, model_kind, on_cpu_only
from skoots_export.contract.choices import Backend
from skoots_export.contract.wire import SKELETON, VECTORS


@pytest.mark.parametrize(
    "vectors,skeleton,problem",
    [
        (np.zeros((2, 3, 8, 8, 4), np.float16), np.zeros((2, 1, 8, 8, 4), np.uint8), None),
        (np.zeros((2, 3, 8, 8, 4), np.float16), None, "no skeleton__1 in the answer"),
        (np.zeros((1, 3, 8, 8, 4), np.float16), np.zeros((2, 1, 8, 8, 4), np.uint8),
         "vectors__0 of float16 [1, 3, 8, 8, 4] instead of float16 [2, 3, 8, 8, 4]"),
        (np.zeros((2, 3, 8, 8, 4), np.float32), np.zeros((2, 1, 8, 8, 4), np.uint8),
         "vectors__0 of float32 [2, 3, 8, 8, 4] instead of float16 [2, 3, 8, 8, 4]"),
    ],
)
def test_an_answer_must_hold_every_output_asked_for_in_the_batchs_shape(vectors, skeleton, problem) -> None:
    assert answer_problem((vectors, skeleton), [VECTORS, SKELETON], (2, 1, 8, 8, 4)) == problem


def _response(*outputs: tuple[str, str, list[int], bytes]):
    """A gRPC ModelInferResponse as a server sends it: outputs and their raw bytes."""
    from tritonclient.grpc import service_pb2

    response = service_pb2.ModelInferResponse(model_name="skoots")
    for name, datatype, shape, raw in outputs:
        response.outputs.add(name=name, datatype=datatype, shape=shape)
        response.raw_output_contents.append(raw)
    return response


@pytest.mark.parametrize(
    "vectors,problem",
    [
        (("FP16", [2, 3, 8, 8, 4], bytes(2 * 3 * 8 * 8 * 4 * 2)), None),
        (("FP16", [2, 3, 8, 8, 4], b""), "vectors__0 of 0 bytes (FP16 [2, 3, 8, 8, 4]) where FP16 [2, 3, 8, 8, 4] needs 3,072"),
        (("FP16", [2, 3, 8, 8, 2], bytes(1536)), "vectors__0 of 1,536 bytes (FP16 [2, 3, 8, 8, 2]) where FP16 [2, 3, 8, 8, 4] needs 3,072"),
        (("FP32", [2, 3, 8, 8, 4], bytes(3072)), "vectors__0 of 3,072 bytes (FP32 [2, 3, 8, 8, 4]) where FP16 [2, 3, 8, 8, 4] needs 3,072"),
    ],
    ids=["whole", "empty", "short", "other-type"],
)
def test_an_answers_bytes_must_fill_the_shape_before_anything_is_decoded(vectors, problem) -> None:
    """What a Python-backend stub with NumPy 2 sends: the right shapes, zero bytes."""
    response = _response(("vectors__0", *vectors), ("skeleton__1", "UINT8", [2, 1, 8, 8, 4], bytes(512)))
    reply = parse_reply(response.SerializeToString())  # as the endpoint reads it: views of the raw bytes
    assert answer_size_problem(reply.header.outputs, [len(r) for r in reply.raw], [VECTORS, SKELETON], (2, 1, 8, 8, 4)) == problem


def test_tls_files_are_checked(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "notes.txt").write_text("hello\n")
    Tls(tmp_path / "ca.pem").check()
    with pytest.raises(InputError, match=r"--private-key and --cert-chain come together"):
        Tls(private_key=tmp_path / "ca.pem").check()
    with pytest.raises(InputError, match=r"cannot read --root-cert \S+nope\.pem: No such file or directory"):
        Tls(tmp_path / "nope.pem").check()
    with pytest.raises(InputError, match=r"--cert-chain \S+notes\.txt is not a PEM file"):
        Tls(private_key=tmp_path / "ca.pem", cert_chain=tmp_path / "notes.txt").check()


# --- which model when none is named ----------------------------------------------------------


def _config(name: str, backend: Backend | str, **parameters):
    from skoots_export.contract.choices import Device
    from skoots_export.contract.wire import ModelParameters
    from skoots_export.model_config import build_model_config

    kind = backend if isinstance(backend, Backend) else Backend.PYTHON
    config = build_model_config(name, backend=kind, device=Device.CPU, max_batch_size=2,
                                parameters=ModelParameters().replace(**parameters), cfg_yaml="")
    if backend == "openvino":
        config.backend = "openvino"
    return config


def test_one_exports_variants_pick_libtorch_then_openvino_then_python() -> None:
    variants = [_config("skoots_python", Backend.PYTHON), _config("skoots_openvino", "openvino"), _config("skoots", Backend.LIBTORCH)]
    assert choose_model(variants, "here") == "skoots"
    assert choose_model(variants[:2], "here") == "skoots_openvino"
    assert choose_model(variants[:1], "here") == "skoots_python"
    assert [model_kind(c) for c in variants] == ["python", "openvino", "libtorch"]


def test_models_outside_the_contract_are_not_candidates() -> None:
    other = _config("resnet", Backend.PYTHON)
    other.input[0].name = "INPUT0"
    assert choose_model([other, _config("mito", Backend.PYTHON)], "here") == "mito"
    with pytest.raises(ModelError, match=r"^no SKOOTS model here \(models there: resnet\) — export one with skoots export, or pass --model$"):
        choose_model([other], "here")
    with pytest.raises(ModelError, match=r"^no SKOOTS model here — export one with skoots export$"):
        choose_model([], "here")


@pytest.mark.parametrize(
    "configs,listed",
    [
        ([_config("a", Backend.PYTHON), _config("b", Backend.PYTHON, crop=(64, 64, 16))], "a (python), b (python)"),
        ([_config("a", Backend.PYTHON), _config("b", Backend.PYTHON)], "a (python), b (python)"),  # a tie: no rule to break it
        ([_config("a", Backend.LIBTORCH), _config("b", Backend.PYTHON, overlap=(2, 2, 1))], "a (libtorch), b (python)"),
    ],
    ids=["different-parameters", "same-kind", "libtorch-of-another-export"],
)
def test_several_exports_are_listed_in_one_line(configs, listed: str) -> None:
    with pytest.raises(ModelError, match=rf"^several SKOOTS models here: {re.escape(listed)} — choose one with --model$"):
        choose_model(configs, "here")


def test_in_process_picks_the_libtorch_variant_of_the_repositorys_export(exported_repository: Path) -> None:
    assert sorted(p.name for p in exported_repository.iterdir()) == ["skoots", "skoots_python"]
    assert EmbeddedModel(exported_repository).info.name == "skoots"
    assert EmbeddedModel(exported_repository, "skoots_python").info.name == "skoots_python"


def test_on_a_cpu_only_server_the_python_and_openvino_variants_come_before_libtorch() -> None:
    variants = [_config("skoots_python", Backend.PYTHON), _config("skoots", Backend.LIBTORCH)]
    assert on_cpu_only(variants)  # exported with Device.CPU: KIND_CPU groups
    assert choose_model(variants, "here", CPU_KIND_PREFERENCE) == "skoots_python"
    with_openvino = [*variants, _config("skoots_openvino", "openvino")]
    assert choose_model(with_openvino, "here", CPU_KIND_PREFERENCE) == "skoots_openvino"
    assert choose_model(variants[1:], "here", CPU_KIND_PREFERENCE) == "skoots"  # the only one there is
    gpu = _config("skoots", Backend.LIBTORCH)
    gpu.instance_group[0].kind = gpu.instance_group[0].KIND_GPU
    assert not on_cpu_only([variants[0], gpu]) and not on_cpu_only([])
