"""What ``--url`` may say, and what answered when it was not Triton's gRPC port.

``--url`` is ``HOST:PORT`` of a Triton server's gRPC port. A scheme is accepted and stripped:
``grpc://`` and ``http://`` change nothing, ``grpcs://`` and ``https://`` turn TLS on as
``--ssl`` does (the system's CA certificates unless ``--root-cert``). Other schemes, paths and
addresses without a port are refused, each with its reason.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse

from skoots_export.contract.net import direct_open

from .errors import UrlError

__all__ = ["grpc_address", "triton_http_service"]

# Scheme → whether it asks for TLS.
_SCHEMES = {"grpc": False, "http": False, "grpcs": True, "https": True}

_FORM = "give HOST:PORT of Triton's gRPC port (8001 by default)"


def grpc_address(url: str) -> tuple[str, bool]:
    """``HOST:PORT`` for gRPC from a ``--url``, and whether its scheme asks for TLS.

    >>> grpc_address("http://127.0.0.1:8001/")
    ('127.0.0.1:8001', False)
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url, False
    if scheme.lower() not in _SCHEMES:
        raise UrlError(f"--url {url}: Triton's gRPC client does not speak {scheme}:// — {_FORM}; grpc://, http://, grpcs:// and https:// are accepted")
    address = rest.rstrip("/")
    if any(c in address for c in "/?#"):
        raise UrlError(f"--url {url}: gRPC has no paths — {_FORM}")
    split = urllib.parse.urlsplit("//" + address)
    try:
        port = split.port
    except ValueError:  # not a number, or out of range
        port = None
    if port is None or not split.hostname:
        raise UrlError(f"--url {url}: no valid port — {_FORM}")
    return address, _SCHEMES[scheme.lower()]


def triton_http_service(address: str, timeout: float = 2.0) -> str | None:
    """Which of Triton's plain-HTTP services answers at ``address``: ``"HTTP"`` when ``GET /v2``
    returns server metadata, ``"metrics"`` when ``GET /metrics`` returns Triton's counters,
    else None. For naming the mistake when a gRPC call met an HTTP/1 server."""
    base = f"http://{address}"
    try:
        with direct_open(f"{base}/v2", timeout=timeout) as answer:
            metadata = json.loads(answer.read(1 << 16))
        if isinstance(metadata, dict) and {"name", "version"} <= metadata.keys():
            return "HTTP"
    except (OSError, ValueError, http.client.HTTPException):  # nothing there, or not HTTP
        pass
    try:
        with direct_open(f"{base}/metrics", timeout=timeout) as answer:
            if b"nv_inference" in answer.read(1 << 16):
                return "metrics"
    except (OSError, ValueError, http.client.HTTPException):  # nothing there, or not HTTP
        pass
    return None
