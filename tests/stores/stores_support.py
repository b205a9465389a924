"""Real stores for the store tests: volumes written by TensorStore as the formats' own
writers lay them out (N5 dimensions x fastest, precomputed x, y, z, channel), a
``python -m http.server`` and a moto S3 server, both on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def blobs(shape_zyx: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Bright smooth blobs on a dim background, uint16 ``[Z, Y, X]``."""
    from scipy import ndimage

    field = ndimage.gaussian_filter(np.random.default_rng(seed).random(shape_zyx), sigma=(1, 3, 3))
    return ((field - field.min()) / (field.max() - field.min()) * 65535).astype(np.uint16)


def write_n5(path: Path | str, zyx: np.ndarray, resolution_xyz=(8.0, 4.0, 40.0), units: str = "nm", kvstore: dict | None = None) -> None:
    """An N5 dataset as BigDataViewer and n5-viewer write it: dimensions ``[x, y, z]``."""
    import tensorstore as ts

    store = ts.open({"driver": "n5", "kvstore": kvstore or {"driver": "file", "path": str(path)}, "create": True,
                     "metadata": {"dimensions": list(zyx.shape[::-1]), "blockSize": [16, 16, 4], "dataType": zyx.dtype.name,
                                  "compression": {"type": "gzip"}},
                     "schema": {"dimension_units": [[r, units] for r in resolution_xyz], "domain": {"labels": ["x", "y", "z"]}}}).result()
    store.write(zyx.T).result()


def write_precomputed(path: Path | str, zyx: np.ndarray, resolution_xyz=(8.0, 4.0, 40.0), kvstore: dict | None = None,
                      voxel_offset=(0, 0, 0)) -> None:
    """A precomputed image as CloudVolume / Igneous write it: ``[x, y, z, channel]``, resolution in nm."""
    import tensorstore as ts

    store = ts.open({"driver": "neuroglancer_precomputed", "kvstore": kvstore or {"driver": "file", "path": str(path)}, "create": True,
                     "multiscale_metadata": {"type": "image", "data_type": zyx.dtype.name, "num_channels": 1},
                     "scale_metadata": {"size": list(zyx.shape[::-1]), "resolution": list(resolution_xyz), "encoding": "raw",
                                        "chunk_size": [16, 16, 4], "voxel_offset": list(voxel_offset)}}).result()
    store.write(zyx.T[..., None]).result()


def write_zarr3_sharded(path: Path | str, zyx: np.ndarray) -> None:
    """A Zarr v3 array with the sharding codec (shards of 2 x 2 x 2 inner chunks), axes named."""
    import tensorstore as ts

    store = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}, "create": True,
                     "metadata": {"shape": list(zyx.shape), "data_type": zyx.dtype.name, "dimension_names": ["z", "y", "x"],
                                  "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [8, 32, 32]}},
                                  "codecs": [{"name": "sharding_indexed", "configuration": {
                                      "chunk_shape": [4, 16, 16], "codecs": [{"name": "bytes"}, {"name": "zstd"}]}}]}}).result()
    store.write(zyx).result()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited ({process.returncode})")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port}")


@contextlib.contextmanager
def _listening(command: list[str], what: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``command`` (which takes a free ``{port}``) until the block ends; yields its base URL."""
    port = free_port()
    process = subprocess.Popen([c.format(port=port) for c in command], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=env)
    try:
        _wait_for_port(port, process, what)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def http_server(folder: Path) -> contextlib.AbstractContextManager[str]:
    """``python -m http.server`` serving ``folder`` on 127.0.0.1; yields its base URL."""
    return _listening([sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1", "--directory", str(folder)],
                      "http.server")


# CloudFiles (CloudVolume's storage layer) reads AWS_SESSION_TOKEN whenever it takes keys from the environment.
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
          "AWS_DEFAULT_REGION": "us-east-1"}


def moto_server() -> contextlib.AbstractContextManager[str]:
    """moto's S3 server mode (``moto_server``) on 127.0.0.1; yields its endpoint URL."""
    return _listening([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "{port}"], "moto_server", {**os.environ, **S3_ENV})


def _s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"])  # the test's own, whatever a test took away


def make_bucket(endpoint: str, bucket: str) -> None:
    _s3_client(endpoint).create_bucket(Bucket=bucket)


def bucket_keys(endpoint: str, bucket: str) -> list[str]:
    """Every key in ``bucket``, sorted."""
    return sorted(o["Key"] for o in _s3_client(endpoint).list_objects_v2(Bucket=bucket).get("Contents", []))


@contextlib.contextmanager
def s3_with_bucket(bucket: str) -> Iterator[str]:
    """A moto S3 server with ``bucket``, and its test credentials in this process's environment
    while it runs (the Dask workers it starts inherit them); yields its endpoint URL."""
    saved = {k: os.environ.get(k) for k in S3_ENV}
    os.environ.update(S3_ENV)
    try:
        with moto_server() as endpoint:
            make_bucket(endpoint, bucket)
            yield endpoint
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line]
    assert len(lines) == 1, text
    return re.sub(r"\s+", " ", lines[0])


def moto_alias(s3_endpoint: str) -> None:
    """Make CloudFiles' ``moto://BUCKET/…`` name the S3 at ``s3_endpoint``, and drop what
    it kept for an earlier one: its pools are keyed by alias and bucket, so a
    later test's moto server on another port would otherwise be reached at the old one's (and it
    caches each path's parse, host included)."""
    from cloudfiles import paths
    from cloudfiles.interfaces import reset_connection_pools

    paths.add_alias("moto", f"s3://{s3_endpoint}/")
    paths.extract.cache_clear()
    paths.normalize.cache_clear()
    reset_connection_pools()


def cloudvolume_zyx(url: str, s3_endpoint: str | None = None, mip: int = 0) -> np.ndarray:
    """The labels at ``url`` (``precomputed://…``; its scale ``mip``) as CloudVolume reads them,
    ``[Z, Y, X]``; ``moto://BUCKET/…`` names ``s3_endpoint`` (CloudFiles' way to name an S3 that
    is not AWS)."""
    import warnings

    with warnings.catch_warnings():  # google-api-core, imported by CloudVolume, warns about a missing grpcio-status
        warnings.simplefilter("ignore", ImportWarning)
        from cloudvolume import CloudVolume

    if s3_endpoint is not None:
        moto_alias(s3_endpoint)
    return np.asarray(CloudVolume(url, mip=mip, progress=False)[:, :, :])[..., 0].T


def expected_labels(folder: Path) -> np.ndarray:
    """The TIFF run's labels that every store's run must equal (written by the stores_folder fixture)."""
    import tifffile

    return tifffile.imread(folder / "expected.tif")


class _Served:
    """What a loopback test server shares with the test: its URL and the requests it answered."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.requests = 0


@contextlib.contextmanager
def _threaded(handler: type, **options: str) -> Iterator[_Served]:
    """``handler`` (an ``http.server`` handler class, made with ``options``) on 127.0.0.1 in a
    thread of this process."""
    import functools
    import threading
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, **options))
    served = handler.served = _Served(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()


def failing_http_server(folder: Path, healthy: int, status: int = 404) -> contextlib.AbstractContextManager[_Served]:
    """An HTTP server of ``folder`` whose data files answer ``status`` after ``healthy`` were
    served (404: a host whose data goes away mid-run; 503: one that keeps failing); metadata
    (``info``, ``*.json``, ``.z*``) stays."""
    from http.server import SimpleHTTPRequestHandler

    class Handler(SimpleHTTPRequestHandler):
        served: _Served

        def do_GET(self) -> None:
            name = self.path.rstrip("/").rsplit("/", 1)[-1]
            if not (name == "info" or name.endswith(".json") or name.startswith(".z")):
                self.served.requests += 1
                if self.served.requests > healthy:
                    self.send_error(status)
                    return
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    return _threaded(Handler, directory=str(folder))


def counting_proxy(target: str) -> contextlib.AbstractContextManager[_Served]:
    """A loopback HTTP proxy to ``target`` (e.g. a moto server) that counts the requests it
    forwards: how many a client made."""
    import http.client
    from http.server import BaseHTTPRequestHandler
    from urllib.parse import urlsplit

    host = urlsplit(target).netloc

    class Handler(BaseHTTPRequestHandler):
        served: _Served
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            self.served.requests += 1
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            connection = http.client.HTTPConnection(host, timeout=30)
            connection.request(self.command, self.path, body, dict(self.headers))
            answer = connection.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            connection.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        def log_message(self, *args: object) -> None:
            pass

    return _threaded(Handler)


@contextlib.contextmanager
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder where writing fails even for root (permission bits do not stop root): a
    read-only tmpfs mounted on ``tmp_path/ro`` where ``mount`` works, else ``/sys`` (a pseudo
    file system that refuses new files though ``os.access`` says writable)."""
    import shutil
    import tempfile

    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = shutil.which("mount") and subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                                                        capture_output=True).returncode == 0
    try:
        if not mounted:
            folder = Path("/sys")
        try:
            tempfile.mkdtemp(dir=folder)
        except OSError:
            yield folder
            return
        import pytest

        pytest.skip("no folder here refuses writes (no mount, /sys writable)")
    finally:
        if mounted:
            subprocess.run(["umount", str(tmp_path / "ro")], capture_output=True)
