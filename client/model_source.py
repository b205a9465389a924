"""Where a model's constants and answers come from: a Triton server or a local repository.

Both kinds of endpoint expose ``infer(batch) -> outputs`` for one FP16 batch
``[B, 1, X, Y, Z]``, so batching, dispatch and stitching are the same code for either.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skoots_export.contract.net import pem_problem
from skoots_export.contract.wire import (
    INPUT,
    PROBABILITY,
    SKELETON,
    VECTORS,
    config_from_text,
)

from .address import grpc_address
from .answers import answer_problem, answer_size_problem
from .errors import InferenceTimeoutError, InputError, ModelError, ServerUnavailableError
from .model_info import ModelInfo, check_config, choose_model
from .shared_memory import SHARED_MEMORY_CHOICES, SharedMemoryPool, check_local
from .triton_client import grpc_client, raw_infer_call, ready_configs, ready_models, status_text, unreachable_error
from .triton_wire import Exchange, parse_reply, rpc_error
from .variants import CPU_KIND_PREFERENCE, KIND_PREFERENCE, on_cpu_only

__all__ = [
    "repository_configs", "zoo_repository", "embedded_model", "EmbeddedModel", "MAX_BACKOFF",
    "RETRY_FOR", "Tls", "TritonEndpoint",
]


def repository_configs(repository: Path) -> list[Any]:
    """The parsed configs of the models in ``repository`` that have a ``<version>/model.pt`` or
    ``model.xml`` (what runs in-process; an export without TorchScript has the IR only);
    unreadable configs are skipped."""
    configs = []
    for config_path in sorted(Path(repository).glob("*/config.pbtxt")):
        exported = [*config_path.parent.glob("*/model.pt"), *config_path.parent.glob("*/model.xml")]
        if not any(p.parent.name.isdigit() for p in exported):
            continue
        try:
            configs.append(config_from_text(config_path.read_text()))
        except Exception:  # noqa: BLE001 - protobuf's ParseError and decoding errors: not a candidate
            continue
    return configs


def zoo_repository(package: Path) -> Path:
    """The model repository of a SKOOTS BioImage Model Zoo package (``skoots export --bioimageio``),
    to run in-process: exported once (the Python-backend variant, CPU) into
    ``$XDG_CACHE_HOME/skoots-triton/zoo/<the package's SHA-256>`` and reused; a package that is not
    a SKOOTS model is one `ModelError` line. ``skoots export`` runs in a subprocess: the client
    takes only the contract from the export package."""
    import hashlib
    import os
    import subprocess
    import sys

    digest = hashlib.sha256(Path(package).read_bytes()).hexdigest()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "skoots-triton" / "zoo" / digest
    repository = base / "model_repository"
    if not any(repository.glob("*/config.pbtxt")):  # export writes all or nothing
        command = [sys.executable, "-m", "skoots_export.cli", "export", str(package), "--repository", str(repository),
                   "--backend", "python", "--device", "cpu", "--max-batch", "1"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or [f"skoots export exited with status {done.returncode}"]
            raise ModelError(f"--model {package}: {lines[-1].removeprefix('error: ')}")
    return repository


def embedded_model(repository: Path, model: str | None = None) -> tuple[ModelInfo, Path]:
    """The repository's model ``model`` (None: its SKOOTS model, see `choose_model`) with
    its config checked, and its newest version directory: what `EmbeddedModel` loads,
    read without loading it."""
    from .runtimes import IR_FILE, TORCHSCRIPT_FILE

    if model is None:
        if not Path(repository).is_dir():
            raise ModelError(f"no model repository at {repository} — run skoots export first, or pass --repository")
        model = choose_model(repository_configs(repository), f"in repository {repository}")
    model_dir = Path(repository) / model
    config_path = model_dir / "config.pbtxt"
    if not config_path.is_file():
        found = sorted(p.parent.name for p in Path(repository).glob("*/config.pbtxt")) if Path(repository).is_dir() else []
        hint = f"models there: {', '.join(found)}" if found else "run skoots export first"
        raise ModelError(f"no model '{model}' in repository {repository} ({hint})")
    try:
        config = config_from_text(config_path.read_text())
    except Exception as e:  # protobuf's ParseError and decoding errors
        raise ModelError(f"cannot parse {config_path}: {str(e).splitlines()[0]}") from e
    info = check_config(config, str(model_dir))
    exported = (TORCHSCRIPT_FILE, IR_FILE)
    versions = sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and any((p / f).is_file() for f in exported))
    if not versions:
        raise ModelError(f"{model_dir} has no <version>/model.pt or model.xml; re-export the model")
    return info, model_dir / str(versions[-1])


class EmbeddedModel:
    """The exported model run in this process (the default when no ``--url`` is given), on the
    runtime `runtimes.load_runtime` picks: ``runtime`` is auto, openvino, torchscript or
    cuda; ``threads`` (default: all cores) and ``precision`` (fp32, or bf16 on OpenVINO)."""

    concurrency = 1
    # What runs the model, as the summary names it after the run (OpenVINO's precision as compiled).
    runtime = property(lambda self: self._run.description)

    def __init__(
        self,
        repository: Path,
        model: str | None = None,
        *,
        runtime: str = "auto",
        threads: int | None = None,
        precision: str = "fp32",
    ) -> None:
        """``model`` None: the repository's SKOOTS model (see `choose_model`)."""
        from .runtimes import load_runtime

        self.info, version_dir = embedded_model(repository, model)
        self._run = load_runtime(version_dir, runtime, threads=threads, precision=precision)
        self.name = f"embedded:{version_dir}"

    def infer(self, batch: np.ndarray, probability: bool = False) -> tuple[np.ndarray, ...]:
        vectors, skeleton, prob = self._run(batch)
        return (vectors, skeleton, prob) if probability else (vectors, skeleton)


# Seconds between retries double from TritonEndpoint.backoff up to this (then jittered ±50 %).
MAX_BACKOFF = 30.0
# How long a failing request is retried by default: longer than a Triton restart (11-25 s
# measured here, model load included), so a restarted server costs a pause, not the run.
RETRY_FOR = 60.0

# NOT_FOUND too: the model was ready when we connected, so a server answering "unknown model"
# is unloading it on shutdown or has not loaded it yet after a restart.
_RETRYABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "NOT_FOUND")


@dataclass(frozen=True)
class Tls:
    """gRPC over TLS: the CA certificate to trust (None: the system's) and, for servers that
    require one, the client's own key and certificate chain. PEM files."""

    root_cert: Path | None = None
    private_key: Path | None = None
    cert_chain: Path | None = None

    def check(self) -> None:
        """Fail before connecting: files missing or unreadable, a key without its chain."""
        if (self.private_key is None) != (self.cert_chain is None):
            raise InputError("--private-key and --cert-chain come together: the client's key and the certificate for it")
        for option, path in (("--root-cert", self.root_cert), ("--private-key", self.private_key), ("--cert-chain", self.cert_chain)):
            problem = pem_problem(option, path)
            if problem:
                raise InputError(problem)


class TritonEndpoint:
    """One Triton server over gRPC (over TLS with ``tls``), with a per-request deadline and
    retries with backoff: a failing request is sent again until ``retry_for`` seconds have
    passed since its first failure (at least once), or ``retries`` times when that is given."""

    def __init__(
        self,
        url: str,
        model: str | None = None,
        *,
        concurrency: int = 4,
        timeout: float = 120.0,
        retries: int | None = None,
        retry_for: float = RETRY_FOR,
        backoff: float = 0.5,
        tls: Tls | None = None,
        shared_memory: str = "none",
    ) -> None:
        """``shared_memory`` "system": requests and answers through this machine's shared memory
        (`SharedMemoryPool`), for a server on a loopback address."""
        import grpc  # type: ignore[import-untyped]
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        self.url, tls_scheme = grpc_address(url)
        if shared_memory not in SHARED_MEMORY_CHOICES:
            raise InputError(f"--shared-memory {shared_memory}: choose one of {', '.join(SHARED_MEMORY_CHOICES)}")
        if shared_memory == "system":
            check_local(self.url)
        if tls is None and tls_scheme:
            tls = Tls()
        if tls is not None:
            tls.check()
        self.tls = tls
        self.model = model  # None until _connect picks the server's SKOOTS model
        self.concurrency = concurrency
        self.timeout = timeout
        self.retries = retries
        self.retry_for = retry_for
        self.resent = 0  # requests sent again after a failure or a deadline (for the summary)
        self.backoff = backoff
        self._grpc = grpcclient
        self._error = InferenceServerException
        self._rpc_error = grpc.RpcError
        self._lock = threading.Lock()
        self._client = self._new_client()
        self._call = (self._client, raw_infer_call(self._client))
        self.info = self._connect()
        self.name = f"{self.url}/{self.model}"
        self.shared_memory: SharedMemoryPool | None = None
        if shared_memory == "system":
            self.shared_memory = SharedMemoryPool(self._register_region, self._unregister_region, self.name)

    def _new_client(self) -> Any:
        return grpc_client(self.url, self.tls)

    def _reconnect(self, broken: Any) -> None:
        """Replace a channel that saw the server go away: gRPC's own reconnect backoff grows to
        minutes, far longer than a server restart takes."""
        with self._lock:
            if self._client is broken:
                self._client = self._new_client()
                broken.close()

    def _register_region(self, name: str, key: str, byte_size: int) -> None:
        self._client.register_system_shared_memory(name, key, byte_size, client_timeout=10)

    def _unregister_region(self, name: str) -> None:
        self._client.unregister_system_shared_memory(name, client_timeout=10)

    def _send(self, client: Any, request: bytes) -> bytes:
        """One ``ModelInfer`` call of serialised bytes on ``client``'s channel; gRPC errors as
        tritonclient raises them."""
        current, call = self._call
        if current is not client:
            call = raw_infer_call(client)
            self._call = (client, call)
        try:
            return call(request, timeout=self.timeout)
        except self._rpc_error as e:
            raise rpc_error(e) from e

    def _connect(self) -> ModelInfo:
        try:
            live = self._client.is_server_live(client_timeout=10)
        except self._error as e:
            raise unreachable_error(self.url, e, self.tls) from e
        if not live:
            raise ServerUnavailableError(f"Triton at {self.url} is not live yet; retry when it is")
        self.choice = ""  # why this model, when the client chose it (for the summary)
        if self.model is None:
            configs = self._ready_configs()
            where = f"ready on {self.url}"
            self.model = choose_model(configs, where, CPU_KIND_PREFERENCE if on_cpu_only(configs) else KIND_PREFERENCE)
            usual = choose_model(configs, where)
            if usual != self.model:
                self.choice = (f"chosen over {usual} (libtorch): the server runs its models on the CPU, where the "
                               "Python-backend model (OpenVINO IR) and OpenVINO are faster")
        try:
            ready = self._client.is_model_ready(self.model, client_timeout=10)
        except self._error:
            ready = False
        if not ready:
            names = self._ready_models()
            raise ModelError(
                f"model '{self.model}' is not loaded or not ready on {self.url}"
                + (f" (ready: {', '.join(names)})" if names else "")
                + " — pass --model or load it"
            )
        try:
            config = self._client.get_model_config(self.model, client_timeout=10).config
        except self._error as e:
            raise ModelError(f"cannot read the config of '{self.model}' from {self.url}: {e.message()}") from e
        return check_config(config, f"{self.url}/{self.model}")

    def _ready_models(self) -> list[str]:
        return ready_models(self._client)

    def _ready_configs(self) -> list[Any]:
        return ready_configs(self._client)

    def infer(
        self, batch: np.ndarray, probability: bool = False, timings: dict[str, float] | None = None
    ) -> tuple[np.ndarray, ...]:
        """Send one FP16 batch; the answers are read-only views of the reply.

        ``timings``, when given, receives the seconds spent serialising the batch, in gRPC
        (send, server, receive, including any retries) and deserialising the answers.
        """
        started = time.perf_counter()
        specs = [VECTORS, SKELETON] + ([PROBABILITY] if probability else [])
        exchange = Exchange(self.model or "", INPUT.name, batch, specs, self.shared_memory)
        serialised = time.perf_counter()
        attempt = 0
        give_up_at = None  # set at the first failure: the retry budget runs from there
        while True:
            client = self._client
            try:
                reply = parse_reply(self._send(client, exchange.request))
                received = time.perf_counter()
            except self._error as e:
                status = status_text(e)
                if status not in _RETRYABLE:
                    raise ModelError(f"{self.name} refused a request: {e.message()}") from e
                if status == "UNAVAILABLE":
                    self._reconnect(client)
                give_up_at = give_up_at or time.monotonic() + self.retry_for
                if self._out_of_retries(attempt, give_up_at):
                    kind = InferenceTimeoutError if status == "DEADLINE_EXCEEDED" else ServerUnavailableError
                    raise kind(f"{self.name}: {status} after {attempt + 1} attempts in {self._failing_for(give_up_at):.1f}s — "
                               "check the server, or raise --timeout/--retry-for") from e
            else:
                short = answer_size_problem(reply.header.outputs, exchange.sizes(reply), specs, exchange.shape)
                unwritten = exchange.unwritten()
                short = short or (f"{unwritten} not written into shared memory" if unwritten else None)
                if short is not None:  # a broken server, not a fault that passes: no retry
                    raise ModelError(f"{self.name} answered with {short} — its model is broken; a Python-backend model "
                                     "answers with empty outputs when its environment has NumPy 2: check the server's "
                                     "log, or restart it with skoots serve (which checks its environment)")
                answer = exchange.arrays(reply)  # read-only views of the reply (or the region), never copies
                problem = answer_problem(answer, specs, exchange.shape)
                if problem is None:
                    if timings is not None:
                        timings["serialise"] = serialised - started
                        timings["send_receive"] = received - serialised
                        timings["deserialise"] = time.perf_counter() - received
                    return answer  # type: ignore[return-value]  # answer_problem: no None left
                # Seen from the Python backend after a stall: a response without its outputs.
                # The request is sent again; a server that keeps doing it is broken.
                give_up_at = give_up_at or time.monotonic() + self.retry_for
                if self._out_of_retries(attempt, give_up_at):
                    raise ModelError(f"{self.name} answered {attempt + 1} times with {problem} — check the server's log")
            pause = min(self.backoff * 2**attempt, MAX_BACKOFF) * (0.5 + random.random())
            time.sleep(max(0.0, min(pause, give_up_at - time.monotonic())))
            attempt += 1
            with self._lock:
                self.resent += 1

    def _out_of_retries(self, attempt: int, give_up_at: float) -> bool:
        if self.retries is not None:
            return attempt >= self.retries
        return attempt > 0 and time.monotonic() >= give_up_at

    def _failing_for(self, give_up_at: float) -> float:
        return time.monotonic() - give_up_at + self.retry_for

    def inference_statistics(self) -> list[dict[str, Any]]:
        """The server's cumulative statistics for this model, one entry per loaded version
        (``get_inference_statistics`` as JSON)."""
        try:
            stats = self._client.get_inference_statistics(self.model, as_json=True, client_timeout=10)
        except self._error as e:
            raise ServerUnavailableError(f"{self.name}: cannot read inference statistics ({status_text(e) or e.message()})") from e
        return list(stats.get("model_stats", []))

    def close(self) -> None:
        """Unregister and unlink any shared memory, then close the channel."""
        if self.shared_memory is not None:
            self.shared_memory.close()
        self._client.close()

