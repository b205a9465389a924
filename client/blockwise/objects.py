"""Where a work store's objects live: a local folder (`Folder`) or a key prefix on S3, GCS or a
``file://`` URL (`KvObjects`), behind one byte-level API — put, get, a byte range, exists,
keys under a folder, delete, delete everything, and create-if-absent (the lock).

URLs go through TensorStore's kvstore, the layer the inputs and outputs already use: the same
spec, credentials, ``--s3-endpoint``, bounded retries and error messages (stores/location.py),
one driver for ``s3://`` and ``gs://``, ``KvStore.read(byte_range=…)`` for a halo's ranged
reads, and ``write(if_equal=NO_VALUE)`` for a conditional create. Every call waits at most
`TIMEOUT` seconds; a failure is one `OutputError` naming the work store and the fix.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..atomic import write_aside
from ..errors import OutputError
from ..stores.location import StoreUrl, check_credentials, context, explain

__all__ = ["TIMEOUT", "Objects", "Folder", "KvObjects", "objects_at"]

TIMEOUT = 60.0  # seconds one call to an object store may take, its retries included
_NO_VALUE = b"\x02"  # TensorStore's StorageGeneration::NoValue: write only if the key is absent

_T = TypeVar("_T")


class Objects(Protocol):
    """A work store's bytes by key (``kind/name``)."""

    where: str  # what messages name

    def put(self, key: str, data: bytes, *, durable: bool = False) -> None: ...
    def create(self, key: str, data: bytes) -> bool: ...
    def get(self, key: str) -> bytes: ...
    def get_many(self, keys: list[str]) -> list[bytes | None]: ...
    def get_range(self, key: str, start: int, stop: int) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def keys(self, prefix: str) -> list[str]: ...
    def any(self) -> bool: ...
    def delete(self, key: str) -> None: ...
    def delete_all(self) -> None: ...


def objects_at(where: Path | StoreUrl) -> Objects:
    """The objects of the work store at ``where``: a folder for a path or a ``file`` URL, else a kvstore."""
    if isinstance(where, StoreUrl):
        return Folder(Path(where.path)) if where.local is not None else KvObjects(where)
    return Folder(Path(where))


class Folder:
    """Objects as files of a local folder; each written aside and renamed, so whole or absent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)

    def put(self, key: str, data: bytes, *, durable: bool = False) -> None:
        target = self.path / key
        target.parent.mkdir(parents=True, exist_ok=True)
        write_aside(target, lambda aside: aside.write_bytes(data), durable=durable)

    def create(self, key: str, data: bytes) -> bool:
        target = self.path / key
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True

    def get(self, key: str) -> bytes:
        return (self.path / key).read_bytes()

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        out: list[bytes | None] = []
        for key in keys:
            try:
                out.append(self.get(key))
            except FileNotFoundError:
                out.append(None)
        return out

    def get_range(self, key: str, start: int, stop: int) -> bytes:
        with open(self.path / key, "rb") as f:
            f.seek(start)
            return f.read(stop - start)

    def exists(self, key: str) -> bool:
        return (self.path / key).is_file()

    def keys(self, prefix: str) -> list[str]:
        folder = self.path / prefix
        if not folder.is_dir():
            return []
        return sorted(f"{prefix}/{p.name}" for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))

    def any(self) -> bool:
        return self.path.exists()

    def delete(self, key: str) -> None:
        (self.path / key).unlink(missing_ok=True)

    def delete_all(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class KvObjects:
    """Objects under a URL's key prefix through TensorStore's kvstore (S3, GCS, ``file://``).

    A PUT is whole or absent on an object store, so nothing is written aside. Picklable: the
    kvstore is opened again in each process that uses it."""

    def __init__(self, url: StoreUrl) -> None:
        self.url = url
        self.where = str(url)
        self._kv: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "where": self.where, "_kv": None}

    def _fail(self, error: BaseException, doing: str) -> OutputError:
        if isinstance(error, TimeoutError):
            return OutputError(f"work store {self.where}: no answer within {TIMEOUT:.0f} s while {doing}; "
                               "check the network and --s3-endpoint, or pass a local --work-dir")
        return OutputError(f"work store {explain(error, self.url, 'work store', OutputError)}")

    def _call(self, doing: str, start: Callable[[Any], Any]) -> Any:
        import tensorstore as ts

        try:
            if self._kv is None:
                self._kv = ts.KvStore.open(self.url.kvstore(), context=context()).result(timeout=TIMEOUT)
            return start(self._kv).result(timeout=TIMEOUT)
        except (ValueError, TimeoutError, OSError) as e:
            raise self._fail(e, doing) from e

    def check(self) -> None:
        """Fail in one line now if the store cannot be written (HTTP, credentials) or reached (bucket)."""
        if self.url.scheme in ("http", "https"):
            raise OutputError(f"--work-dir {self.where}: HTTP is read-only; give an s3:// or gs:// URL, or a folder")
        check_credentials(self.url, "--work-dir", writing=True)
        self.keys("")

    def put(self, key: str, data: bytes, *, durable: bool = False) -> None:
        self._call(f"writing {key}", lambda kv: kv.write(key, data))

    def create(self, key: str, data: bytes) -> bool:
        stamp = self._call(f"writing {key}", lambda kv: kv.write(key, data, if_equal=_NO_VALUE))
        return bool(stamp.generation)  # empty: the key was there, nothing written

    def get(self, key: str) -> bytes:
        result = self._call(f"reading {key}", lambda kv: kv.read(key))
        if result.state != "value":
            raise FileNotFoundError(f"{self.where}/{key}")
        return bytes(result.value)

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        """Several objects read at once (all requests in flight together), None for one absent."""
        import tensorstore as ts

        if not keys:
            return []
        try:
            if self._kv is None:
                self._kv = ts.KvStore.open(self.url.kvstore(), context=context()).result(timeout=TIMEOUT)
            futures = [self._kv.read(key) for key in keys]
            results = [f.result(timeout=TIMEOUT) for f in futures]
        except (ValueError, TimeoutError, OSError) as e:
            raise self._fail(e, f"reading {len(keys)} objects") from e
        return [bytes(r.value) if r.state == "value" else None for r in results]

    def get_range(self, key: str, start: int, stop: int) -> bytes:
        if stop <= start:
            return b""
        result = self._call(f"reading {key}", lambda kv: kv.read(key, byte_range=slice(start, stop)))
        if result.state != "value":
            raise FileNotFoundError(f"{self.where}/{key}")
        return bytes(result.value)

    def exists(self, key: str) -> bool:
        return self._call(f"reading {key}", lambda kv: kv.read(key, byte_range=slice(0, 0))).state == "value"

    def _list(self, folder: str) -> list[str]:
        import tensorstore as ts

        span = ts.KvStore.KeyRange(folder, folder[:-1] + "0") if folder else ts.KvStore.KeyRange()
        return [k.decode() for k in self._call(f"listing {folder or 'its objects'}", lambda kv: kv.list(span))]

    def keys(self, prefix: str) -> list[str]:
        folder = f"{prefix}/" if prefix else ""
        names = (k[len(folder):] for k in self._list(folder))
        return sorted(folder + n for n in names if "/" not in n and not n.startswith("."))

    def any(self) -> bool:
        return bool(self._list(""))

    def delete(self, key: str) -> None:
        import tensorstore as ts

        self._call(f"deleting {key}", lambda kv: kv.delete_range(ts.KvStore.KeyRange(key, key + "\x00")))

    def delete_all(self) -> None:
        import tensorstore as ts

        self._call("deleting its objects", lambda kv: kv.delete_range(ts.KvStore.KeyRange()))
