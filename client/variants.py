"""One export served as several variants (libtorch, OpenVINO, Python backend): what runs each,
and which is fastest where."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from skoots_export.contract.choices import Backend

__all__ = ["KIND_PREFERENCE", "CPU_KIND_PREFERENCE", "on_cpu_only", "model_kind"]

# When one export is served as several variants, which to use: libtorch runs model.pt natively
# (GPU servers), OpenVINO is the next fastest on CPUs, the Python backend is the fallback.
# The ONNX variant (opt-in, ONNX Runtime's CUDA or TensorRT providers) after libtorch: not measured here.
KIND_PREFERENCE = (Backend.LIBTORCH, Backend.ONNX, Backend.OPENVINO, Backend.PYTHON)
# On a server whose models all run on the CPU, libtorch is the slowest: the Python-backend model
# runs the exported IR with OpenVINO there (2.08 against 0.86 crops/s measured on two cores).
CPU_KIND_PREFERENCE = (Backend.OPENVINO, Backend.PYTHON, Backend.ONNX, Backend.LIBTORCH)


def on_cpu_only(configs: Sequence[Any]) -> bool:
    """Whether every instance group of ``configs`` (as a server reports them, kinds resolved)
    runs on the CPU: a server without GPUs, or one told to use none."""
    groups = [group for config in configs for group in config.instance_group]
    return bool(groups) and all(group.kind == group.KIND_CPU for group in groups)


def model_kind(config: Any) -> Backend:
    """``libtorch``, ``onnx``, ``openvino`` or ``python``: what runs the model, from its config."""
    if config.platform == "pytorch_libtorch" or config.backend == "pytorch":
        return Backend.LIBTORCH
    if "onnxruntime" in (config.platform, config.backend) or config.platform == "onnxruntime_onnx":
        return Backend.ONNX
    if "openvino" in (config.platform, config.backend) or config.name.endswith("_openvino"):
        return Backend.OPENVINO
    return Backend.PYTHON
