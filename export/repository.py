"""Write exported models into a Triton model repository without ever leaving half a model.

Every variant is assembled in a private staging folder inside the repository (same file
system), then moved into place with ``rename``; an earlier model of the same name is swapped
out only once the new one is complete, and other versions it held are carried over.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as pb

from .contract.wire import config_to_text

__all__ = ["PYTHON_MODEL", "OPENVINO_RUNTIME", "ModelVariant", "check_destination", "write_models"]

PYTHON_MODEL = Path(__file__).with_name("triton_python_model.py")
# Beside the Python-backend model.py, which loads it by path when the version holds an IR.
OPENVINO_RUNTIME = Path(__file__).parent / "contract" / "openvino_runtime.py"


@dataclass(frozen=True)
class ModelVariant:
    """One model directory to write: its name, config, the exported files its version directory
    holds, and whether it needs ``model.py``."""

    name: str
    config: pb.ModelConfig
    python_backend: bool
    files: tuple[str, ...] = ("model.pt",)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def check_destination(repository: Path) -> None:
    """Raise the `OSError` `write_models` would meet at the end — a file where the repository or
    a folder above it should be, a folder this user cannot write — before the minutes of export."""
    existing = repository
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        code = errno.EEXIST if existing == repository else errno.ENOTDIR
        raise OSError(code, os.strerror(code), str(existing))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(existing))


def write_models(
    repository: Path,
    variants: list[ModelVariant],
    save_files: Callable[[Path], None],
    version: int = 1,
) -> list[Path]:
    """Write each variant as ``<repository>/<name>/{config.pbtxt, <version>/<its files>[, model.py]}``.

    ``save_files(folder)`` writes every exported file (``model.pt``, ``model.xml``, ...) once into
    ``folder``; variants share them (hard links where the file system allows). Returns the model
    directories written.
    """
    repository.mkdir(parents=True, exist_ok=True)
    for variant in variants:  # before anything is staged or swapped: all or nothing
        target = repository / variant.name
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            raise FileExistsError(errno.EEXIST, f"{target} is in the way and is not a model directory", str(target))
    staging = Path(tempfile.mkdtemp(prefix=".skoots-export-", dir=repository))
    try:
        exported = staging / ".files"
        exported.mkdir()
        save_files(exported)
        for variant in variants:
            model_dir = staging / variant.name
            version_dir = model_dir / str(version)
            version_dir.mkdir(parents=True)
            for name in variant.files:
                _link_or_copy(exported / name, version_dir / name)
            if variant.python_backend:
                shutil.copyfile(PYTHON_MODEL, version_dir / "model.py")
                if "model.xml" in variant.files:
                    shutil.copyfile(OPENVINO_RUNTIME, version_dir / OPENVINO_RUNTIME.name)
            (model_dir / "config.pbtxt").write_text(config_to_text(variant.config))
        written = []
        for variant in variants:
            written.append(_swap_in(staging / variant.name, repository / variant.name, staging, version))
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_in(new: Path, target: Path, staging: Path, version: int) -> Path:
    """Move ``new`` to ``target``; an existing ``target`` keeps its other versions."""
    if not target.exists():
        new.rename(target)
        return target
    old = staging / f"{target.name}.replaced"
    target.rename(old)
    carried = [c for c in old.iterdir() if c.is_dir() and c.name.isdigit() and c.name != str(version)]
    try:
        for child in carried:
            child.rename(new / child.name)
        new.rename(target)
    except OSError:
        for child in carried:
            if (new / child.name).exists():
                (new / child.name).rename(child)
        old.rename(target)
        raise
    return target
