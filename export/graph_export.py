"""Capture a module as a graph with ``torch.export`` (an ExportedProgram) and write it as ONNX.

TorchScript is deprecated upstream ("use torch.export"); every exported form but the libtorch
variant's ``model.pt`` starts here: the OpenVINO IR (openvino_ir.py), the ONNX variant and the
zoo package's ONNX weights. Batch and the three spatial axes stay symbolic: the network takes
any crop of at least ``minimum_size`` voxels per axis (its stride-2 convolutions need it).
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from .errors import ExportError

__all__ = ["ONNX_OPSET", "export_program", "save_onnx"]

# The ONNX opset the dynamo exporter writes natively in torch 2.13 (no version conversion step);
# ONNX Runtime reads it from 1.17 on.
ONNX_OPSET = 20


def export_program(module: nn.Module, minimum_size: int, input_name: str = "input__0", dtype: torch.dtype = torch.float16) -> torch.export.ExportedProgram:
    """``torch.export`` of ``module`` (one input ``[B, 1, X, Y, Z]``) with batch and crop axes symbolic.

    The example is two crops twice the minimum: at the minimum the bottom of the U is one voxel
    wide, and ``torch.export`` would specialise every axis (and a batch of one) to that size.
    """
    example = torch.zeros((2, 1, *(2 * minimum_size,) * 3), dtype=dtype)
    # Dim.DYNAMIC, not named Dims with a minimum: torch.export derives the ranges itself (the crop
    # axes from minimum_size up), and refuses a named Dim whose range it cannot prove.
    axes = dict.fromkeys((0, 2, 3, 4), torch.export.Dim.DYNAMIC)
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch's own pytree deprecations
            # A copy: weights loaded under inference_mode are inference tensors, which torch.export refuses.
            return torch.export.export(copy.deepcopy(module).eval(), (example,), dynamic_shapes={input_name: axes})
    except Exception as e:  # torch.export raises many kinds; one line names the step
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"torch.export could not capture the network ({first}) — report this with the checkpoint's cfg") from e


def save_onnx(program: torch.export.ExportedProgram, path: Path, input_name: str, output_names: list[str]) -> None:
    """Write ``program`` as one ONNX file (weights inside) at opset `ONNX_OPSET`; the exporter's
    progress lines are kept off the terminal."""
    try:
        import onnxscript  # noqa: F401 - the dynamo exporter needs it; say so before it fails deep inside
    except ImportError as e:
        raise ExportError(f"cannot import onnxscript ({e}): install the bioimageio extra (pip install 'skoots-triton[bioimageio]') to write ONNX") from e
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        onnx_program = torch.onnx.export(
            program, (), None, dynamo=True, opset_version=ONNX_OPSET, input_names=[input_name], output_names=output_names,
            external_data=False, verbose=False,
        )
    assert onnx_program is not None
    onnx_program.save(str(path), external_data=False)
