"""Blockwise with nothing on a shared file system: the input (N5), the work store and the output
(precomputed) all on moto's S3 server on 127.0.0.1, the model behind a real tritonserver, and a
joined cluster of ``dask scheduler`` + ``dask worker`` processes started in another folder that
cannot see the client's temporary folders (a mount namespace hides them, where ``unshare``
works) — the labels bitwise equal to the in-memory mode's, and no object left of the work store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from blockwise.blockwise_support import stop_processes
from stores.stores_support import S3_ENV, bucket_keys, s3_with_bucket, write_n5
from test_segment_e2e import blobs_volume

import skoots_client

DASK = [sys.executable, "-m", "dask"]  # this interpreter: the code under test, whatever the `dask` script's shebang names
SHAPE_ZYX = (12, 56, 56)
BLOCK_ZYX = (4, 16, 16)  # one crop of the e2e model per block: 18 blocks


def _hidden(folder: Path, command: list[str]) -> list[str]:
    """``command`` in a mount namespace where ``folder`` is an empty tmpfs, where that works."""
    probe = ["unshare", "--mount", "--propagation", "private", "true"]
    if shutil.which("unshare") is None or subprocess.run(probe, capture_output=True).returncode != 0:
        return command
    script = f'mount -t tmpfs tmpfs "{folder}" && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *command]


@pytest.fixture
def s3():
    with s3_with_bucket("data") as endpoint:
        yield endpoint


@pytest.mark.slow
def test_input_work_and_output_on_s3_with_a_joined_cluster_that_sees_no_client_path(
        s3: str, triton_server, e2e_repository: Path, tmp_path: Path, tmp_path_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorstore as ts

    zyx = blobs_volume(SHAPE_ZYX, seed=3)
    kvstore = {"driver": "s3", "bucket": "data", "endpoint": s3, "aws_region": "us-east-1", "aws_credentials": {"type": "environment"}}
    write_n5(None, zyx, kvstore={**kvstore, "path": "raw/"})
    client_folder = tmp_path / "client"
    client_folder.mkdir()
    monkeypatch.chdir(client_folder)
    common = dict(device="cpu", quiet=True, tile="crop", s3_endpoint=s3)
    skoots_client.segment("n5://s3://data/raw", out=client_folder / "expected.tif", repository=e2e_repository, **common)
    expected = tifffile.imread(client_folder / "expected.tif")
    assert expected.max() >= 5

    elsewhere = Path(os.environ.get("TMPDIR", "/tmp")) / f"skoots-workers-{os.getpid()}"
    elsewhere.mkdir(exist_ok=True)
    hidden = tmp_path_factory.getbasetemp()  # every temporary path of the client, the model repository's included
    env = {**os.environ, **S3_ENV}
    file = elsewhere / "scheduler.json"
    scheduler = subprocess.Popen([*DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(file)],
                                 cwd=elsewhere, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[subprocess.Popen] = []
    try:
        deadline = time.monotonic() + 60
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(file.read_text())["address"]
        workers = [subprocess.Popen(_hidden(hidden, [*DASK, "worker", address, "--nworkers", "1", "--nthreads", "1", "--host", "127.0.0.1",
                                                     "--no-dashboard"]), cwd=elsewhere, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
        from distributed import Client

        with Client(address) as client:
            client.wait_for_workers(2, timeout=120)
            seen = client.run(lambda: os.path.exists(str(hidden / "client")))
            assert len(seen) == 2 and (not any(seen.values()) or _hidden(hidden, ["x"]) == ["x"])
        text = skoots_client.segment("n5://s3://data/raw", out="precomputed://s3://data/labels", url=[triton_server.grpc_url],
                                     work_dir="s3://data/run.work", blockwise=True, scheduler=address, block=BLOCK_ZYX, **common).summary
    finally:
        stop_processes([*workers, scheduler])
    assert "blockwise: 18 blocks" in text, text
    got = ts.open({"driver": "neuroglancer_precomputed", "kvstore": {**kvstore, "path": "labels/"}}).result().read().result()[..., 0].T
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    keys = bucket_keys(s3, "data")
    assert not [k for k in keys if k.startswith("run.work/")], keys  # the work store is removed once the labels are in place
    assert "labels/info" in keys
    assert sorted(p.name for p in client_folder.iterdir()) == ["expected.tif"], "nothing local beside the client"
    assert sorted(p.name for p in elsewhere.iterdir() if not p.name.startswith(("scheduler.json", "dask-"))) == []
    shutil.rmtree(elsewhere, ignore_errors=True)
