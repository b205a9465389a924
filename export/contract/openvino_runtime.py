"""Run an exported OpenVINO IR (``model.xml`` + ``model.bin``), each crop alone, on the CPU's streams.

Needs only NumPy and OpenVINO: export copies this file beside ``model.py`` into a Python-backend
model's version directory, where it must import nothing from this project, and the embedded
runtime of ``skoots-client`` imports it as ``skoots_export.contract.openvino_runtime``.

The IR has batch 1 and any crop shape. Each crop runs alone (batch independence, docs/SEMANTICS.md), on
a model compiled for that exact shape: the CPU plugin is faster on static shapes, and the crop
shape is fixed except for volumes smaller than a crop, so the cache holds one or two entries.
"""

from __future__ import annotations

import collections
import queue
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

    ``hint`` is OpenVINO's ``PERFORMANCE_HINT``. ``THROUGHPUT`` splits the threads into streams
    (two of one thread on 2 cores), each running one crop: the crops of a batch, and the
    batches of callers in several threads, run side by side, one infer request per stream.
    Measured on 2 cores of an AMD EPYC (AVX2), under load, crops in flight
    (benchmarks/openvino_settings.py, "OpenVINO settings" in benchmarks/RESULTS.md): THROUGHPUT
    1.71x the crops/s of ``LATENCY`` (one request, both threads on each crop) on the demo
    model, answers bitwise equal. ``LATENCY`` (the default) is for one crop at a time: every
    thread on it.
    """

    def __init__(self, xml_path: str, *, threads: int | None = None, precision: str = "fp32", hint: str = "LATENCY") -> None:
        self._core = ov.Core()
        # The weights named: openvino then reads the file as IR only, and does not try (and
        # log on stderr about) its other frontends when the file is broken.
        self._model = self._core.read_model(str(xml_path), str(xml_path)[: -len(".xml")] + ".bin")
        self._config: dict[str, str | int] = {"INFERENCE_PRECISION_HINT": PRECISIONS[precision], "PERFORMANCE_HINT": hint}
        if threads:
            self._config["INFERENCE_NUM_THREADS"] = int(threads)
        self._compiled: dict[tuple[int, ...], ov.CompiledModel] = {}
        self._idle: dict[tuple[int, ...], queue.SimpleQueue[ov.InferRequest]] = {}
        self._lock = threading.Lock()  # guards compiling; requests are taken from the idle queues

    def _requests(self, shape: tuple[int, ...]) -> queue.SimpleQueue[ov.InferRequest]:
        """The idle infer requests of the model compiled for ``shape`` (compiled on first use)."""
        with self._lock:
            idle = self._idle.get(shape)
            if idle is None:
                model = self._model.clone()
                model.reshape({model.input(0): ov.PartialShape([1, *shape])})
                compiled = self._core.compile_model(model, "CPU", self._config)
                idle = queue.SimpleQueue()
                for _ in range(max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))):
                    idle.put(compiled.create_infer_request())
                self._compiled[shape], self._idle[shape] = compiled, idle
        return idle

    def compiled_precision(self, crop: tuple[int, int, int] | None = None) -> str | None:
        """The precision the CPU plugin computes in (``FP32`` / ``BF16``), read back from the
        compiled model rather than taken from the request; ``crop`` [X, Y, Z]: compile for it
        first (as the first crop of that shape would). None before any model was compiled."""
        if crop is not None:
            self._requests((1, *crop))
        with self._lock:
            hints = {describe_precision(c.get_property("INFERENCE_PRECISION_HINT")) for c in self._compiled.values()}
        return "/".join(sorted(hints)) or None

    @property
    def streams(self) -> int:
        """Crops the compiled models run side by side (1 before any was compiled)."""
        with self._lock:
            return max((int(c.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")) for c in self._compiled.values()), default=1)

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        idle = self._requests(tuple(batch.shape[1:]))
        answers: list[tuple[np.ndarray, ...]] = [()] * len(batch)
        running: collections.deque[tuple[int, ov.InferRequest]] = collections.deque()

        def finish() -> None:
            index, request = running.popleft()
            try:
                request.wait()
                answers[index] = tuple(request.get_tensor(name).data.copy() for name in OUTPUT_NAMES)
            finally:
                idle.put(request)

        try:
            for index, crop in enumerate(batch):
                request = None
                while request is None:  # a free stream, else the oldest crop running finishes first
                    try:
                        request = idle.get(block=not running)
                    except queue.Empty:
                        finish()
                request.start_async({0: np.ascontiguousarray(crop[None])})
                running.append((index, request))
            while running:
                finish()
        finally:
            while running:  # an error: every request goes back idle, its crop ended
                running[0][1].wait()
                idle.put(running.popleft()[1])
        return tuple(np.concatenate(parts) for parts in zip(*answers))
