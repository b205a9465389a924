"""Prove an exported ONNX file is the same model as the eager head, with ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import torch

from .contract.wire import INPUT
from .errors import ExportError, VerificationError
from .torchscript import Reference, matches_reference

__all__ = ["run_onnx", "verify_onnx"]


def run_onnx(path: Path, batch) -> list:
    """``path``'s outputs for ``batch`` (a NumPy array for its one input), on ONNX Runtime's CPU provider."""
    try:
        import onnxruntime
    except ImportError as e:
        raise ExportError(f"cannot import onnxruntime ({e}): install the bioimageio extra (pip install 'skoots-triton[bioimageio]')") from e
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch})


def verify_onnx(reference: Reference, path: Path) -> None:
    """Raise `VerificationError` unless the ONNX head's outputs on the reference crop match the
    eager head's as closely as TorchScript's and the IR's must."""
    outputs = run_onnx(path, reference.crop.numpy())
    if not matches_reference(reference, tuple(torch.from_numpy(o) for o in outputs)):
        raise VerificationError(f"the ONNX model's outputs differ from the eager head ({INPUT.name} on one crop); nothing was written")
