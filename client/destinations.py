"""Checks of a destination before any work: writable, the right kind, never over an input."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .errors import OutputError

__all__ = ["check_destination", "check_writable", "check_not_input"]


def check_destination(option: str, path: Path, suffixes: tuple[str, ...], hint: str) -> None:
    """Fail before any work if a file of one of ``suffixes`` cannot be written at ``path``
    (given with ``option``); ``hint`` says what to give instead of another extension."""
    if not path.name.lower().endswith(suffixes):
        raise OutputError(f"{option} {path}: {hint}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{option} {path}: folder {parent} does not exist; create it first")
    check_writable(option, path, parent)


def check_writable(option: str, path: object, folder: Path) -> None:
    """Fail unless a file can really be created (and removed) in ``folder``: permission bits do
    not say (root ignores them; a read-only mount, a full disk, a pseudo file system refuse
    root too), so a probe file is written there and deleted."""
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path}: folder {folder} is not writable; choose another folder")
    try:
        with tempfile.NamedTemporaryFile(prefix=".skoots-write-probe-", dir=folder) as probe:
            probe.write(b"probe")
            probe.flush()
    except OSError as e:
        raise OutputError(f"{option} {path}: folder {folder} is not writable ({e.strerror or e}); choose another folder") from None


def check_not_input(option: str, path: Path, inputs: Sequence[Path]) -> None:
    """Refuse a destination that would write over an input, ``--overwrite`` or not: the input
    itself (same path, a symbolic link to it, a hard link: same device and inode), a path
    inside an input (a Zarr store is a folder), or a folder that holds an input (replacing it
    would delete the input)."""
    target = path.resolve()
    for source in inputs:
        if not source.exists():
            continue
        origin = source.resolve()
        same = target == origin
        if not same and path.exists():
            mine, theirs = path.stat(), source.stat()
            same = (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)
        where = (
            "is the input" if same else
            "lies inside the input" if origin in target.parents else
            "holds the input" if target in origin.parents else None
        )
        if where:
            raise OutputError(f"{option} {path} {where} {source}; choose another path (the input is never overwritten, --overwrite or not)")
