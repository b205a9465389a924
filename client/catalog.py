"""Which SKOOTS models a server has ready, or a repository holds: for a model list in a GUI."""

from __future__ import annotations

from pathlib import Path

from .address import grpc_address
from .errors import ModelError
from .model_info import check_config
from .model_source import Tls, repository_configs
from .triton_client import grpc_client, ready_configs, unreachable_error
from .variants import model_kind

__all__ = ["skoots_models"]


def skoots_models(url: str | None = None, repository: Path | None = None, *, tls: Tls | None = None) -> list[tuple[str, str]]:
    """``(name, kind)`` of the SKOOTS models ready on the server at ``url``, else held by
    ``repository``, sorted by name; ``kind`` is libtorch, openvino or python. For a model list
    in a GUI: models that do not speak the contract are left out.

    Raises
    ------
    ServerUnavailableError
        No server answers at ``url``.
    """
    if url is None:
        configs = repository_configs(Path(repository or "model_repository"))
    else:
        from tritonclient.utils import InferenceServerException

        address, tls_scheme = grpc_address(url)
        tls = tls if tls is not None or not tls_scheme else Tls()
        client = grpc_client(address, tls)
        try:
            try:
                client.is_server_live(client_timeout=10)
            except InferenceServerException as e:
                raise unreachable_error(address, e, tls) from e
            configs = ready_configs(client)
        finally:
            client.close()
    found = []
    for config in configs:
        try:
            check_config(config, "")
        except ModelError:
            continue
        found.append((config.name, model_kind(config)))
    return sorted(found)
