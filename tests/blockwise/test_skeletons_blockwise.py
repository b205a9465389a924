"""``--skeletons --blockwise``: each write region's instance skeletons traced on the workers
(one voxel of overlap), merged per id bucket, written into the precomputed output before its
``info``; the same ids as in memory, lengths close to the in-memory graphs', the table's graph
length equal to what CloudVolume reads, and ``--resume`` skipping finished regions and buckets."""

from __future__ import annotations

import dataclasses
import functools
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from blockwise_support import PARAMETERS_FOR_TESTS, answers_store, job_for, local_cluster, run_options, tubes  # noqa: F401

from skoots_client import postprocess
from skoots_client.blockwise import skeleton_stage
from skoots_client.blockwise.pipeline import segment_job
from skoots_client.progress import Cancelled, Watch
from skoots_client.skeletons import graph_lengths, skeleton_ids, trace_predicted
from skoots_client.stores import export, parse
from skoots_client.stores import writer as store_writer
from skoots_client.voxel_size import VoxelSize

SHAPE = (70, 61, 23)
PER_BLOCK = (2, 2, 2)
SIZE = VoxelSize((8.0, 4.0, 40.0), "nanometer")
RESOLUTION = np.array([4.0, 8.0, 40.0])  # nm per file axis: x (columns), y (rows), z
LENGTH_TOLERANCE = 0.25  # blockwise graph length within 25 % of the in-memory one (median measured below ~5 %)


@pytest.fixture(scope="module")
def answers(tmp_path_factory):
    vectors, skeleton = tubes(SHAPE, 40, PARAMETERS_FOR_TESTS.vector_scaling, radius=5.0, seed=5)
    folder = tmp_path_factory.mktemp("answers")
    tifffile.imwrite(folder / "raw.tif", np.random.default_rng(0).integers(0, 999, SHAPE[::-1][:1] + SHAPE[:2], dtype=np.uint16))
    return answers_store(folder, vectors, skeleton), _in_memory(vectors, skeleton)


def _in_memory(vectors: np.ndarray, skeleton: np.ndarray) -> tuple[np.ndarray, dict[int, object]]:
    """The in-memory mode's labels and skeletons of the answers (segment_volume's steps, in_memory.py)."""
    p = PARAMETERS_FOR_TESTS
    skeleton_labels, _ = postprocess.label_skeleton(skeleton)
    labels = postprocess.assign_instances(vectors, skeleton_labels, p.vector_scaling, p.embedding_iterations)
    keys, first = postprocess.first_appearances(labels)
    final, _ = postprocess.renumber_labels(labels.copy())
    at = np.flatnonzero(skeleton_labels)
    ids = skeleton_ids(skeleton_labels.reshape(-1)[at], keys, final.reshape(-1)[first])
    keep = (ids != 0) & (final.reshape(-1)[at] == ids)
    return final, trace_predicted((at[keep], ids[keep]), SHAPE, SIZE)


@pytest.fixture
def small_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    """Write regions of one 32**3 shard each (several per volume, so instances cross them), and
    merge buckets of 4 ids (several merge tasks)."""
    monkeypatch.setattr(export, "spec", functools.partial(store_writer.spec, chunk=16, shard_log2=1, shard_past=0))
    monkeypatch.setattr(export, "write_step", functools.partial(store_writer.write_step, most=0))
    monkeypatch.setattr(skeleton_stage, "IDS_PER_BUCKET", 4)


def run(folder: Path, answers: Path, out, *, scheduler: str, watch: Watch | None = None, **options):
    job = run_options(job_for(folder, SHAPE, PARAMETERS_FOR_TESTS, PER_BLOCK, answers), out, fingerprint={"test": str(answers)},
                      scheduler=scheduler, voxel_size=SIZE, skeletons=True, **options)
    job = dataclasses.replace(job, volume=answers.parent / "raw.tif")
    return segment_job(job, watch or Watch(quiet=True))


def _store_xyz(path: Path) -> np.ndarray:
    import tensorstore as ts

    data = np.asarray(ts.open({"driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": str(path)}}).result().read().result())
    return data[..., 0].transpose(1, 0, 2)


def cloudvolume(path: Path):
    with warnings.catch_warnings():  # google-api-core, imported by CloudVolume, warns about a missing grpcio-status
        warnings.simplefilter("ignore", ImportWarning)
        from cloudvolume import CloudVolume
    return CloudVolume(f"precomputed://file://{path}", progress=False)


def test_blockwise_skeletons_are_the_in_memory_ones_merged_from_regions(local_cluster, answers, tmp_path: Path,
                                                                        small_shards) -> None:
    path, (labels_xyz, in_memory) = answers
    out = tmp_path / "seg"
    result = run(tmp_path, path, parse(f"precomputed://{out}"), scheduler=local_cluster.scheduler_address, table=tmp_path / "t.csv")
    assert result.totals["skeleton"] == 6 and result.totals["skeleton-merge"] == -(-result.instances // 4)
    assert np.array_equal(_store_xyz(out), labels_xyz)  # the labels do not change with --skeletons
    info = json.loads((out / "info").read_text())
    assert info["skeletons"] == "skeletons"
    ids = [int(i) for i in json.loads((out / "segment_properties" / "info").read_text())["inline"]["ids"]]
    assert ids == list(range(1, int(labels_xyz.max()) + 1))
    table = result.table  # the engine writes it to the --table file
    rows = {int(label): {"skeleton_graph_length_nm": length} for label, length in zip(table["label"], table["skeleton_graph_length_nm"])}
    vol = cloudvolume(out)
    ratios = []
    for segid in ids:
        skeleton = vol.skeleton.get(segid)
        assert float(rows[segid]["skeleton_graph_length_nm"]) == pytest.approx(skeleton.cable_length(), rel=1e-6, abs=1e-3)
        expected = in_memory.get(segid)
        assert (len(skeleton.vertices) > 0) == (expected is not None and len(expected.vertices) > 0), segid
        if len(skeleton.vertices) == 0:
            continue
        voxels = np.rint(skeleton.vertices / RESOLUTION).astype(int)  # x (columns), y (rows), z
        assert (labels_xyz[voxels[:, 1], voxels[:, 0], voxels[:, 2]] == segid).all(), segid  # on its instance's voxels
        ratios.append(skeleton.cable_length() / max(graph_lengths(in_memory, [segid], SIZE)[0], 1e-9))
    ratios = np.abs(np.array(ratios) - 1)
    print(f"blockwise vs in-memory graph length: median {np.median(ratios):.3f}, 90th percentile {np.quantile(ratios, 0.9):.3f}, "
          f"max {ratios.max():.3f} over {len(ratios)} instances")
    assert np.quantile(ratios, 0.9) <= LENGTH_TOLERANCE
    assert not (tmp_path / "work").exists()


def test_a_run_stopped_among_the_skeletons_publishes_nothing_and_resume_skips_what_is_done(local_cluster, answers, tmp_path: Path,
                                                                                        small_shards) -> None:
    path, (labels_xyz, _) = answers
    out = tmp_path / "seg"

    def stop(stage: str, done: int, total: int) -> bool:
        return not (stage == "skeleton-merge" and done >= 1)  # every region traced, one bucket merged

    with pytest.raises(Cancelled, match="finished blocks are kept in"):
        run(tmp_path, path, parse(f"precomputed://{out}"), scheduler=local_cluster.scheduler_address, watch=Watch(True, stop),
            resume=True)
    assert not (out / "info").exists() and (out / "skeletons").exists()  # objects written, nothing readable
    result = run(tmp_path, path, parse(f"precomputed://{out}"), scheduler=local_cluster.scheduler_address, resume=True)
    assert result.done["skeleton"] == 0 and result.resumed["skeleton"] == 6
    assert result.resumed["skeleton-merge"] >= 1 and result.done["skeleton-merge"] == result.totals["skeleton-merge"] - result.resumed["skeleton-merge"]
    vol = cloudvolume(out)
    assert json.loads((out / "info").read_text())["skeletons"] == "skeletons"
    assert sum(len(vol.skeleton.get(i).vertices) > 0 for i in range(1, int(labels_xyz.max()) + 1)) >= 100
