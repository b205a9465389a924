"""One ``torch.export`` capture and one OpenVINO conversion per network in a test session.

Every export captures the network with ``torch.export`` and converts the graph to OpenVINO
(about 10 s even for the tiny test networks: both re-trace the whole graph), and the suite
exports the same few seeded networks dozens of times with different crops, dilations and
backends — none of which reach the graph. The exporter's two graph steps are memoised on what
does reach it (the module's structure, scalar attributes and weights, bit for bit); everything
after them (saving, verifying the saved IR against the eager head, the configs) still runs each
time. Tests of the two steps themselves call them directly and are not memoised.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

_PLAIN = (bool, int, float, str, tuple)


def fingerprint(module: nn.Module) -> str:
    """A digest of everything about ``module`` that its graph depends on."""
    digest = hashlib.sha256(repr(module).encode())
    for name, sub in module.named_modules():
        plain = sorted((k, v) for k, v in vars(sub).items() if not k.startswith("_") and isinstance(v, _PLAIN))
        digest.update(f"{name}:{type(sub).__qualname__}:{plain}".encode())
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _memoised(step: Callable[..., Any], key: Callable[..., tuple]) -> Callable[..., Any]:
    results: dict[tuple, Any] = {}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        k = key(*args, **kwargs)
        if k not in results:
            results[k] = step(*args, **kwargs)
        return results[k]

    return wrapper


def install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memoise the exporter's ``export_program`` and ``convert_head`` for ``monkeypatch``'s life."""
    from skoots_export import bioimageio_package, exporter
    from skoots_export.head import GraphHead

    def program_key(module: nn.Module, minimum_size: int, input_name: str = "input__0", dtype: torch.dtype = torch.float16) -> tuple:
        return fingerprint(module), minimum_size, input_name, dtype

    def ir_key(head: nn.Module, minimum_size: int, program: Any = None) -> tuple:
        return fingerprint(GraphHead(head)), minimum_size

    captures = _memoised(exporter.export_program, program_key)
    monkeypatch.setattr(exporter, "export_program", captures)
    monkeypatch.setattr(bioimageio_package, "export_program", captures)
    monkeypatch.setattr(exporter, "convert_head", _memoised(exporter.convert_head, ir_key))
