"""tritonclient plumbing the endpoint and the model catalog share: a gRPC client (over TLS or
not) and what the server has ready."""

from __future__ import annotations

from typing import Any

from .errors import ServerUnavailableError

__all__ = ["grpc_client", "ready_models", "ready_configs"]


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
