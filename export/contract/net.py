"""Network helpers both sides use: probe a server without the environment's proxies, check a
PEM file, tell a loopback address."""

from __future__ import annotations

import ipaddress
import urllib.request
from pathlib import Path

__all__ = ["direct_open", "pem_problem", "is_loopback"]

# urllib without the environment's proxies: probes of a server must reach that server.
direct_open = urllib.request.build_opener(urllib.request.ProxyHandler({})).open


def pem_problem(option: str, path: Path | None) -> str | None:
    """Why the PEM file ``path`` given with ``option`` is unusable (unreadable, not PEM), or None."""
    if path is None:
        return None
    try:
        text = Path(path).read_bytes()
    except OSError as e:
        return f"cannot read {option} {path}: {e.strerror or e}"
    if b"-----BEGIN " not in text:
        return f"{option} {path} is not a PEM file (no -----BEGIN line)"
    return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` binds this machine only (127.0.0.0/8, ::1, localhost).

    >>> is_loopback("127.0.0.1"), is_loopback("0.0.0.0")
    (True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
