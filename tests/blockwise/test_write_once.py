"""Issue 29 (3): blockwise writes the labels once, straight into the destination, whole chunks or
shards per task, the metadata last. Labels read back bitwise equal to in memory for every output
kind, locally and on S3 (moto on 127.0.0.1); a run stopped in the write stage leaves no
metadata (nothing readable) and ``--resume`` completes it, skipping the regions written; no
staging object ever exists in the bucket; the work directory holds no Zarr."""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import numpy as np
import pytest
from blockwise_support import PARAMETERS_FOR_TESTS, job_for, local_cluster, run_options, tube_answers  # noqa: F401
from stores.stores_support import bucket_keys, s3_with_bucket

from skoots_client.blockwise.pipeline import segment_job
from skoots_client.errors import OutputError
from skoots_client.progress import Cancelled, Watch
from skoots_client.stores import export, parse
from skoots_client.stores import writer as store_writer
from skoots_client.volume_read import read_labels
from skoots_client.voxel_size import VoxelSize

SHAPE = (70, 61, 23)
PER_BLOCK = (2, 2, 2)
SIZE = VoxelSize((8.0, 4.0, 40.0), "nanometer")
SMALL_SHARDS = dict(chunk=16, shard_log2=1, shard_past=0)  # 32**3 shards: several per volume


@pytest.fixture(scope="module")
def answers(tmp_path_factory):
    return tube_answers(tmp_path_factory.mktemp("answers"), SHAPE, seed=5)


def run(folder: Path, answers: Path, out, *, scheduler: str | None, watch: Watch | None = None, **options):
    job = run_options(job_for(folder, SHAPE, PARAMETERS_FOR_TESTS, PER_BLOCK, answers), out, fingerprint={"test": str(answers)},
                      scheduler=scheduler, voxel_size=SIZE, **options)
    job = dataclasses.replace(job, volume=answers.parent / "raw.tif")  # the intensities an instance table measures
    if scheduler is None:
        job = dataclasses.replace(job, workers=2, threads=1)
    return segment_job(job, watch or Watch(quiet=True))


def store_xyz(url: str, s3: str | None = None) -> np.ndarray:
    """A precomputed or N5 output read back through TensorStore, runtime [X, Y, Z]."""
    import tensorstore as ts

    location = parse(url, s3_endpoint=s3)
    driver = "n5" if location.format == "n5" else "neuroglancer_precomputed"
    data = np.asarray(ts.open({"driver": driver, "kvstore": location.kvstore()}).result().read().result())
    return (data[..., 0] if data.ndim == 4 else data).transpose(1, 0, 2)


@pytest.fixture
def small_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client makes the spec the tasks get by value: shards of 32**3 from 16**3 chunks, one
    shard a task (a real volume's tasks take boxes of shards up to 64 MiB)."""
    monkeypatch.setattr(export, "spec", functools.partial(store_writer.spec, **SMALL_SHARDS))
    monkeypatch.setattr(export, "write_step", functools.partial(store_writer.write_step, most=0))


@pytest.mark.parametrize("name", ["labels.zarr", "labels.ome.zarr", "labels.tif", "precomputed://{}/seg", "n5://{}/seg.n5"])
def test_every_local_output_is_written_in_place_and_equals_in_memory(local_cluster, answers, tmp_path: Path, name: str) -> None:
    path, expected = answers
    out = parse(name.format(tmp_path / "out")) if "://" in name else tmp_path / "out" / name
    (tmp_path / "out").mkdir()
    result = run(tmp_path, path, out, scheduler=local_cluster.scheduler_address, table=tmp_path / "t.csv")
    got = store_xyz(str(out)) if "://" in name else read_labels(out).transpose(1, 2, 0)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [Path(str(out)).name]  # no partial folder left
    assert len(result.table["label"]) == expected.max() and "export" not in result.seconds


def test_sharded_precomputed_each_task_whole_shards(local_cluster, answers, tmp_path: Path, small_shards) -> None:
    path, expected = answers
    out = parse(f"precomputed://{tmp_path}/seg")
    result = run(tmp_path, path, out, scheduler=local_cluster.scheduler_address)
    info = json.loads((tmp_path / "seg" / "info").read_text())
    assert info["scales"][0]["sharding"]["@type"] == "neuroglancer_uint64_sharded_v1"
    assert np.array_equal(store_xyz(str(out)), expected)
    shards = list((tmp_path / "seg" / info["scales"][0]["key"]).glob("*.shard"))
    assert result.done["write"] == 3 * 2 == len(shards)  # 70 x 61 x 23 in shards of 32**3: a task each, each its file
    above = [list((tmp_path / "seg" / scale["key"]).glob("*.shard")) for scale in info["scales"][1:]]
    assert [len(s) for s in above] == [2, 1, 1] and result.done["pyramid"] == 3  # 35 x 31, 18 x 16, 9 x 8 (x 23); a task a box


def test_a_run_stopped_while_writing_leaves_no_metadata_and_resume_finishes_it(local_cluster, answers, tmp_path: Path,
                                                                               small_shards) -> None:
    path, expected = answers
    cases = {"precomputed": (parse(f"precomputed://{tmp_path}/seg"), tmp_path / "seg" / "info"),
             "n5": (parse(f"n5://{tmp_path}/seg.n5"), tmp_path / "seg.n5" / "attributes.json"),
             "zarr": (tmp_path / "seg.ome.zarr", tmp_path / "seg.ome.zarr")}
    for kind, (out, metadata) in cases.items():
        folder = tmp_path / kind
        folder.mkdir()

        def stop(stage: str, done: int, total: int) -> bool:
            return not (stage == "write" and done == total)  # every region written, nothing published

        with pytest.raises(Cancelled, match="finished blocks are kept in"):
            run(folder, path, out, scheduler=local_cluster.scheduler_address, watch=Watch(True, stop), resume=True)
        assert not metadata.exists(), kind  # written chunks, but nothing that makes them readable
        markers = sorted((folder / "work" / "done" / "write").iterdir())
        markers[0].unlink()  # a region whose task did not finish
        if kind == "precomputed":  # a shard changed since its marker: its CRC no longer checks out
            shard = sorted((tmp_path / "seg").rglob("*.shard"))[-1]
            shard.write_bytes(b"\0" * shard.stat().st_size)
        result = run(folder, path, out, scheduler=local_cluster.scheduler_address, resume=True)
        redone = 1 + (kind == "precomputed")
        assert result.done["write"] == redone and result.resumed["write"] == len(markers) - redone, kind  # the rest checked, skipped
        got = store_xyz(str(out)) if kind != "zarr" else read_labels(out).transpose(1, 2, 0)
        assert np.array_equal(got, expected), kind
        assert not (folder / "work").exists() and not list(tmp_path.glob(".seg*partial-*")), kind


def test_overwrite_removes_the_old_volume_before_writing_and_refuses_without(local_cluster, answers, tmp_path: Path) -> None:
    path, expected = answers
    out = parse(f"precomputed://{tmp_path}/seg")
    run(tmp_path, path, out, scheduler=local_cluster.scheduler_address)
    with pytest.raises(OutputError, match=rf"--out precomputed://{tmp_path}/seg exists; pass --overwrite to replace it"):
        run(tmp_path, path, out, scheduler=local_cluster.scheduler_address)
    old = next(p for p in (tmp_path / "seg").rglob("*-*") if p.is_file())
    old.write_bytes(b"stale")  # a chunk the new run overwrites: had it survived, the read would fail
    run(tmp_path, path, out, scheduler=local_cluster.scheduler_address, overwrite=True)
    assert np.array_equal(store_xyz(str(out)), expected)


@pytest.fixture(scope="module")
def s3():
    with s3_with_bucket("out") as endpoint:
        yield endpoint


@pytest.mark.parametrize("format", ["precomputed", "n5"])
def test_s3_outputs_are_written_once_with_no_staging_and_the_metadata_last(answers, s3: str, tmp_path: Path, format: str,
                                                                          small_shards) -> None:
    """The bucket is listed at every write-stage step: chunks under the destination only (no
    ``.NAME.partial-…`` prefix, ever), its metadata absent until the run publishes it."""
    path, expected = answers
    out = parse(f"{format}://s3://out/{format}", s3_endpoint=s3)
    metadata = f"{format}/{store_writer.METADATA[format]}"
    seen: list[list[str]] = []

    def look(stage: str, done: int, total: int, stop: bool = False) -> bool:
        if stage == "write":
            seen.append(bucket_keys(s3, "out"))
        return not (stop and stage == "write" and done == total)

    with pytest.raises(Cancelled):  # stopped once every region is written: nothing published
        run(tmp_path, path, out, scheduler=None, watch=Watch(True, functools.partial(look, stop=True)), table=tmp_path / "t.csv",
            resume=True)
    assert metadata not in bucket_keys(s3, "out") and any(k.startswith(f"{format}/") for k in bucket_keys(s3, "out"))
    result = run(tmp_path, path, out, scheduler=None, watch=Watch(True, look), table=tmp_path / "t.csv", resume=True)
    keys = bucket_keys(s3, "out")
    assert result.done["write"] == 0 and result.resumed["write"] >= 6  # checked against the bucket's objects, not rewritten
    assert len(seen) > 2 and all(metadata not in k for k in seen) and any(seen[-1])
    assert all(k.startswith(("precomputed/", "n5/")) for listed in [*seen, keys] for k in listed), keys  # no staging prefix, ever
    assert metadata in keys and np.array_equal(store_xyz(f"{format}://s3://out/{format}", s3), expected)


def test_tiff_is_gathered_from_the_work_store_and_the_work_directory_has_no_zarr(local_cluster, answers, tmp_path: Path) -> None:
    path, expected = answers
    made: list[list[str]] = []

    def look(stage: str, done: int, total: int) -> bool:
        if stage == "write":
            made.append(sorted(p.name for p in (tmp_path / "work").iterdir()))
        return True

    run(tmp_path, path, tmp_path / "labels.tif", scheduler=local_cluster.scheduler_address, watch=Watch(True, look))
    assert np.array_equal(read_labels(tmp_path / "labels.tif").transpose(1, 2, 0), expected)
    assert made and all("out" not in names for names in made)
