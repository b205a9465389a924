"""Convert the inference head to an OpenVINO IR and prove the IR is the same model.

The IR comes from the head's ``torch.export`` graph (graph_export.py), not from TorchScript.

The IR takes ``input__0`` (FP16 ``[1, 1, X, Y, Z]``, any crop shape) and returns the wire
contract's outputs by name and type — ``vectors__0`` FP16, ``skeleton__1`` UINT8,
``probability__2`` FP16 — with the threshold step inside, so a client cannot tell which runtime
answered. Batch 1: every runtime runs one crop at a time (docs/SEMANTICS.md, "Batch independence").
Weights stay FP32 (``save_model`` would halve them to FP16 by default).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .contract.openvino_runtime import OpenVinoHead
from .contract.wire import INPUT, OUTPUTS
from .errors import ExportError, VerificationError
from .graph_export import export_program
from .head import GraphHead, InferenceHead
from .torchscript import Reference, matches_reference

__all__ = ["convert_head", "save_ir", "verify_ir"]

if TYPE_CHECKING:
    import openvino


def _openvino():
    try:
        import openvino
    except ImportError as e:
        raise ExportError(
            f"cannot import openvino ({e}): install it (pip install 'openvino>=2024.4'); export writes the OpenVINO IR with it"
        ) from e
    return openvino


def convert_head(head: InferenceHead, minimum_size: int, program: torch.export.ExportedProgram | None = None) -> openvino.Model:
    """``head`` as an OpenVINO model at batch 1 with dynamic spatial axes, converted from the
    ``torch.export`` graph of its `GraphHead` (``program``, when already captured), not from
    TorchScript: the IR is made where TorchScript is unavailable too."""
    ov = _openvino()
    program = program if program is not None else export_program(GraphHead(head), minimum_size, INPUT.name)
    with warnings.catch_warnings():  # torch's pytree deprecations, raised inside the converter
        warnings.simplefilter("ignore", FutureWarning)
        model = ov.convert_model(program)
    model.reshape({model.input(0): ov.PartialShape([1, 1, -1, -1, -1])})
    model.input(0).get_tensor().set_names({INPUT.name})
    for output, spec in zip(model.outputs, OUTPUTS):
        output.get_tensor().set_names({spec.name})
    return model


def save_ir(model: openvino.Model, xml_path: Path) -> None:
    """``model.xml`` + ``model.bin`` beside it, weights in FP32."""
    _openvino().save_model(model, str(xml_path), compress_to_fp16=False)


def verify_ir(reference: Reference, xml_path: Path) -> None:
    """Run the saved IR (FP32) on the reference crop; raise `VerificationError` unless its
    thresholded outputs match the eager head's as closely as TorchScript's must."""
    outputs = OpenVinoHead(str(xml_path), precision="fp32")(reference.crop.numpy())
    if not matches_reference(reference, tuple(torch.from_numpy(o) for o in outputs)):
        raise VerificationError("the OpenVINO IR's outputs differ from the eager head; nothing was written")
