"""Run an exported OpenVINO IR (``model.xml`` + ``model.bin``) one crop at a time.

Needs only NumPy and OpenVINO: export copies this file beside ``model.py`` into a Python-backend
model's version directory, where it must import nothing from this project, and the embedded
runtime of ``skoots-client`` imports it as ``skoots_export.contract.openvino_runtime``.

The IR has batch 1 and any crop shape. Each crop runs alone (batch independence, docs/SEMANTICS.md), on
a model compiled for that exact shape: the CPU plugin is faster on static shapes, and the crop
shape is fixed except for volumes smaller than a crop, so the cache holds one or two entries.
"""

from __future__ import annotations

import threading

import numpy as np
import openvino as ov

__all__ = ["IR_FILE", "WEIGHTS_FILE", "OUTPUT_NAMES", "PRECISIONS", "cpu_supports_bf16", "describe_precision", "OpenVinoHead"]

IR_FILE = "model.xml"
WEIGHTS_FILE = "model.bin"
OUTPUT_NAMES = ("vectors__0", "skeleton__1", "probability__2")
PRECISIONS = {"fp32": "f32", "bf16": "bf16"}


def describe_precision(hint: object) -> str:
    """``FP32`` / ``BF16``: a compiled model's ``INFERENCE_PRECISION_HINT`` (an element type) as
    ``--precision`` names it."""
    text = hint.to_string() if isinstance(hint, ov.Type) else str(hint)
    return {"f32": "FP32", "bf16": "BF16", "f16": "FP16"}.get(text, text.upper())


def cpu_supports_bf16(core: ov.Core | None = None) -> bool:
    """Whether the CPU computes BF16 natively (AVX512_BF16 or AMX), as OpenVINO sees it."""
    core = core or ov.Core()
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoHead:
    """``head(batch FP16 [B, 1, X, Y, Z])`` → ``(vectors FP16, skeleton UINT8, probability FP16)``.

    ``precision`` is ``fp32`` (the default, asked for explicitly: the CPU plugin would pick BF16
    by itself on CPUs that have it) or ``bf16``; ``threads`` caps inference threads (None: all).

    ``PERFORMANCE_HINT LATENCY``, set explicitly: one stream, every thread on each crop.
    Measured against ``THROUGHPUT`` (two streams of one thread on 2 cores, an async queue of
    crops in flight; benchmarks/openvino_settings.py, 2 cores of an AMD EPYC under load): 1.71x
    the crops/s on the demo model, but 0.97x on the real-size network (300x300x20 crops), where
    the streams also hold two crops' activations at once and a lone last crop runs on one
    thread. Answers are bitwise equal either way.
    """

    def __init__(self, xml_path: str, *, threads: int | None = None, precision: str = "fp32") -> None:
        self._core = ov.Core()
        # The weights named: openvino then reads the file as IR only, and does not try (and
        # log on stderr about) its other frontends when the file is broken.
        self._model = self._core.read_model(str(xml_path), str(xml_path)[: -len(".xml")] + ".bin")
        self._config: dict[str, str | int] = {"INFERENCE_PRECISION_HINT": PRECISIONS[precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            self._config["INFERENCE_NUM_THREADS"] = int(threads)
        self._requests: dict[tuple[int, ...], ov.InferRequest] = {}
        self._lock = threading.Lock()

    def _request(self, shape: tuple[int, ...]) -> ov.InferRequest:
        request = self._requests.get(shape)
        if request is None:
            model = self._model.clone()
            model.reshape({model.input(0): ov.PartialShape([1, *shape])})
            request = self._core.compile_model(model, "CPU", self._config).create_infer_request()
            self._requests[shape] = request
        return request

    def compiled_precision(self, crop: tuple[int, int, int] | None = None) -> str | None:
        """The precision the CPU plugin computes in (``FP32`` / ``BF16``), read back from the
        compiled model rather than taken from the request; ``crop`` [X, Y, Z]: compile for it
        first (as the first crop of that shape would). None before any model was compiled."""
        with self._lock:
            if crop is not None:
                self._request((1, *crop))
            if not self._requests:
                return None
            hints = {describe_precision(r.get_compiled_model().get_property("INFERENCE_PRECISION_HINT")) for r in self._requests.values()}
        return "/".join(sorted(hints))

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        answers = []
        with self._lock:  # one infer request per shape: calls take turns
            for crop in batch:
                request = self._request(tuple(crop.shape))
                request.infer({0: np.ascontiguousarray(crop[None])})
                answers.append(tuple(request.get_tensor(name).data.copy() for name in OUTPUT_NAMES))
        return tuple(np.concatenate(parts) for parts in zip(*answers))
