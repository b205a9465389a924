"""Issue 30 (5): a blockwise ``precomputed://`` output's pyramid. Every scale, read by CloudVolume
(``mip=k``), is bitwise equal to the in-memory writer's and to `mode_downsample` of the scale
below, locally and on S3 (moto on 127.0.0.1); a run stopped in the pyramid stage leaves no
``info`` and ``--resume`` finishes it, skipping the regions written; the ``info`` lists every
scale and keeps ``segment_properties``."""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import numpy as np
import pytest
from blockwise_support import PARAMETERS_FOR_TESTS, job_for, local_cluster, run_options, tube_answers  # noqa: F401
from stores.stores_support import cloudvolume_zyx, s3_with_bucket

from skoots_client.blockwise.pipeline import segment_job
from skoots_client.progress import Cancelled, Watch
from skoots_client.stores import export, parse
from skoots_client.stores import writer as store_writer
from skoots_client.stores.downsample import mode_downsample
from skoots_client.voxel_size import VoxelSize

SHAPE = (70, 61, 23)
PER_BLOCK = (2, 2, 2)
SIZE = VoxelSize((8.0, 4.0, 40.0), "nanometer")
OFFSET = (5, 2, 3)
SMALL = dict(chunk=16, shard_log2=1, shard_past=10000)  # 16**3 chunks: 4 scales; 32**3 shards past 10**4 voxels


@pytest.fixture(scope="module")
def answers(tmp_path_factory):
    return tube_answers(tmp_path_factory.mktemp("answers"), SHAPE, seed=7)


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    """The spec the client gives the tasks: small chunks, so a test-sized volume has a pyramid."""
    monkeypatch.setattr(export, "spec", functools.partial(store_writer.spec, **SMALL))


def run(folder: Path, answers: Path, out, *, scheduler: str | None, watch: Watch | None = None, **options):
    job = run_options(job_for(folder, SHAPE, PARAMETERS_FOR_TESTS, PER_BLOCK, answers), out, fingerprint={"test": str(answers)},
                      scheduler=scheduler, voxel_size=SIZE, **options)
    job = dataclasses.replace(job, volume=answers.parent / "raw.tif", offset=OFFSET)
    if scheduler is None:
        job = dataclasses.replace(job, workers=2, threads=1)
    return segment_job(job, watch or Watch(quiet=True))


def scales_xyz(url: str, s3: str | None = None) -> list[np.ndarray]:
    """Every scale CloudVolume reads at ``url``, runtime [X, Y, Z]."""
    info_scales = len(_info(url, s3)["scales"])
    return [cloudvolume_zyx(url, s3, mip=mip).transpose(1, 2, 0) for mip in range(info_scales)]


def _info(url: str, s3: str | None) -> dict:
    import tensorstore as ts

    location = parse(url.replace("moto://", "s3://").replace("file://", ""), s3_endpoint=s3)
    return json.loads(bytes(ts.KvStore.open(location.kvstore()).result().read("info").result().value))


def in_memory(tmp_path: Path, labels_xyz: np.ndarray) -> list[np.ndarray]:
    url = f"precomputed://{tmp_path}/memory"
    store_writer.write_store_labels(parse(url), labels_xyz, voxel_size=SIZE, offset=OFFSET, **SMALL)
    return scales_xyz(f"precomputed://file://{tmp_path}/memory")


def chain(labels_xyz: np.ndarray, info: dict) -> list[np.ndarray]:
    """The pure function applied scale after scale from level 0, with the info's factors."""
    levels = [labels_xyz]
    for below, scale in zip(info["scales"], info["scales"][1:]):
        fx, fy, fz = (round(a / b) for a, b in zip(scale["resolution"], below["resolution"]))
        levels.append(mode_downsample(levels[-1], (fy, fx, fz)))  # file x is the runtime's Y
    return levels


def test_blockwise_scales_equal_in_memory_and_the_mode_of_level_0(local_cluster, answers, tmp_path: Path, small) -> None:
    path, expected = answers
    out = parse(f"precomputed://{tmp_path}/seg")
    result = run(tmp_path, path, out, scheduler=local_cluster.scheduler_address, table=tmp_path / "t.csv")
    info = json.loads((tmp_path / "seg" / "info").read_text())
    assert [s["key"] for s in info["scales"]] == ["4_8_40", "8_16_40", "16_32_40", "32_64_80"] and len(expected.shape) == 3
    assert info["segment_properties"] == "segment_properties" and (tmp_path / "seg" / "segment_properties" / "info").exists()
    assert [("sharding" in s) for s in info["scales"]] == [True, True, False, False]  # 35x31x23 past 10**4 voxels, 18x16x23 not
    blockwise = scales_xyz(f"precomputed://file://{tmp_path}/seg")
    memory = in_memory(tmp_path, expected)
    assert json.loads((tmp_path / "memory" / "info").read_text())["scales"] == info["scales"]
    oracle = chain(expected, info)
    assert len(blockwise) == len(memory) == len(oracle) == 4
    for mip, (b, m, o) in enumerate(zip(blockwise, memory, oracle)):
        assert b.dtype == m.dtype == expected.dtype and np.array_equal(b, m) and np.array_equal(b, o), mip
    assert len(np.unique(blockwise[-1])) > 2  # the coarsest scale still shows objects
    assert result.done["pyramid"] == result.totals["pyramid"] == 4  # a task a box of whole shards or chunks (Z not grown): 1 + 2 + 1
    assert not (tmp_path / "work").exists()


def test_a_run_stopped_in_the_pyramid_stage_publishes_nothing_and_resume_finishes_it(local_cluster, answers, tmp_path: Path,
                                                                                    small) -> None:
    path, expected = answers
    out = parse(f"precomputed://{tmp_path}/seg")

    def stop(stage: str, done: int, total: int) -> bool:
        return not (stage == "pyramid" and done >= 1)

    with pytest.raises(Cancelled, match="finished blocks are kept in"):
        run(tmp_path, path, out, scheduler=local_cluster.scheduler_address, watch=Watch(True, stop), resume=True)
    assert not (tmp_path / "seg" / "info").exists()
    marked = sorted(p.name for p in (tmp_path / "work" / "done" / "pyramid").iterdir())
    assert marked and all(name.startswith("s1.") for name in marked)
    result = run(tmp_path, path, out, scheduler=local_cluster.scheduler_address, resume=True)
    assert result.resumed["pyramid"] == len(marked) and result.done["pyramid"] == result.totals["pyramid"] - len(marked)
    oracle = chain(expected, json.loads((tmp_path / "seg" / "info").read_text()))
    assert all(np.array_equal(b, o) for b, o in zip(scales_xyz(f"precomputed://file://{tmp_path}/seg"), oracle))


@pytest.mark.slow  # moto S3 (~11 s); the local blockwise scales are checked in the quick run
def test_s3_scales_equal_in_memory_with_the_info_last(answers, tmp_path: Path, small) -> None:
    path, expected = answers
    with s3_with_bucket("out") as s3:
        seen: list[bool] = []

        def look(stage: str, done: int, total: int) -> bool:
            if stage == "pyramid":
                seen.append(_has_info(s3))
            return True

        run(tmp_path, path, parse("precomputed://s3://out/seg", s3_endpoint=s3), scheduler=None, watch=Watch(True, look))
        store_writer.write_store_labels(parse("precomputed://s3://out/memory", s3_endpoint=s3), expected, voxel_size=SIZE,
                                        offset=OFFSET, **SMALL)
        blockwise, memory = scales_xyz("precomputed://moto://out/seg", s3), scales_xyz("precomputed://moto://out/memory", s3)
    assert seen and not any(seen)  # no info while the scales are written
    oracle = chain(expected, {"scales": [{"resolution": r} for r in ([4, 8, 40], [8, 16, 40], [16, 32, 40], [32, 64, 80])]})
    assert len(blockwise) == len(memory) == 4
    assert all(np.array_equal(b, m) and np.array_equal(b, o) for b, m, o in zip(blockwise, memory, oracle))


def _has_info(s3: str) -> bool:
    from stores.stores_support import bucket_keys

    return "seg/info" in bucket_keys(s3, "out")
