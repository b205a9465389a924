"""Will this torch load that ``model.pt``? TorchScript files load in the torch (or Triton
libtorch) release that saved them or a newer one, not in an older one; export records the
saving release in the config (``torch_version``) so a mismatch is one readable line."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from .contract.wire import TORCH_VERSION, config_from_text

__all__ = ["release", "too_new_problem", "check_repository"]


def release(version: str) -> tuple[int, int]:
    """``"2.13.0+cpu"`` → ``(2, 13)``; ``ValueError`` when it does not start ``MAJOR.MINOR``."""
    found = re.match(r"\s*(\d+)\.(\d+)", version)
    if found is None:
        raise ValueError(f"{version!r} is not a torch version")
    return int(found.group(1)), int(found.group(2))


def too_new_problem(name: str, saved: str, running: str) -> str | None:
    """Why model ``name``, saved by torch ``saved``, cannot load in torch ``running`` (or None).
    Patch releases do not change the TorchScript format, so MAJOR.MINOR is compared."""
    try:
        if release(saved) <= release(running):
            return None
    except ValueError:
        return None  # not written by export: leave the verdict to the loader
    return (
        f"model '{name}' was exported with torch {saved}, newer than the torch {running} serving it; "
        f"TorchScript loads only in the release that saved it or a newer one — use torch {'.'.join(map(str, release(saved)))} "
        f"or newer to serve it, or export it with torch {running}"
    )


def check_repository(repository: Path, models: tuple[str, ...]) -> str | None:
    """The first of ``models`` in ``repository`` this environment's torch is too old for, as a
    problem line, or None. Models without a readable config or a ``torch_version`` pass."""
    running = metadata.version("torch")
    for name in models:
        try:
            config = config_from_text((Path(repository) / name / "config.pbtxt").read_text())
        except Exception:  # noqa: BLE001 - missing or broken configs are the server's to report
            continue
        saved = config.parameters[TORCH_VERSION].string_value if TORCH_VERSION in config.parameters else ""
        problem = too_new_problem(name, saved, running) if saved else None
        if problem:
            return problem
    return None
