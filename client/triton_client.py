"""tritonclient plumbing the endpoint and the model catalog share: a gRPC client (over TLS or
not), its raw ``ModelInfer`` call, what the server has ready, and why nothing answered."""

from __future__ import annotations

from typing import Any

from .address import triton_http_service
from .errors import ClientError, ServerUnavailableError, UrlError

__all__ = ["grpc_client", "raw_infer_call", "ready_models", "ready_configs", "status_text", "unreachable_error"]


def grpc_client(url: str, tls: Any = None) -> Any:
    """A tritonclient gRPC client for ``url`` (``HOST:PORT``), over TLS with ``tls`` (a
    `skoots_client.model_source.Tls`: its root certificate, key and chain)."""
    import tritonclient.grpc as grpcclient

    try:
        # No channel_args: passing them drops tritonclient's unlimited message size.
        if tls is None:
            return grpcclient.InferenceServerClient(url=url)
        files = {"root_certificates": tls.root_cert, "private_key": tls.private_key, "certificate_chain": tls.cert_chain}
        return grpcclient.InferenceServerClient(url=url, ssl=True, **{k: str(v) if v else None for k, v in files.items()})
    except Exception as e:  # bad address syntax
        raise ServerUnavailableError(f"cannot connect to {url}: {e} — give --url HOST:PORT of Triton's gRPC port") from e


def raw_infer_call(client: Any) -> Any:
    """``ModelInfer`` on ``client``'s own channel (its TLS and unlimited message sizes) taking
    and returning serialised bytes, for `skoots_client.triton_wire`'s hand-built messages."""
    from .triton_wire import MODEL_INFER

    return client._channel.unary_unary(MODEL_INFER, request_serializer=None, response_deserializer=None)


def ready_models(client: Any) -> list[str]:
    """Names of the models the server behind ``client`` has ready (any version)."""
    from tritonclient.utils import InferenceServerException

    try:
        index = client.get_model_repository_index(as_json=True, client_timeout=10)
    except InferenceServerException:
        return []
    return sorted({m["name"] for m in index.get("models", []) if m.get("state") == "READY"})


def ready_configs(client: Any) -> list[Any]:
    """The configs of the models the server behind ``client`` has ready."""
    from tritonclient.utils import InferenceServerException

    configs = []
    for name in ready_models(client):
        try:
            configs.append(client.get_model_config(name, client_timeout=10).config)
        except InferenceServerException:
            continue  # unloaded since the index was read
    return configs


def status_text(error: Exception) -> str:
    """The gRPC status of a tritonclient error as text (``UNAVAILABLE``), or empty."""
    status = getattr(error, "status", None)
    text = str(status() if callable(status) else status or "")
    return text.replace("StatusCode.", "")


def unreachable_error(url: str, error: Exception, tls: Any) -> ClientError:
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
    return ServerUnavailableError(f"no Triton server at {url} ({status_text(error) or 'unreachable'}) — start one (skoots serve){hint}")
