"""In-process inference runtimes for ``segment`` without ``--url``: which one runs, and how.

``auto`` takes the fastest the machine has: TorchScript on a CUDA GPU (under FP16 autocast, as
the libtorch model on Triton runs), else the OpenVINO IR on the CPU when the model has one and
``openvino`` imports, else TorchScript on the CPU. Every runtime answers one FP16 batch
``[B, 1, X, Y, Z]`` with the wire contract's NumPy arrays, one crop at a time.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .choices import Precision, Runtime, choice
from .errors import DeviceError, InputError, ModelError

__all__ = [
    "TORCHSCRIPT_FILE", "IR_FILE", "WEIGHTS_FILE", "Outputs", "all_cores", "choose_runtime", "check_precision",
    "TorchScriptRuntime", "OpenVinoRuntime", "plan_runtime", "load_runtime",
]

TORCHSCRIPT_FILE = "model.pt"
IR_FILE = "model.xml"
WEIGHTS_FILE = "model.bin"

Outputs = tuple[np.ndarray, np.ndarray, np.ndarray]


def all_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def choose_runtime(requested: Runtime | str, *, cuda: bool, openvino: bool, has_ir: bool, has_torchscript: bool, where: Path) -> Runtime:
    """The runtime to run for ``--runtime requested`` on this machine; raises for one that cannot.

    ``cuda``: a CUDA GPU is usable; ``openvino``: the package imports; ``has_ir`` /
    ``has_torchscript``: the model's version directory ``where`` holds ``model.xml`` / ``model.pt``.
    """
    requested = choice(Runtime, requested, "--runtime")
    if requested is Runtime.AUTO:
        if cuda and has_torchscript:
            return Runtime.CUDA
        if (openvino and has_ir) or not has_torchscript:
            requested = Runtime.OPENVINO  # or the error that says what is missing
        else:
            return Runtime.TORCHSCRIPT
    if requested is Runtime.CUDA and not cuda:
        raise DeviceError("--runtime cuda: no usable CUDA GPU here (torch.cuda.is_available() is False) — use --runtime auto")
    if requested is Runtime.OPENVINO and not has_ir:
        raise ModelError(f"--runtime openvino: {where} has no {IR_FILE} — re-export the model with skoots export (it writes one)")
    if requested is Runtime.OPENVINO and not openvino:
        raise ModelError("--runtime openvino: the openvino package is not installed — pip install 'openvino>=2024.4', or use --runtime torchscript")
    if requested in (Runtime.CUDA, Runtime.TORCHSCRIPT) and not has_torchscript:
        raise ModelError(f"--runtime {requested}: {where} has no {TORCHSCRIPT_FILE} (an OpenVINO-backend model) — use --runtime openvino")
    return requested


def check_precision(precision: Precision | str, runtime: Runtime | str, cpu_has_bf16: Callable[[], bool]) -> None:
    """BF16 only on OpenVINO, and only on CPUs that compute it natively (AVX512_BF16 or AMX)."""
    precision, runtime = choice(Precision, precision, "--precision"), choice(Runtime, runtime, "--runtime")
    if precision is Precision.BF16 and runtime is not Runtime.OPENVINO:
        raise InputError(f"--precision bf16 runs on OpenVINO only, not {runtime} — drop it, or use --runtime openvino")
    if precision is Precision.BF16 and not cpu_has_bf16():
        raise DeviceError("--precision bf16: this CPU has no native BF16 (AVX512_BF16 or AMX) — drop --precision bf16")


class TorchScriptRuntime:
    """The exported ``model.pt`` on the CPU or a CUDA GPU (the head applies FP16 autocast there)."""

    def __init__(self, path: Path, device: str, threads: int) -> None:
        import torch

        self._torch = torch
        self._device = torch.device(device)
        if device == "cpu":
            torch.set_num_threads(threads)
        try:
            self._module = torch.jit.load(str(path), map_location=self._device).eval()
        except (RuntimeError, ValueError, OSError) as e:
            reason = str(e).splitlines()[0].split(". ")[0].rstrip(".")  # torch adds paragraphs of advice
            raise ModelError(f"cannot load {path}: {reason} — re-export the model") from e
        self.description = (
            "TorchScript on CUDA (FP16 autocast)" if device == "cuda" else f"TorchScript FP32 on CPU, {threads} threads"
        )

    def __call__(self, batch: np.ndarray) -> Outputs:
        with self._torch.inference_mode():
            outputs = self._module(self._torch.from_numpy(batch).to(self._device))
        return tuple(o.cpu().numpy() for o in outputs)


class OpenVinoRuntime:
    """The exported IR on the CPU, in FP32 unless asked for BF16 (``INFERENCE_PRECISION_HINT``
    set explicitly: the CPU plugin would pick BF16 by itself on CPUs that have it)."""

    def __init__(self, path: Path, threads: int, precision: str) -> None:
        from skoots_export.contract.openvino_runtime import OpenVinoHead

        try:
            self._head = OpenVinoHead(str(path), threads=threads, precision=precision)
        except RuntimeError as e:  # openvino's read_model on a broken or missing file
            raise ModelError(f"cannot load {path}: OpenVINO cannot read it or its {WEIGHTS_FILE} — re-export the model") from e
        self._requested = precision.upper()
        self._threads = threads

    @property
    def description(self) -> str:
        """What runs the model: the precision read back from the compiled model once a crop
        has run (the summary is written after the run), the requested one before."""
        return f"OpenVINO {self._head.compiled_precision() or self._requested} on CPU, {self._threads} threads"

    def __call__(self, batch: np.ndarray) -> Outputs:
        return self._head(batch)


def plan_runtime(version_dir: Path, requested: Runtime | str = Runtime.AUTO, *, threads: int | None = None,
                 precision: Precision | str = Precision.FP32) -> tuple[Runtime, int]:
    """The runtime that `load_runtime` would load for ``requested``, and its threads, with
    every check it makes but without loading the model (raises what it would raise)."""
    if threads is not None and threads < 1:
        raise InputError(f"--threads {threads}: give at least 1")
    import torch

    runtime = choose_runtime(
        requested,
        cuda=torch.cuda.is_available(),
        openvino=importlib.util.find_spec("openvino") is not None,
        has_ir=(version_dir / IR_FILE).is_file(),
        has_torchscript=(version_dir / TORCHSCRIPT_FILE).is_file(),
        where=version_dir,
    )

    def cpu_has_bf16() -> bool:
        from skoots_export.contract.openvino_runtime import cpu_supports_bf16

        return cpu_supports_bf16()

    check_precision(precision, runtime, cpu_has_bf16)
    return runtime, threads or all_cores()


def load_runtime(version_dir: Path, requested: Runtime | str = Runtime.AUTO, *, threads: int | None = None,
                 precision: Precision | str = Precision.FP32):
    """The runtime ``requested`` for the model in ``version_dir``, loaded; ``threads`` defaults to
    all cores. The returned object is called with a batch and has a ``description``."""
    runtime, threads = plan_runtime(version_dir, requested, threads=threads, precision=precision)
    if runtime is Runtime.OPENVINO:
        return OpenVinoRuntime(version_dir / IR_FILE, threads, Precision(precision).value)
    return TorchScriptRuntime(version_dir / TORCHSCRIPT_FILE, "cuda" if runtime is Runtime.CUDA else "cpu", threads)
