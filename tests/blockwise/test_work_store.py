"""The blockwise work store on a URL (moto's S3 server on 127.0.0.1): the same BlockStore code as
on a folder — sparse blocks read back by ranges (a halo fetches only its X planes), markers,
the fingerprint check, a lock a second run is refused by, cleanup that leaves no object — and
a bad work URL refused in one line before any work; a run interrupted on a URL resumes only the
blocks not marked or altered, and leaves no object once its labels are in place."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from blockwise_support import PARAMETERS_FOR_TESTS, answers_store, in_memory_labels, job_for, run_options, tubes
from stores.stores_support import bucket_keys, one_line, s3_with_bucket

from skoots_client.blockwise import sparse
from skoots_client.blockwise.objects import KvObjects
from skoots_client.blockwise.pipeline import segment_job
from skoots_client.blockwise.store import LOCK, BlockStore
from skoots_client.errors import OutputError
from skoots_client.progress import Cancelled, Watch
from skoots_client.stores import Location, parse
from skoots_client.volume_read import read_labels

CLIENT = str(Path(sys.executable).parent / "skoots-client")


@pytest.fixture(scope="module")
def s3() -> str:
    """A moto S3 server with bucket ``work``, its test credentials in this process's environment."""
    with s3_with_bucket("work") as endpoint:
        yield endpoint


def url_store(s3: str, key: str, fingerprint: dict | None = None) -> BlockStore:
    return BlockStore(parse(f"s3://work/{key}", s3_endpoint=s3), fingerprint)


@pytest.fixture(params=["folder", "s3"])
def store(request, tmp_path: Path) -> BlockStore:
    """The same work store on a folder and on a URL."""
    if request.param == "folder":
        return BlockStore(tmp_path / "w.work", {"run": 1})
    return url_store(request.getfixturevalue("s3"), f"{request.node.name}.work", {"run": 1})


def test_a_store_keeps_blocks_markers_and_leaves_nothing_when_removed(store: BlockStore) -> None:
    store.check()
    assert not store.exists()
    store.create()
    try:
        extent = (40, 30, 20)
        dense = np.zeros((3, *extent), np.float16)
        dense[:, 5:35:3, ::2, 1::4] = np.random.default_rng(0).random((3, 10, 15, 5)).astype(np.float16) + 1
        at, values = sparse.to_sparse(dense)
        store.save_sparse("vectors", "0.0.0", at, values)
        got_at, got_values = store.load_sparse("vectors", "0.0.0")
        assert np.array_equal(np.asarray(got_at), at) and np.array_equal(np.asarray(got_values), values)
        window = ((10, 20), (0, 30), (0, 20))  # X planes 10..19 of the block at the origin
        out = np.zeros((3, 10, 30, 20), np.float16)
        sparse.scatter(out, window, ((0, 40), (0, 30), (0, 20)), got_at, got_values)
        assert np.array_equal(out, dense[:, 10:20])
        store.save_npz("faces", "0.0.0", lo0=np.arange(4))
        assert np.array_equal(store.load_npz("faces", "0.0.0")["lo0"], np.arange(4))
        store.mark("infer", "0.0.0", 123, {"crops": 2})
        store.mark("infer", "0.0.1", 456)
        store.put("done/infer/0.0.1", store.get("done/infer/0.0.1")[:-3] + b"00\n")  # a marker altered: ignored
        assert store.done("infer") == {"0.0.0": (123, {"crops": 2})}
        assert store.keys("done/infer") == ["done/infer/0.0.0", "done/infer/0.0.1"] and store.exists()
    finally:
        store.remove()
    assert not store.exists() and not store.keys("done/infer")


def test_a_halo_reads_only_the_x_planes_it_needs(s3: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = url_store(s3, "halo.work")
    extent = (64, 64, 32)
    dense = (np.random.default_rng(1).random(extent) < 0.5).astype(np.uint32)  # 65k voxels: 16 samples of at
    at, values = sparse.to_sparse(dense)
    store.save_sparse("labels", "0.0.0", at, values)
    fetched: list[int] = []
    get_range, get = KvObjects.get_range, KvObjects.get
    monkeypatch.setattr(KvObjects, "get_range", lambda self, key, a, b: fetched.append(b - a) or get_range(self, key, a, b))
    monkeypatch.setattr(KvObjects, "get", lambda self, key: (data := get(self, key), fetched.append(len(data)))[0])  # the samples
    got_at, got_values = store.load_sparse("labels", "0.0.0")
    out = np.zeros((1, 2, 64, 32), np.uint32)
    sparse.scatter(out, ((30, 32), (0, 64), (0, 32)), ((0, 64), (0, 64), (0, 32)), got_at, got_values)
    assert np.array_equal(out[0], dense[30:32])
    whole = at.nbytes + values.nbytes
    assert sum(fetched) < whole / 8, (sum(fetched), whole)  # 2 of 64 planes, the headers, the samples (1/4096), two stretches
    store.remove()


def test_the_fingerprint_and_the_lock_hold_on_a_url(s3: str) -> None:
    first = url_store(s3, "locked.work", {"run": 1})
    first.check()
    first.create()
    try:
        assert f"locked.work/{LOCK}" in bucket_keys(s3, "work")
        with pytest.raises(OutputError, match=r"^work store s3://work/locked.work is in use by another segment run \(on .*s ago\); "
                                              "wait for it or pass another --work-dir$"):
            url_store(s3, "locked.work", {"run": 1}).create()
        with pytest.raises(OutputError, match=r"^work directory s3://work/locked.work was made for another run \(differs in: run\)"):
            url_store(s3, "locked.work", {"run": 2}).check()
    finally:
        first.close()
    assert f"locked.work/{LOCK}" not in bucket_keys(s3, "work"), "a run's lock goes with it"
    again = url_store(s3, "locked.work", {"run": 1})
    again.put(LOCK, json.dumps({"run": "killed", "host": "h", "pid": 1, "time": time.time() - 3600}).encode())
    again.create()  # a lock not renewed for an hour: its run was killed, and the store is taken over
    assert json.loads(again.get(LOCK))["run"] != "killed"
    again.remove()
    assert not [k for k in bucket_keys(s3, "work") if k.startswith("locked.work/")]
    stranger = url_store(s3, "stranger.work", {"run": 1})
    stranger.put("something", b"x")
    with pytest.raises(OutputError, match=r"^s3://work/stranger.work is not a segment work store \(no readable fingerprint.json\)"):
        stranger.check()
    stranger.delete("something")


def test_the_default_work_store_is_beside_an_s3_output(s3: str) -> None:
    url = parse("precomputed://s3://work/run/labels", s3_endpoint=s3)
    work = Location.of(url).work_dir
    assert str(work) == "s3://work/run/labels.work" and work.format is None and work.s3_endpoint == s3


def run_client(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CLIENT, *argv], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("case", ["no-bucket", "no-credentials", "no-bucket-named", "left-over", "in-memory", "http"])
def test_a_bad_work_url_is_one_line_before_any_work(case: str, s3: str, e2e_repository: Path, tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "v.tif", np.random.default_rng(0).integers(0, 256, (8, 24, 24), np.uint8))
    work = {"no-bucket": "s3://nowhere/w", "no-credentials": "s3://work/w", "no-bucket-named": "s3:///w", "left-over": "s3://work/left",
            "in-memory": "s3://work/w", "http": "http://127.0.0.1:9/w"}[case]
    env = {**os.environ}
    if case == "no-credentials":
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            env.pop(key, None)
        env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "none")
    if case == "left-over":
        url_store(s3, "left").put("fingerprint.json", b"{}")
    result = run_client("segment", str(tmp_path / "v.tif"), "-r", str(e2e_repository), "--device", "cpu",
                        *(["--blockwise", "--workers", "1"] if case != "in-memory" else []), "--out", str(tmp_path / "l.zarr"), "--s3-endpoint", s3,
                        *(["--work-dir", work] if case != "left-over" else ["--resume", "--work-dir", work]), env=env)
    line = one_line(result.stderr)
    assert result.returncode == 2, result.stderr
    assert {
        "no-bucket": "work store s3://nowhere/w: bucket nowhere does not exist; check the name (and --s3-endpoint)",
        "no-credentials": "--work-dir s3://work/w: no S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        "no-bucket-named": "--work-dir s3:///w: no bucket in the URL; write s3://BUCKET/PATH",
        "left-over": "work directory s3://work/left was made for another run",
        "in-memory": "--work-dir s3://work/w: only a --blockwise run keeps its work on a URL; pass a local folder, or --blockwise",
        "http": "--work-dir http://127.0.0.1:9/w: HTTP is read-only; give an s3:// or gs:// URL, or a folder",
    }[case] in line, line
    assert not (tmp_path / "l.zarr").exists()
    if case == "left-over":
        url_store(s3, "left").remove()
    assert not [k for k in bucket_keys(s3, "work") if k.startswith(("w/", "w.work"))]


RESUME_SHAPE = (70, 61, 23)  # [X, Y, Z]: 5 x 4 x 6 crops, blocks of 2 x 2 x 2 crops: 3 x 2 x 3 = 18 blocks


@pytest.mark.slow
def test_a_run_on_a_url_resumes_only_the_unmarked_or_altered_blocks_and_leaves_no_object(s3: str, tmp_path: Path) -> None:
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster:
        _resume_on_a_url(s3, cluster.scheduler_address, tmp_path)  # workers started with the S3 credentials in their environment


def _resume_on_a_url(s3: str, scheduler: str, tmp_path: Path) -> None:
    vectors, skeleton = tubes(RESUME_SHAPE, 20, PARAMETERS_FOR_TESTS.vector_scaling, seed=1)
    answers = answers_store(tmp_path, vectors, skeleton)
    expected = in_memory_labels(vectors, skeleton, PARAMETERS_FOR_TESTS)
    work = parse("s3://work/resumed.work", s3_endpoint=s3)
    job = dataclasses.replace(job_for(tmp_path, RESUME_SHAPE, PARAMETERS_FOR_TESTS, (2, 2, 2), answers), work=work)
    job = run_options(job, tmp_path / "labels.zarr", fingerprint={"test": "resume"}, scheduler=scheduler,
                      resume=True)
    blocks = len(job.grid.blocks)

    def stop_in_assign(stage: str, done: int, total: int) -> bool:
        return not (stage == "assign" and done >= 2)

    with pytest.raises(Cancelled, match=r"finished blocks are kept in s3://work/resumed.work; run again with --resume"):
        segment_job(job, Watch(True, stop_in_assign))
    store = BlockStore(work)
    assert len(store.done("infer")) == blocks and 2 <= len(assigned := store.done("assign")) < blocks
    assert store.keys("") == ["fingerprint.json"], "the run's lock went with it"
    names = sorted(store.done("infer"))
    store.delete(f"done/infer/{names[0]}")  # a block whose marker was never written: done again
    key = f"vectors/{names[1]}.bin"
    data = bytearray(store.get(key))
    data[-8:] = bytes(8)  # its vectors altered after it was marked: done again
    store.put(key, bytes(data))
    result = segment_job(job, Watch(quiet=True))
    assert result.done["infer"] == 2 and result.resumed["infer"] == blocks - 2
    assert result.done["assign"] == blocks - len(assigned) and result.resumed["assign"] == len(assigned)
    assert np.array_equal(read_labels(tmp_path / "labels.zarr").transpose(1, 2, 0), expected)
    assert not [k for k in bucket_keys(s3, "work") if k.startswith("resumed.work/")], "the work store is removed with the labels in place"
