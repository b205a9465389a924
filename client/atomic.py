"""Files that survive a kill: written aside and renamed into place, directories built aside,
records sealed by their own CRC.

Every writer of the client goes through here (labels, tables, previews, NGFF label groups,
blockwise outputs, work directories), so a file or folder is either absent, the old one, or
the complete new one — never half-written. Temporary names are unique (``tempfile``), so two
runs writing beside each other never collide; they start with ``.NAME.partial-`` so a person
who sees one knows what it was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

__all__ = ["staged", "replace", "move_into_place", "write_aside", "build_directory", "fsync", "crc", "seal", "unseal"]


@contextlib.contextmanager
def staged(path: Path) -> Iterator[Path]:
    """Yield a private path beside ``path`` (same folder, so the same file system) to write a
    file or folder to; when the block succeeds it replaces ``path``. If the block raises, nothing
    is left at or beside ``path`` and what was at ``path`` is untouched.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with staged(folder / "table.csv") as target:
    ...     _ = target.write_text("label\\n1\\n")
    >>> sorted(p.name for p in folder.iterdir())
    ['table.csv']
    """
    path = Path(path)
    aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        yield aside / path.name
        replace(aside / path.name, path)
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def replace(source: Path, path: Path) -> None:
    """Move the finished ``source`` (same file system) to ``path``, replacing what is there. A
    folder at ``path`` is renamed aside under a unique name first, then removed."""
    if path.is_dir() and not path.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.replaced-", dir=path.parent))
        path.rename(old / path.name)
        try:
            Path(source).rename(path)
        except BaseException:
            (old / path.name).rename(path)  # put the old one back
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(source, path)


def move_into_place(source: Path, path: Path) -> None:
    """`replace`, copying ``source`` beside ``path`` first when a rename cannot move it
    (another file system)."""
    try:
        replace(source, path)
    except OSError:
        with staged(path) as target:
            if Path(source).is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copy2(source, target)


def write_aside(path: Path, write: Callable[[Path], object], *, durable: bool = False) -> None:
    """``write(temporary)`` to a uniquely named file beside ``path`` (same suffix, so NumPy adds
    none), then rename it to ``path``; with ``durable`` it reaches the disk before the rename."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.partial-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(name))
        if durable:
            fsync(Path(name))
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def build_directory(path: Path, build: Callable[[Path], None]) -> None:
    """Create the folder ``path`` complete or not at all: ``build(staging)`` fills a folder
    beside it, which reaches the disk and is renamed to ``path``. Staging folders of a run killed
    while building are removed first."""
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        build(staging)
        for item in [*staging.rglob("*"), staging]:
            fsync(item)
        staging.rename(path)
        fsync(path.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def fsync(path: Path) -> None:
    """Flush a file or folder to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def crc(*arrays: np.ndarray) -> int:
    """CRC-32 of the arrays' bytes, one after the other: what a done record checks data against."""
    value = 0
    for array in arrays:
        value = zlib.crc32(np.ascontiguousarray(array).data, value)
    return value


def seal(body: str, separator: str = " ") -> bytes:
    """``body``, ``separator`` and the CRC-32 of ``body``, then a newline: a record that
    `unseal` tells apart from one torn by a kill or corrupted.

    >>> seal("7 0000abcd")
    b'7 0000abcd af67289d\\n'
    >>> unseal(seal("7 0000abcd")), unseal(b"7 0000abcd 00000000\\n")
    ('7 0000abcd', None)
    """
    return f"{body}{separator}{zlib.crc32(body.encode()):08x}\n".encode()


def unseal(data: bytes, separator: str = " ") -> str | None:
    """The body of a record `seal` wrote, or None when its CRC does not match."""
    try:
        body, own = data.decode().rstrip("\n").rsplit(separator, 1)
        return body if int(own, 16) == zlib.crc32(body.encode()) else None
    except (UnicodeDecodeError, ValueError):
        return None
