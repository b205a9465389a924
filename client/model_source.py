"""Where a model's constants and answers come from: a Triton server or a local repository.

Both kinds of endpoint expose ``infer(batch) -> outputs`` for one FP16 batch
``[B, 1, X, Y, Z]``, so batching, dispatch and stitching are the same code for either.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
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
    ModelParameters,
    config_from_text,
    contract_problems,
    parameters_from_config,
)

from .address import grpc_address, triton_http_service
from .answers import answer_problem, answer_size_problem
from .errors import ClientError, InferenceTimeoutError, InputError, ModelError, ServerUnavailableError, UrlError
from .triton_client import grpc_client, ready_configs, ready_models
from .variants import CPU_KIND_PREFERENCE, KIND_PREFERENCE, model_kind, on_cpu_only

__all__ = [
    "ModelInfo", "check_config", "choose_model", "repository_configs", "embedded_model", "EmbeddedModel", "MAX_BACKOFF",
    "RETRY_FOR", "Tls", "unreachable_error", "TritonEndpoint",
]


@dataclass(frozen=True)
class ModelInfo:
    """What the client learns about a model before sending anything."""

    name: str
    parameters: ModelParameters
    max_batch_size: int
    kind: str = "python"  # what runs it: libtorch, openvino or python (model_kind)


def check_config(config: Any, where: str) -> ModelInfo:
    """The model's constants from its Triton ``config``, or one line saying how it breaks the contract."""
    problems = contract_problems(config)
    if problems:
        raise ModelError(f"model at {where} does not speak the SKOOTS contract: {'; '.join(problems)} — re-export it with skoots export")
    try:
        parameters = parameters_from_config(config)
    except ValueError as e:
        raise ModelError(f"model at {where}: {e} — re-export it with skoots export") from e
    return ModelInfo(config.name, parameters, max(1, int(config.max_batch_size)), model_kind(config))


def choose_model(configs: Sequence[Any], where: str, preference: Sequence[str] = KIND_PREFERENCE) -> str:
    """The model to use when none was named: among ``configs``, those that speak the contract;
    one, or the variants of one export (equal parameters) by ``preference`` (kinds, best first:
    `KIND_PREFERENCE`, or `CPU_KIND_PREFERENCE` for a server without GPUs).

    Raises
    ------
    ModelError
        None speaks the contract, or several do and they are not one export's variants; the
        message lists the candidates.
    """
    candidates = []
    for config in configs:
        try:
            candidates.append((config.name, model_kind(config), check_config(config, where).parameters))
        except ModelError:
            continue
    if not candidates:
        names = ", ".join(sorted(c.name for c in configs))
        raise ModelError(
            f"no SKOOTS model {where}" + (f" (models there: {names})" if names else "")
            + " — export one with skoots export" + (", or pass --model" if names else "")
        )
    rank = min(preference.index(kind) for _, kind, _ in candidates)
    best = [c for c in candidates if preference.index(c[1]) == rank]
    if len({parameters for _, _, parameters in candidates}) == 1 and len(best) == 1:
        return best[0][0]
    listed = ", ".join(f"{name} ({kind})" for name, kind, _ in sorted(candidates))
    raise ModelError(f"several SKOOTS models {where}: {listed} — choose one with --model")


def repository_configs(repository: Path) -> list[Any]:
    """The parsed configs of the models in ``repository`` that have a ``<version>/model.pt``
    (what runs in-process); unreadable configs are skipped."""
    configs = []
    for config_path in sorted(Path(repository).glob("*/config.pbtxt")):
        if not any(p.parent.name.isdigit() for p in config_path.parent.glob("*/model.pt")):
            continue
        try:
            configs.append(config_from_text(config_path.read_text()))
        except Exception:  # noqa: BLE001 - protobuf's ParseError and decoding errors: not a candidate
            continue
    return configs


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


def _status(error: Exception) -> str:
    status = getattr(error, "status", None)
    text = str(status() if callable(status) else status or "")
    return text.replace("StatusCode.", "")


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


def unreachable_error(url: str, error: Exception, tls: Tls | None) -> ClientError:
    """Say why nothing answered at ``url``; TLS failures all look alike to gRPC (UNAVAILABLE)."""
    message = error.message() if hasattr(error, "message") else str(error)
    detail = message.rsplit(": ", 1)[-1] if "handshake" in message.lower() else ""
    if "Socket closed" in message or "handshake" in message.lower():  # something answered, not in gRPC
        service = triton_http_service(url)
        if service:
            return UrlError(
                f"{url} is Triton's {service} port, not its gRPC port — use the gRPC port in --url "
                "(8001 by default; skoots serve prints it on its grpc line)"
            )
    if "CERTIFICATE_VERIFY_FAILED" in message:
        reason = message.split("CERTIFICATE_VERIFY_FAILED: ", 1)[-1].split(":")[0]
        return ServerUnavailableError(
            f"TLS: the certificate of {url} is not signed by a CA this client trusts ({reason}) — pass --root-cert with the CA that signed it"
        )
    if tls is not None and "Peer name" in message:
        return ServerUnavailableError(f"TLS: the certificate of {url} is not issued for that address — connect by a name it lists, or reissue it")
    if tls is not None and "handshake" in message.lower():
        return ServerUnavailableError(f"TLS handshake with {url} failed ({detail}) — does it serve TLS? If not, drop --ssl (or the https:// or grpcs:// of --url)")
    hint = " or fix --url"
    if "Socket closed" in message:
        hint = (" or fix --url; if it serves TLS, pass --ssl and --root-cert" if tls is None else
                " or fix --url; if it requires client certificates, pass --private-key and --cert-chain" if tls.private_key is None else
                " or fix --url; the server may not accept this client's certificate")
    return ServerUnavailableError(f"no Triton server at {url} ({_status(error) or 'unreachable'}) — start one (skoots serve){hint}")


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
    ) -> None:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        self.url, tls_scheme = grpc_address(url)
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
        self._lock = threading.Lock()
        self._client = self._new_client()
        self.info = self._connect()
        self.name = f"{self.url}/{self.model}"

    def _new_client(self) -> Any:
        return grpc_client(self.url, self.tls)

    def _reconnect(self, broken: Any) -> None:
        """Replace a channel that saw the server go away: gRPC's own reconnect backoff grows to
        minutes, far longer than a server restart takes."""
        with self._lock:
            if self._client is broken:
                self._client = self._new_client()
                broken.close()

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
        inputs = [self._grpc.InferInput(INPUT.name, list(batch.shape), "FP16")]
        inputs[0].set_data_from_numpy(batch)
        specs = [VECTORS, SKELETON] + ([PROBABILITY] if probability else [])
        outputs = [self._grpc.InferRequestedOutput(spec.name) for spec in specs]
        serialised = time.perf_counter()
        attempt = 0
        give_up_at = None  # set at the first failure: the retry budget runs from there
        while True:
            client = self._client
            try:
                result = client.infer(self.model, inputs, outputs=outputs, client_timeout=self.timeout)
                received = time.perf_counter()
            except self._error as e:
                status = _status(e)
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
                short = answer_size_problem(result.get_response(), specs, batch.shape)
                if short is not None:  # a broken server, not a fault that passes: no retry
                    raise ModelError(f"{self.name} answered with {short} — its model is broken; a Python-backend model "
                                     "answers with empty outputs when its environment has NumPy 2: check the server's "
                                     "log, or restart it with skoots serve (which checks its environment)")
                answer = tuple(result.as_numpy(spec.name) for spec in specs)
                problem = answer_problem(answer, specs, batch.shape)
                if problem is None:
                    if timings is not None:
                        timings["serialise"] = serialised - started
                        timings["send_receive"] = received - serialised
                        timings["deserialise"] = time.perf_counter() - received
                    return answer
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
            raise ServerUnavailableError(f"{self.name}: cannot read inference statistics ({_status(e) or e.message()})") from e
        return list(stats.get("model_stats", []))

    def close(self) -> None:
        self._client.close()

