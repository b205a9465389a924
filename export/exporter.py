"""``skoots export``: checkpoint → verified TorchScript head → Triton model repository."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from .architecture import build_network, load_weights
from .checkpoint import Checkpoint
from .contract.activation import DEVICE_MEMORY, network_from_cfg
from .contract.activation import max_tile_voxels as estimate_tile_voxels
from .contract.choices import Backend, Device
from .contract.wire import INPUT, OUTPUTS, ModelParameters
from .errors import ExportError, ExportOptionError
from .graph_export import export_program, save_onnx
from .head import GraphHead, InferenceHead
from .model_card import CARD_KEY, Layer, card_values, find_sidecar, read_sidecar, resolve, with_unit
from .model_config import build_model_config
from .onnx_model import verify_onnx
from .openvino_ir import convert_head, save_ir, verify_ir
from .repository import ModelVariant, check_destination, write_models
from .torchscript import reference_answer, script_head, verify_scripted
from .zoo_source import load_source

__all__ = [
    "PYTHON_SUFFIX", "OPENVINO_SUFFIX", "ONNX_SUFFIX", "SUFFIXES", "BACKENDS", "IR_FILES", "VARIANT_FILES", "ExportResult", "parameters_for",
    "cfg_to_yaml", "export_checkpoint",
]

_MODEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
PYTHON_SUFFIX = "_python"
OPENVINO_SUFFIX = "_openvino"
ONNX_SUFFIX = "_onnx"
# --backend choices; "both" (libtorch + python) predates the OpenVINO model and keeps its meaning.
BACKENDS = {
    "libtorch": [Backend.LIBTORCH],
    "python": [Backend.PYTHON],
    "openvino": [Backend.OPENVINO],
    "both": [Backend.LIBTORCH, Backend.PYTHON],
    "all": [Backend.LIBTORCH, Backend.PYTHON, Backend.OPENVINO],
    "onnx": [Backend.ONNX],  # opt-in: Triton's ONNX Runtime backend; needs the bioimageio extra's onnx + onnxscript
}
IR_FILES = ("model.xml", "model.bin")
# What each variant's version directory holds. The IR sits beside model.pt too: the embedded
# runtime and the Python-backend model run it on CPUs, and Triton's libtorch backend ignores it.
VARIANT_FILES = {
    Backend.LIBTORCH: ("model.pt", *IR_FILES),
    Backend.PYTHON: ("model.pt", *IR_FILES),
    Backend.OPENVINO: IR_FILES,
    Backend.ONNX: ("model.onnx",),
}
SUFFIXES = {Backend.PYTHON: PYTHON_SUFFIX, Backend.OPENVINO: OPENVINO_SUFFIX, Backend.ONNX: ONNX_SUFFIX}


@dataclass(frozen=True)
class ExportResult:
    """What was written, for the CLI's summary."""

    models: list[tuple[Path, Backend]]
    parameters: ModelParameters
    sources: dict[str, str]  # parameter -> where its value came from (model_card.resolve)
    max_batch_size: int
    device: Device
    torch_version: str  # the torch that saved model.pt (config parameter torch_version)
    warnings: tuple[str, ...] = ()  # one line each, for stderr (a variant skipped, and why)


def _triple(section: Mapping[str, Any], key: str) -> tuple[float, float, float]:
    value = section[key]
    try:
        x, y, z = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ExportOptionError(f"cfg.SKOOTS.{key} = {value!r} must hold three numbers (X, Y, Z)") from None
    return x, y, z


def parameters_for(
    checkpoint: Checkpoint, *, minimum_size: int | None = None, **options: Any
) -> tuple[ModelParameters, dict[str, str]]:
    """The model's constants and where each came from (see model_card.py for the order):
    seed defaults, cfg.SKOOTS, the checkpoint's dataset statistics, its card, a sidecar card,
    then the export ``options`` that are not None."""
    skoots = checkpoint.cfg.get("SKOOTS", {})
    skoots = skoots if isinstance(skoots, Mapping) else {}
    layers: list[Layer] = [
        ("cfg.SKOOTS", {k.lower(): _triple(skoots, k) for k in ("VECTOR_SCALING", "ANISOTROPY") if k in skoots}),
        ("checkpoint", {"dataset_mean": checkpoint.dataset_mean, "dataset_std": checkpoint.dataset_std}
         if checkpoint.dataset_mean is not None else {}),
    ]
    if checkpoint.card is not None:
        layers.append(("checkpoint card", card_values(checkpoint.card, f"{CARD_KEY} in {checkpoint.path.name}")))
    sidecar = find_sidecar(checkpoint.path)
    if sidecar is not None:
        layers.append((f"sidecar {sidecar.name}", read_sidecar(sidecar)))
    if minimum_size is not None:
        layers.append(("network", {"minimum_size": minimum_size}))
    layers.append(("option", with_unit({k: v for k, v in options.items() if v is not None}, "--voxel-unit")))
    return resolve(layers)


def cfg_to_yaml(cfg: Any) -> str:
    """The checkpoint's cfg as YAML, kept in the model config for provenance."""
    if hasattr(cfg, "dump"):
        return cfg.dump()

    def plain(node: Any) -> Any:
        if isinstance(node, Mapping):
            return {str(k): plain(v) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [plain(v) for v in node]
        return node

    return yaml.safe_dump(plain(cfg))


def export_checkpoint(
    checkpoint_path: Path,
    *,
    repository: Path = Path("model_repository"),
    name: str = "skoots",
    backend: str = "all",
    device: Device = Device.GPU,
    max_batch_size: int = 8,
    version: int = 1,
    instances: int = 1,
    trust_checkpoint: bool = False,
    max_tile_voxels: int | None = None,
    **parameter_overrides: Any,
) -> ExportResult:
    """Export a SKOOTS checkpoint; ``backend`` is a key of `BACKENDS` (default ``all``).

    With several variants the libtorch model is ``name``, the Python-backend model
    ``name + "_python"`` and the OpenVINO-backend model ``name + "_openvino"``; a single variant
    takes ``name``. Without TorchScript the libtorch variant is skipped (`ExportResult.warnings`
    says so) and the Python-backend one holds the IR only. Nothing is written unless every step succeeds. Each config carries
    ``max_tile_voxels`` (the largest tile ``--tile auto`` sends it): ``max_tile_voxels``, else
    what the activation estimate fits into `DEVICE_MEMORY` at the variant's batch.
    """
    if not _MODEL_NAME.match(name):
        raise ExportOptionError(f"model name {name!r} may hold only letters, digits, '_', '.', '-'")
    if device not in (Device.GPU, Device.CPU):
        raise ExportOptionError(f"--device {device}: an exported model runs on gpu or cpu")
    if max_batch_size < 1 or version < 1 or instances < 1:
        raise ExportOptionError("--max-batch, --version and --instances must be at least 1")
    if max_tile_voxels is not None and max_tile_voxels < 1:
        raise ExportOptionError(f"--max-tile-voxels {max_tile_voxels}: give the voxels of the largest tile, at least 1")
    backends = BACKENDS.get(backend)
    if backends is None:
        raise ExportOptionError(f"--backend {backend!r}: choose {', '.join(BACKENDS)}")
    try:
        check_destination(repository)
    except OSError as e:
        raise _unwritable(repository, e) from e
    checkpoint = load_source(checkpoint_path, trust=trust_checkpoint)
    network = build_network(checkpoint.cfg["MODEL"])
    levels = 1 + len(checkpoint.cfg["MODEL"]["DIMS"]) // 2  # stride-2 convs from input to bottom
    parameters, sources = parameters_for(checkpoint, minimum_size=2**levels, **parameter_overrides)
    load_weights(network, checkpoint.state_dict)
    head = InferenceHead(network, parameters.prob_threshold, parameters.skeleton_threshold).eval()
    scripted, warnings = _script_if_wanted(head, backends)
    backends = [kind for kind in backends if scripted is not None or kind is not Backend.LIBTORCH]
    reference = verify_scripted(head, scripted, parameters.crop) if scripted is not None else reference_answer(head, parameters.crop)
    program = export_program(GraphHead(head), parameters.minimum_size, INPUT.name)
    ir = convert_head(head, parameters.minimum_size, program) if backends != [Backend.ONNX] else None

    cfg_yaml = cfg_to_yaml(checkpoint.cfg)
    shape = network_from_cfg(checkpoint.cfg)
    variants = []
    for kind in backends:
        suffix = SUFFIXES.get(kind, "")
        model_name = name + suffix if len(backends) > 1 else name
        batch = 1 if kind is Backend.OPENVINO else max_batch_size  # see build_model_config
        tile_cap = max_tile_voxels if max_tile_voxels is not None else (
            estimate_tile_voxels(shape, DEVICE_MEMORY, batch) if shape is not None else None)
        config = build_model_config(
            model_name,
            backend=kind,
            device=device,
            max_batch_size=max_batch_size,
            parameters=parameters,
            cfg_yaml=cfg_yaml,
            instances=instances,
            torch_version=str(torch.__version__),
            max_tile_voxels=tile_cap,
        )
        files = tuple(f for f in VARIANT_FILES[kind] if scripted is not None or f != "model.pt")
        variants.append(ModelVariant(model_name, config, python_backend=kind is Backend.PYTHON, files=files))

    def save_files(folder: Path) -> None:
        if scripted is not None:
            torch.jit.save(scripted, str(folder / "model.pt"))
        if ir is not None:
            save_ir(ir, folder / IR_FILES[0])
            verify_ir(reference, folder / IR_FILES[0])
        if Backend.ONNX in backends:
            save_onnx(program, folder / "model.onnx", INPUT.name, [spec.name for spec in OUTPUTS])
            verify_onnx(reference, folder / "model.onnx")

    try:
        paths = write_models(repository, variants, save_files, version)
    except OSError as e:
        raise _unwritable(repository, e) from e
    return ExportResult(
        models=list(zip(paths, backends)),
        parameters=parameters,
        sources=sources,
        max_batch_size=max_batch_size,
        device=device,
        torch_version=str(torch.__version__),
        warnings=tuple(warnings),
    )


def _unwritable(repository: Path, error: OSError) -> ExportError:
    return ExportError(f"cannot write the model repository {repository}: {error.strerror or error} — choose a writable --repository")


def _script_if_wanted(head: InferenceHead, backends: list[Backend]) -> tuple[torch.jit.ScriptModule | None, list[str]]:
    """The head in TorchScript, when a variant holds ``model.pt``; None and one warning line
    when TorchScript is unavailable (deprecated upstream; a torch may drop or refuse it): the
    libtorch variant is skipped, the others run the IR, which comes from ``torch.export``.

    Raises
    ------
    ExportError
        TorchScript is unavailable and the libtorch variant was the only one asked for.
    """
    if backends == [Backend.ONNX]:
        return None, []
    try:
        return script_head(head), []
    except Exception as e:  # whatever torch.jit raises: the IR does not need it
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if backends == [Backend.LIBTORCH]:
            raise ExportError(f"TorchScript is unavailable in this torch ({detail}); the libtorch variant needs it — export --backend python or openvino") from e
        skipped = "the libtorch variant (model.pt) is skipped; " if Backend.LIBTORCH in backends else ""
        return None, [f"TorchScript is unavailable in this torch ({detail}): {skipped}the other variants run the OpenVINO IR from torch.export"]
