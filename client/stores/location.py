"""Where a volume lives: ``FORMAT://LOCATION`` text parsed into a `StoreUrl`, and the
TensorStore key-value store, context and error messages for it.

The syntax is Neuroglancer's and CloudVolume's: an optional format (``n5://``,
``precomputed://``, ``zarr://``, ``zarr2://``, ``zarr3://``) before a location, which is a
local path, ``file://``, ``http(s)://``, ``s3://`` or ``gs://``. Without a format it is detected
from the metadata found there (reader.py). S3 endpoint, region and credentials come the usual
way (``AWS_*`` environment variables, ``~/.aws``), the endpoint also from ``--s3-endpoint`` for
stores that are not AWS (MinIO, Ceph, moto).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar, overload
from urllib.parse import urlsplit

from ..errors import ClientError, InputError, OutputError

__all__ = [
    "FORMATS", "LOCATIONS", "RETRIES", "CACHE_BYTES", "StoreUrl", "is_store", "Location", "has_scheme", "parse", "context",
    "check_credentials", "explain", "argument", "DEADLINE", "done",
    "IN_FLIGHT", "write_all",
]

FORMATS = ("n5", "precomputed", "zarr", "zarr2", "zarr3")
LOCATIONS = ("file", "http", "https", "s3", "gs")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)

# A dead host or a refusing endpoint fails in about a second, a flaky one is retried.
RETRIES = {"max_retries": 4, "initial_delay": "100ms", "max_delay": "2s"}
# Decoded chunks kept per opened volume. Crops go z-inner, y, then x: the chunks a crop shares
# with the next ones along z and y (a 300-row slab of the volume's columns and slices: 29 MB
# for 600x80 uint16) are read once; a blockwise worker's memory budget pays for it.
DEADLINE = 120.0  # seconds for one metadata request or open of an output, retries included
CACHE_BYTES = 64 << 20
IN_FLIGHT = 64  # writes awaited together: enough to keep a bucket busy, few enough to bound memory


@dataclass(frozen=True)
class StoreUrl:
    """A volume's location as TensorStore opens it (picklable, for blockwise workers).

    ``scheme`` is ``file``, ``http``, ``https``, ``s3`` or ``gs``; ``host`` the HTTP host or the
    bucket; ``path`` the key prefix (for ``file`` an absolute folder). ``format`` is the one
    the text named, None to detect it; ``text`` is what the user gave, for messages.
    """

    text: str
    scheme: str
    host: str
    path: str
    format: str | None = None
    s3_endpoint: str | None = None

    def __str__(self) -> str:
        return self.text

    @property
    def name(self) -> str:
        """The last path component (``labels`` of ``s3://bucket/run/labels``)."""
        return PurePosixPath(self.path.rstrip("/")).name or self.host

    @property
    def local(self) -> Path | None:
        """The local folder for ``file``, else None."""
        return Path(self.path) if self.scheme == "file" else None

    @property
    def parent(self) -> Path:
        """A local folder beside the volume (its parent for ``file``, the current folder for a
        remote store): where labels are kept when writing them fails."""
        return self.local.parent if self.local is not None else Path.cwd()

    @property
    def remote(self) -> bool:
        return self.scheme != "file"

    def child(self, key: str, text: str | None = None) -> StoreUrl:
        """The location ``key`` below this one."""
        path = str(PurePosixPath(self.path.rstrip("/") or "/") / key) if self.path.strip("/") else key
        if self.scheme == "file" or self.scheme.startswith("http"):
            path = "/" + path.lstrip("/")
        return replace(self, path=path, text=text or f"{self.text.rstrip('/')}/{key}")

    def kvstore(self) -> dict[str, Any]:
        """The TensorStore kvstore spec of the folder (a key prefix ending in ``/``)."""
        prefix = self.path.strip("/") + "/" if self.path.strip("/") else ""
        if self.scheme == "file":
            return {"driver": "file", "path": self.path.rstrip("/") + "/"}
        if self.scheme in ("http", "https"):
            return {"driver": "http", "base_url": f"{self.scheme}://{self.host}", "path": "/" + prefix}
        if self.scheme == "gs":
            return {"driver": "gcs", "bucket": self.host, "path": prefix}
        spec: dict[str, Any] = {"driver": "s3", "bucket": self.host, "path": prefix, "aws_credentials": _aws_credentials()}
        endpoint = self.s3_endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            spec["endpoint"] = endpoint
            spec["aws_region"] = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        return spec


def _aws_credentials() -> dict[str, str]:
    """Where S3 credentials come from, named (TensorStore's default chain logs every source it
    fails to find on stderr): the ``AWS_*`` variables, else ``AWS_PROFILE`` / ``~/.aws``, else
    none (anonymous: a public bucket)."""
    env = os.environ
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return {"type": "environment"}
    if env.get("AWS_PROFILE"):
        return {"type": "profile", "profile": env["AWS_PROFILE"]}
    credentials = Path(env.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")).expanduser()
    return {"type": "profile"} if credentials.is_file() else {"type": "anonymous"}


def is_store(value: Any) -> bool:
    return isinstance(value, StoreUrl)


@dataclass(frozen=True)
class Location:
    """Where a volume (or an output) is: a local path, or a store by URL (a ``StoreUrl``:
    N5, precomputed, Zarr on disk, HTTP, S3, GCS), with what callers ask of either: its
    ``name``, the local ``parent`` folder beside it, whether it ``exists``, its ``local``
    folder (None when remote) and the work directory beside it.

    ``target`` is the path or the ``StoreUrl`` itself, what the readers and writers open.
    """

    target: Path | StoreUrl

    @staticmethod
    def of(value: str | os.PathLike[str] | StoreUrl | Location) -> Location:
        """``value`` as a location: a ``StoreUrl`` as it is, anything else as a path (text is
        not parsed for a scheme; see ``parse``)."""
        if isinstance(value, Location):
            return value
        return Location(value if isinstance(value, (StoreUrl, Path)) else Path(value))

    @staticmethod
    def parse(value: str | os.PathLike[str] | StoreUrl | Location, *, s3_endpoint: str | None = None,
              option: str = "input") -> Location:
        """A path, or ``SCHEME://...`` text as a store URL (``argument``); a ``StoreUrl`` or a
        ``Path`` as it is.

        Raises
        ------
        InputError
            An unknown scheme, or a URL without a host or bucket.
        """
        if isinstance(value, (Location, StoreUrl, Path)):
            return Location.of(value)
        return Location(argument(str(value), s3_endpoint=s3_endpoint, option=option))

    @staticmethod
    def names(value: Any) -> bool:
        """Whether ``value`` names a location (text, a path, a ``StoreUrl``) rather than being
        data (an array)."""
        return isinstance(value, (str, os.PathLike, StoreUrl, Location))

    @property
    def url(self) -> StoreUrl | None:
        """The store URL, None for a plain path (whose format its name or contents tell)."""
        return self.target if isinstance(self.target, StoreUrl) else None

    @property
    def local(self) -> Path | None:
        """The local path (a ``file`` store's folder), None for a remote store."""
        return self.target.local if isinstance(self.target, StoreUrl) else self.target

    @property
    def remote(self) -> bool:
        """Whether it is behind HTTP, S3 or GCS."""
        return self.local is None

    @property
    def name(self) -> str:
        """The last path component (``labels`` of ``s3://bucket/run/labels``)."""
        return self.target.name

    @property
    def parent(self) -> Path:
        """The local folder beside it: the path's parent, the current folder for a remote
        store (where its work directory and kept labels go)."""
        return self.target.parent

    @property
    def exists(self) -> bool:
        """Whether the local path exists; a remote store is not asked here (False)."""
        return self.local is not None and self.local.exists()

    @property
    def is_file(self) -> bool:
        """Whether it is a local file (not a folder, not a store)."""
        return self.local is not None and self.local.is_file()

    @property
    def work_dir(self) -> Path | StoreUrl:
        """The work store beside it: ``labels.tif`` → ``labels.tif.work``; ``s3://b/x/labels`` →
        ``s3://b/x/labels.work`` (and so for ``gs://``), so no worker needs a local path; for
        an HTTP store (read-only) ``labels.work`` in the current folder."""
        if isinstance(self.target, StoreUrl):
            url = self.target
            if url.scheme in ("s3", "gs"):
                key = f"{url.path.strip('/') or url.name}.work"  # a bucket's root: BUCKET.work in it
                return replace(url, text=f"{url.scheme}://{url.host}/{key}", path=key, format=None)
            return url.parent / (url.name + ".work")
        return self.target.with_name(self.target.name + ".work")

    @property
    def local_work_dir(self) -> Path:
        """A work directory on this machine beside it (the current folder for a remote store):
        what the in-memory engine's crops need."""
        work = self.work_dir
        return work if isinstance(work, Path) else Path.cwd() / (self.name + ".work")

    def resolved(self) -> Path | StoreUrl:
        """The target with a path made absolute (a ``StoreUrl`` is absolute already)."""
        return self.target if isinstance(self.target, StoreUrl) else self.target.resolve()

    def __str__(self) -> str:
        return str(self.target)


def has_scheme(text: str) -> bool:
    """Whether ``text`` is a URL (``SCHEME://...``) rather than a path."""
    return _SCHEME.match(str(text)) is not None


def parse(text: str, *, s3_endpoint: str | None = None, option: str = "input") -> StoreUrl:
    """``[FORMAT://]LOCATION`` as a `StoreUrl`; a bare path becomes ``file``.

    Raises
    ------
    InputError
        An unknown scheme, or a location without a host or bucket.
    """
    match = _SCHEME.match(text)
    format, rest = None, text
    if match and match[1].lower() in FORMATS:
        format, rest = match[1].lower(), match[2]
        match = _SCHEME.match(rest)
    if match is None:
        path = Path(rest).expanduser()
        return StoreUrl(text, "file", "", str(path if path.is_absolute() else Path.cwd() / path), format, s3_endpoint)
    scheme = match[1].lower()
    if scheme not in LOCATIONS:
        raise InputError(f"{option} {text}: unknown scheme {match[1]}://; give a path, file://, http(s)://, s3:// or gs://, "
                         "optionally after n5://, precomputed:// or zarr://")
    if scheme == "file":
        path = Path(match[2]).expanduser()
        return StoreUrl(text, "file", "", str(path if path.is_absolute() else Path.cwd() / path), format, s3_endpoint)
    parts = urlsplit(f"{scheme}://{match[2]}")
    if not parts.netloc:
        what = "host" if scheme.startswith("http") else "bucket"
        raise InputError(f"{option} {text}: no {what} in the URL; write {scheme}://{what.upper()}/PATH")
    key = parts.path or "/"
    if scheme in ("s3", "gs"):
        key = key.strip("/")
    return StoreUrl(text, scheme, parts.netloc, key, format, s3_endpoint if scheme == "s3" else None)


def context() -> Any:
    """A TensorStore context: a bounded chunk cache and bounded retries for HTTP, S3 and GCS."""
    import tensorstore as ts

    return ts.Context({
        "cache_pool": {"total_bytes_limit": CACHE_BYTES},
        "http_request_retries": RETRIES,
        "s3_request_retries": RETRIES,
        "gcs_request_retries": RETRIES,
    })


def check_credentials(url: StoreUrl, option: str, writing: bool) -> None:
    """An S3 location to write needs credentials; refuse at once, in one line, when none are
    set (TensorStore would otherwise try anonymous access, or the EC2 metadata service)."""
    if url.scheme != "s3" or not writing:
        return
    env = os.environ
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return
    files = [Path(env.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")).expanduser()]
    if env.get("AWS_PROFILE") and any(f.exists() for f in files):
        return
    if any(f.exists() and "aws_access_key_id" in f.read_text(errors="replace") for f in files):
        return
    raise InputError(f"{option} {url}: no S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                     "(or AWS_PROFILE with ~/.aws/credentials)")


_Error = TypeVar("_Error", bound=ClientError)


@overload
def explain(error: BaseException, url: StoreUrl | str, what: str) -> InputError: ...
@overload
def explain(error: BaseException, url: StoreUrl | str, what: str, kind: type[_Error]) -> _Error: ...
def explain(error: BaseException, url: StoreUrl | str, what: str, kind: type[ClientError] = InputError) -> ClientError:
    """A TensorStore failure (``STATUS: detail``) as one line naming ``url`` and the fix."""
    text = re.split(r" \[(?:tensorstore_spec|http_response_body|x-amz[a-z-]*)=", str(error))[0].strip()  # no response bodies
    status = text.split(":", 1)[0]
    detail = text.split(":", 1)[-1].strip().splitlines()[0] if text else type(error).__name__
    if "was ignored by server" in text:  # a byte-range read answered with the whole file
        return kind(f"{url}: the HTTP server ignores Range requests, which sharded Zarr v3 needs; serve the volume with a "
                    "server that supports them (nginx, Apache, `npx http-server`, `rclone serve http`; not `python -m http.server`)")
    if "NoSuchBucket" in text or "bucket does not exist" in text.lower():
        host = url.host if isinstance(url, StoreUrl) else str(url)
        return kind(f"{url}: bucket {host} does not exist; check the name (and --s3-endpoint)")
    if "CURL error" in text or status in ("UNAVAILABLE", "DEADLINE_EXCEEDED") or "Could not resolve" in text:
        curl = re.search(r"CURL error ([^\[]+)", text)
        reason = curl[1].strip() if curl else detail
        return kind(f"{url}: cannot reach the host ({reason}); check the URL, the network and --s3-endpoint")
    if status in ("PERMISSION_DENIED", "UNAUTHENTICATED") or " 403" in text or "AccessDenied" in text:
        return kind(f"{url}: access denied ({detail}); check the credentials (AWS_* variables, ~/.aws) and the bucket's permissions")
    if status == "NOT_FOUND":
        return kind(f"{url}: no {what} there ({detail}); check the path")
    if "retry attempts failed" in text:
        return kind(f"{url}: cannot read {what} ({detail}); the store kept failing after retries: check it, then run again")
    return kind(f"{url}: cannot read {what} ({detail})")


def argument(text: str, *, s3_endpoint: str | None = None, option: str = "input") -> Path | StoreUrl:
    """A command-line volume or ``--out``: a `StoreUrl` for ``SCHEME://...`` text, else
    the path as given (format detected later)."""
    return parse(text, s3_endpoint=s3_endpoint, option=option) if has_scheme(text) else Path(text)


def done(future: Any, url: StoreUrl, seconds: float | None = None) -> Any:
    """``future``'s result within ``seconds`` (`DEADLINE`); past it the request is
    cancelled (TensorStore would go on retrying) and the store named in one line."""
    seconds = DEADLINE if seconds is None else seconds
    try:
        return future.result(timeout=seconds)
    except TimeoutError:
        future.cancel()
        raise OutputError(f"--out {url}: the store did not answer within {seconds:.0f} s; check that the bucket exists and "
                          "the network (and --s3-endpoint)") from None


def write_all(kv: Any, url: StoreUrl, items: Iterable[tuple[str | bytes, bytes]], in_flight: int = IN_FLIGHT) -> int:
    """Write every ``(key, data)`` to the key-value store ``kv``, ``in_flight`` writes awaited
    together (each bounded by `done`), in order; the bytes written. TensorStore's own failures
    pass through for the caller's `explain`."""
    pending, written = [], 0
    for key, data in items:
        pending.append(kv.write(key, data))
        written += len(data)
        if len(pending) >= in_flight:
            for future in pending:
                done(future, url)
            pending = []
    for future in pending:
        done(future, url)
    return written
