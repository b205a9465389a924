"""Bytes written per output voxel by a blockwise run's write stage, before (issue 29) and now:
a local precomputed, an S3 precomputed (moto on 127.0.0.1) and a local ``.zarr``.

    python benchmarks/output_writes.py [--shape 192,192,48] [--workers 2]

Now: the write stage writes the labels straight into the destination and publishes the metadata.
Before, a run wrote the labels into a Zarr in its work directory (the same Zarr array a
``.zarr`` output is: ``create_labels_array`` with the grid's chunks), then Dask tasks copied it
into a staging location of a precomputed / N5 output and published it (a rename locally, a second
full copy of every object on S3: ``writer.staged_store`` / ``publish``, still the in-memory
mode's store writer). So "before" is measured as its two parts, each by the code that did it: a
blockwise run into a ``.zarr`` (the work Zarr) plus ``write_store_labels`` of those labels (the
staged export and its publish); a local ``.zarr`` output was that Zarr moved into place (a
rename, or a copy when ``--work-dir`` is on another file system: both printed).

How bytes are counted: local files by a snapshot of every file's (inode, size, mtime) under the
run's folder (destination, its hidden siblings and the work directory) when the write stage
starts, when it ends and after the run: a file new or changed since the snapshot before counts
its size (a rename keeps inode and mtime: it counts nothing). S3: a loopback proxy in front of
moto sums the bodies of PUT / POST requests. The labels are deterministic, so one run of each
side suffices; the sides run one after the other in one process, on the same answers.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT / "tests", ROOT / "tests" / "blockwise"):
    sys.path.insert(0, str(path))

from blockwise_support import PARAMETERS_FOR_TESTS, answers_store, job_for, run_options, tubes  # noqa: E402
from stores.stores_support import S3_ENV, make_bucket, moto_server  # noqa: E402

from skoots_client.blockwise.pipeline import segment_job  # noqa: E402
from skoots_client.progress import Watch  # noqa: E402
from skoots_client.stores import parse  # noqa: E402
from skoots_client.stores.writer import write_store_labels  # noqa: E402
from skoots_client.volume_read import read_labels  # noqa: E402
from skoots_client.voxel_size import VoxelSize  # noqa: E402

SIZE = VoxelSize((8.0, 4.0, 40.0), "nanometer")


def snapshot(folder: Path) -> dict[int, tuple[int, int]]:
    """inode → (size, mtime) of every file below ``folder``."""
    found = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            with_stat = os.stat(os.path.join(dirpath, name))
            found[with_stat.st_ino] = (with_stat.st_size, with_stat.st_mtime_ns)
    return found


def written(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> int:
    return sum(size for inode, (size, mtime) in after.items() if before.get(inode, (None, None))[1] != mtime)


class Counter:
    """Bytes PUT / POSTed through the proxy (an S3 upload, a copy read back and put again)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.lock = threading.Lock()


@contextmanager
def counting_s3(target: str) -> Iterator[tuple[str, Counter]]:
    host, counter = urlsplit(target).netloc, Counter()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.command in ("PUT", "POST"):
                with counter.lock:
                    counter.bytes += len(body)
            connection = http.client.HTTPConnection(host, timeout=60)
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

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", counter
    finally:
        server.shutdown()


def blockwise(folder: Path, answers: Path, shape: tuple[int, int, int], out: Any, workers: int, counter: Counter | None = None) -> int:
    """A blockwise run into ``out``; bytes written from its write stage's start to its end."""
    folder.mkdir(parents=True, exist_ok=True)
    job = run_options(job_for(folder, shape, PARAMETERS_FOR_TESTS, (4, 4, 4), answers), out, fingerprint={"answers": str(answers)},
                      voxel_size=SIZE)
    job = dataclasses.replace(job, workers=workers, threads=1)
    marks: dict[str, Any] = {}

    def look(stage: str, done: int, total: int) -> bool:
        if stage == "write" and "start" not in marks:
            marks["start"], marks["s3"] = snapshot(folder), counter.bytes if counter else 0
        if stage == "write" and done == total:
            marks["end"] = snapshot(folder)
        return True

    segment_job(job, Watch(True, look))
    end = snapshot(folder)
    local = written(marks["start"], marks["end"]) + written(marks["end"], end)
    return local + ((counter.bytes - marks["s3"]) if counter else 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="192,192,48", help="volume X,Y,Z")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    voxels = int(np.prod(shape))
    os.environ.update(S3_ENV)
    with tempfile.TemporaryDirectory() as tmp, moto_server() as moto, counting_s3(moto) as (proxy, counter):
        root = Path(tmp)
        make_bucket(moto, "out")
        vectors, skeleton = tubes(shape, max(8, voxels // 20000), PARAMETERS_FOR_TESTS.vector_scaling, radius=5.0, seed=2)
        (root / "answers").mkdir()
        answers = answers_store(root / "answers", vectors, skeleton)
        work_zarr = blockwise(root / "before-zarr", answers, shape, root / "before-zarr" / "labels.zarr", args.workers)
        labels = read_labels(root / "before-zarr" / "labels.zarr").transpose(1, 2, 0)
        (root / "before-pre").mkdir()
        before_local = snapshot(root / "before-pre")
        write_store_labels(parse(f"precomputed://{root}/before-pre/seg"), labels, voxel_size=SIZE)
        export_local = written(before_local, snapshot(root / "before-pre"))
        start = counter.bytes
        write_store_labels(parse("precomputed://s3://out/before", s3_endpoint=proxy), labels, voxel_size=SIZE)
        export_s3 = counter.bytes - start
        now = {
            "local precomputed": blockwise(root / "now-pre", answers, shape, parse(f"precomputed://{root}/now-pre/seg"), args.workers),
            "s3 precomputed": blockwise(root / "now-s3", answers, shape, parse("precomputed://s3://out/now", s3_endpoint=proxy),
                                        args.workers, counter),
            "local .zarr": blockwise(root / "now-zarr", answers, shape, root / "now-zarr" / "labels.zarr", args.workers),
        }
        before = {"local precomputed": work_zarr + export_local, "s3 precomputed": work_zarr + export_s3,
                  "local .zarr": work_zarr, "local .zarr, --work-dir on another fs": 2 * work_zarr}
        now["local .zarr, --work-dir on another fs"] = now["local .zarr"]
        print(f"{shape[0]}x{shape[1]}x{shape[2]} = {voxels / 1e6:.2f} Mvoxels, labels uint32, {int(labels.max())} instances, "
              f"{args.workers} workers; bytes written per output voxel (write stage + publish):")
        print(f"  before: work Zarr {work_zarr / voxels:.3f} B/voxel; staged export + publish: local {export_local / voxels:.3f}, "
              f"s3 {export_s3 / voxels:.3f}")
        for name in before:
            print(f"  {name:40s} before {before[name] / voxels:7.3f}  now {now[name] / voxels:7.3f}  "
                  f"(now/before {now[name] / max(before[name], 1):.2f})")


if __name__ == "__main__":
    main()
