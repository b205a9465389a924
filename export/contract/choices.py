"""The closed choices export and the client share, as ``str`` enums: where a model or its
post-processing runs (``Device``) and which Triton backend serves a model (``Backend``).

A member equals and prints as its text (``Device.GPU == "gpu"``), so it crosses a process
boundary, a model config, a fingerprint or a message unchanged.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["Backend", "Choice", "Device"]


class Choice(str, Enum):
    """A closed set of option values; prints as its text."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @classmethod
    def texts(cls) -> tuple[str, ...]:
        return tuple(str(m.value) for m in cls)


class Device(Choice):
    """Where work runs: a GPU when there is one (``auto``; the client's post-processing only),
    the CPU, or a GPU. An exported model's instance kind is ``CPU`` or ``GPU``."""

    AUTO = "auto"
    CPU = "cpu"
    GPU = "gpu"


class Backend(Choice):
    """The Triton backend that serves an exported model: ``libtorch`` runs ``model.pt``
    natively, ``python`` runs the IR with OpenVINO (else ``model.pt`` with torch), ``openvino``
    is Triton's OpenVINO backend (CPU only), ``onnx`` Triton's ONNX Runtime backend (``model.onnx``;
    its TensorRT execution provider on GPU sites)."""

    LIBTORCH = "libtorch"
    PYTHON = "python"
    OPENVINO = "openvino"
    ONNX = "onnx"
