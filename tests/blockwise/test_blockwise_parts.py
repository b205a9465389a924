"""The parts of blockwise segmentation that need no cluster: the block grid, the equivalences
across faces, the work directory's markers, and the memory arithmetic."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from skoots_client import postprocess
from skoots_client.blockwise import sparse
from skoots_client.blockwise.blocks import (
    DEFAULT_WORKER_BUDGET,
    BlockGrid,
    block_peak_bytes,
    default_per_block,
    grow,
    largest_block,
    per_block_from_voxels,
)
from skoots_client.blockwise.equivalence import components, face_pairs, global_order
from skoots_client.blockwise.output import check_tiff_fits
from skoots_client.blockwise.store import FORMAT, BlockStore
from skoots_client.errors import OutputError
from skoots_client.memory import in_memory_bytes
from skoots_client.run_stats import RunStats

CASES = [
    ((70, 61, 23), (24, 24, 8), (4, 4, 2), (1, 1, 1), False),
    ((70, 61, 23), (24, 24, 8), (4, 4, 2), (2, 3, 2), True),
    ((600, 530, 47), (300, 300, 20), (10, 10, 5), (1, 1, 2), False),
    ((10, 9, 5), (24, 24, 8), (4, 4, 2), (3, 3, 3), False),  # smaller than a crop
    ((121, 118, 30), (24, 24, 8), (4, 4, 2), (4, 2, 3), True),
]


@pytest.mark.parametrize("shape, crop, overlap, per_block, reference_borders", CASES)
def test_blocks_partition_the_volume_and_each_crop_is_in_one_block(shape, crop, overlap, per_block, reference_borders) -> None:
    grid = BlockGrid(shape, crop, overlap, per_block, reference_borders)
    cover = np.zeros(shape, np.int32)
    seen = []
    for block in grid.blocks:
        cover[block.slices] += 1
        for c in block.crops:
            seen.append(c.index)
            assert all(a <= lo and hi <= b for (lo, hi), (a, b) in zip(c.owned, block.region)), "a crop writes only its block"
    assert (cover == 1).all()
    assert sorted(seen) == list(range(len(grid.crops)))


@pytest.mark.parametrize("shape, crop, overlap, per_block, reference_borders", CASES)
def test_no_two_output_blocks_share_a_chunk(shape, crop, overlap, per_block, reference_borders) -> None:
    grid = BlockGrid(shape, crop, overlap, per_block, reference_borders)
    for axis in grid.axes:
        assert axis.write % axis.chunk == 0 or axis.write == axis.length  # output blocks are whole chunks
    cover = np.zeros(shape, np.int32)
    for region in grid.write_regions():
        cover[tuple(slice(*r) for r in region)] += 1
    assert (cover == 1).all()


def test_block_option_rounds_to_whole_crop_steps() -> None:
    assert per_block_from_voxels((1000, 560, 1), (300, 300, 20), (10, 10, 5), (5000, 5000, 500)) == (4, 2, 1)


def test_default_blocks_keep_a_worker_within_its_budget() -> None:
    halos = postprocess.halo_widths((60.0, 60.0, 12.0), 2)
    shape, crop, overlap = (20000, 20000, 2000), (300, 300, 20), (10, 10, 5)
    for budget in (256 << 20, 1536 << 20, 8 << 30):
        k = default_per_block(shape, crop, overlap, *halos, budget=budget)
        extent = [kk * (c - 2 * o) for kk, c, o in zip(k, crop, overlap)]
        assert block_peak_bytes(extent, *halos) <= budget or k == (1, 1, 1)
    assert default_per_block(shape, crop, overlap, *halos, budget=1) == (1, 1, 1)
    assert default_per_block((100, 100, 20), crop, overlap, *halos) == (1, 1, 1)  # one crop: one block


@pytest.mark.parametrize("shape", [(840, 840, 100), (1680, 1680, 100), (850, 5000, 37), (20000, 20000, 2000)])
def test_the_largest_default_block_is_within_the_budget(shape) -> None:
    """Edge blocks take the volume's edges and a snapped last crop: the estimate is of the
    grid's largest block (840 in 300-voxel crops is one 840-voxel block at 2 crops a block)."""
    halos = postprocess.halo_widths((60.0, 60.0, 12.0), 2)
    crop, overlap = (300, 300, 20), (10, 10, 5)
    assert BlockGrid((840, 840, 100), crop, overlap, (2, 2, 9)).largest == (840, 840, 100)
    k = default_per_block(shape, crop, overlap, *halos)
    if math.prod(shape) < 1e9:
        assert BlockGrid(shape, crop, overlap, k).largest == largest_block(shape, crop, overlap, k)
    assert block_peak_bytes(largest_block(shape, crop, overlap, k), *halos) <= DEFAULT_WORKER_BUDGET or k == (1, 1, 1)


def test_grow_clamps_to_the_volume() -> None:
    assert grow(((0, 10), (5, 20), (30, 40)), (3, 3, 3), (12, 100, 41)) == ((0, 12), (2, 23), (27, 41))


def test_face_pairs_and_components_join_labels_across_faces() -> None:
    assert face_pairs(np.array([[1, 0]]), np.array([[0, 2]])).shape == (0, 2)
    with pytest.raises(ValueError, match="facing planes differ"):
        face_pairs(np.zeros((2, 2)), np.zeros((2, 3)))
    # block 0 has labels 1, 2; block 1 has 1; block 2 has 1, 2: 0.1~1.1, 1.1~2.2 → {0.1, 1.1, 2.2}, {0.2}, {2.1}
    tables, count = components([2, 1, 2], [(0, 1, np.array([[1, 1]])), (1, 2, np.array([[1, 2]]))])
    assert count == 3
    assert tables[0][1] == tables[1][1] == tables[2][2]
    assert len({tables[0][1], tables[0][2], tables[2][1]}) == 3 and all(t[0] == 0 for t in tables)


def test_global_order_is_each_labels_smallest_index() -> None:
    keys, ranks = global_order([(np.array([7, 3]), np.array([10, 40])), (np.array([3, 9]), np.array([5, 60]))])
    assert dict(zip(keys.tolist(), ranks.tolist())) == {3: 1, 7: 2, 9: 3}


def test_a_torn_or_altered_marker_is_ignored(tmp_path: Path) -> None:
    store = BlockStore(tmp_path / "w", {"a": 1})
    store.create()
    store.mark("infer", "0.0.0", 123, {"crops": 2})
    store.mark("infer", "0.0.1", 456)
    path = tmp_path / "w" / "done" / "infer" / "0.0.1"
    path.write_bytes(path.read_bytes()[:-3])
    assert store.done("infer") == {"0.0.0": (123, {"crops": 2})}
    with pytest.raises(OutputError, match="in use by another segment run"):
        BlockStore(tmp_path / "w", {"a": 1}).create()
    store.close()
    with pytest.raises(OutputError, match="made for another run"):
        BlockStore(tmp_path / "w", {"a": 2}).check()


def test_each_stage_has_its_verifier_and_a_block_checks_out_only_as_marked(tmp_path: Path) -> None:
    """On resume a block marked done is reused only while its data still has the marked CRC;
    a block whose files are gone is done again (False), never an error."""
    from types import SimpleNamespace

    from skoots_client.atomic import crc
    from skoots_client.blockwise import stages
    from skoots_client.blockwise.encoding import encode
    from skoots_client.blockwise.stage_runner import VERIFIERS
    from skoots_client.blockwise.store import STAGES

    assert set(VERIFIERS) == set(STAGES)
    store = BlockStore(tmp_path / "w", {"a": 1})
    store.create()
    job = SimpleNamespace(store=store)
    ids = np.zeros((4, 3, 2), np.uint32)
    ids[1, 2, 1] = 7
    data = encode(ids)
    store.put("assigned/0.0.0.bin", data)
    store.save_npz("firsts", "0.0.0", labels=np.array([7], np.uint32))
    checksum = crc(np.frombuffer(data, np.uint8))
    assert stages.VERIFIERS["assign"](job, "0.0.0", checksum)
    assert not stages.verify_assign(job, "0.0.0", checksum + 1)  # altered
    assert not stages.verify_assign(job, "0.0.1", checksum)  # gone
    assert not stages.verify_infer(job, "0.0.0", checksum)  # the infer stage checks its own files
    assert not stages.verify_pyramid(job, "1.0-2.0-2.0-2", 0, str(tmp_path / "none.zarr"))
    store.close()


def test_memory_estimates() -> None:
    assert in_memory_bytes((1000, 1000, 100)) == 14 * 10**8
    check_tiff_fits(Path("l.zarr"), (10**4, 10**4, 10**3), memory=1)
    with pytest.raises(OutputError, match=r"use --out NAME.zarr or NAME.ome.zarr"):
        check_tiff_fits(Path("l.tif"), (100, 100, 10), memory=1000)


def test_assign_window_refuses_a_region_outside_its_vectors() -> None:
    with pytest.raises(ValueError, match="is not inside the vectors window"):
        postprocess.assign_window(np.zeros((3, 4, 4, 4), np.float16), (0, 0, 0), np.zeros((4, 4, 4), np.uint32), (0, 0, 0),
                                  ((0, 5), (0, 4), (0, 4)), (8, 8, 8), (1.0, 1.0, 1.0), 2)
    with pytest.raises(ValueError, match="need vectors"):
        postprocess.assign_window(np.zeros((4, 4, 4), np.float16), (0, 0, 0), np.zeros((4, 4, 4), np.uint32), (0, 0, 0),
                                  ((0, 4), (0, 4), (0, 4)), (8, 8, 8), (1.0, 1.0, 1.0), 2)
    with pytest.raises(ValueError, match="iterations must be at least 1"):
        postprocess.assign_window(np.zeros((3, 4, 4, 4), np.float16), (0, 0, 0), np.zeros((4, 4, 4), np.uint32), (0, 0, 0),
                                  ((0, 4), (0, 4), (0, 4)), (8, 8, 8), (1.0, 1.0, 1.0), 0)


def test_assign_window_equals_the_whole_volume_restricted() -> None:
    rng = np.random.default_rng(0)
    shape, scaling = (30, 28, 12), (3.0, 2.5, 1.5)
    vectors = rng.uniform(-1, 1, (3, *shape)).astype(np.float16)
    labels = rng.integers(0, 50, shape).astype(np.uint32)
    whole = postprocess.assign_instances(vectors, labels, scaling, 3)
    region = ((7, 19), (0, 9), (5, 12))
    lh, vh = postprocess.halo_widths(scaling, 3)
    la, va = grow(region, lh, shape), grow(region, vh, shape)
    got = postprocess.assign_window(vectors[(slice(None), *(slice(*r) for r in va))], [a for a, _ in va],
                                    labels[tuple(slice(*r) for r in la)], [a for a, _ in la], region, shape, scaling, 3)
    assert np.array_equal(got, whole[tuple(slice(*r) for r in region)])


def test_first_appearances_and_tables() -> None:
    labels = np.array([[[0, 5, 2], [5, 9, 0]]], np.uint32)
    values, at = postprocess.first_appearances(labels)
    assert values.tolist() == [5, 2, 9] and at.tolist() == [1, 2, 4]
    assert postprocess.apply_table(labels, np.array([2, 5, 9]), np.array([2, 1, 3]), np.uint8).tolist() == [[[0, 1, 2], [1, 3, 0]]]


def test_a_work_directory_left_behind_needs_resume(tmp_path: Path) -> None:
    from blockwise_support import PARAMETERS_FOR_TESTS, job_for, run_options

    from skoots_client.blockwise.pipeline import segment_job
    from skoots_client.progress import Watch

    job = job_for(tmp_path, (40, 40, 12), PARAMETERS_FOR_TESTS, (1, 1, 1))
    job.work.mkdir()
    with pytest.raises(OutputError, match="is not a segment work directory"):
        segment_job(run_options(job, tmp_path / "l.zarr", scheduler="tcp://127.0.0.1:9"), Watch(quiet=True))
    (job.work / "fingerprint.json").write_text(json.dumps({"f": 1, "format": FORMAT, "blocks": [1, 1, 1]}))
    with pytest.raises(OutputError, match="left from an earlier run; pass --resume"):
        segment_job(run_options(job, tmp_path / "l.zarr", fingerprint={"f": 1}, scheduler="tcp://127.0.0.1:9"), Watch(quiet=True))


def test_sparse_blocks_rebuild_any_window() -> None:
    rng = np.random.default_rng(1)
    shape = (23, 17, 11)
    volume = (rng.random((3, *shape)) < 0.1) * rng.integers(1, 9, (3, *shape)).astype(np.float16)
    grid = BlockGrid(shape, (8, 8, 6), (1, 1, 1), (1, 2, 1))
    parts = [(b.region, *sparse.to_sparse(volume[(slice(None), *b.slices)])) for b in grid.blocks]
    for window in (((0, 23), (0, 17), (0, 11)), ((3, 9), (5, 16), (2, 3)), ((22, 23), (0, 1), (10, 11))):
        out = np.zeros((3, *(hi - lo for lo, hi in window)), np.float16)
        for region, at, values in parts:
            sparse.scatter(out, window, region, at, values)
        assert np.array_equal(out, volume[(slice(None), *(slice(*w) for w in window))])


def test_sparse_vectors_drop_negative_zeros_as_background() -> None:
    """The mask times a negative tanh is -0.0: background, which moves no embedding."""
    vectors = np.zeros((3, 2, 2, 2), np.float16)
    vectors[0, 0, 0, 1] = np.float16(-0.0)
    vectors[2, 1, 1, 1] = np.float16(-0.25)
    at, values = sparse.to_sparse(vectors)
    assert at.tolist() == [7] and values[:, 0].tolist() == [0.0, 0.0, -0.25]


def test_sparse_first_appearances_are_global_linear_indices() -> None:
    labels = np.zeros((4, 5, 6), np.uint32)
    labels[1, 2, 3], labels[2, 0, 0], labels[3, 4, 5] = 7, 3, 7
    block = ((10, 14), (20, 25), (0, 6))
    values, at = sparse.volume_first_appearances(*sparse.to_sparse(labels), block, (30, 40, 6))
    assert dict(zip(values.tolist(), at.tolist())) == {
        3: np.ravel_multi_index((12, 20, 0), (30, 40, 6)), 7: np.ravel_multi_index((11, 22, 3), (30, 40, 6))}


def test_a_resumed_stage_is_reported_resumed_and_rates_count_only_work_done() -> None:
    """Issue 17: a fully resumed run printed ``infer 0.00s (4.05e+04 Mvoxels/s)`` and a worker
    peak for work it never did."""
    voxels = 25 * 10**6
    resumed = RunStats(10, 50, blocks=25, workers=2, seconds={"infer": 0.0006, "label": 0.5, "assign": 0.0004, "order": 0.01, "write": 0.02},
                              done={"infer": 0, "label": 25, "assign": 0, "write": 0},
                              resumed={"infer": 25, "label": 0, "assign": 25, "write": 1})
    assert resumed.lines(voxels, None) == [
        "blockwise: 25 blocks on 2 workers; infer resumed (25 blocks), label 0.50s (50 Mvoxels/s), assign resumed (25 blocks), "
        "order 0.01s (2.5e+03 Mvoxels/s), write resumed (1 block)",
        "resumed 25 infer, 25 assign, 1 write blocks from the work directory",
    ]
    partly = RunStats(10, 50, blocks=25, workers=2, seconds={"infer": 2.0}, done={"infer": 5}, resumed={"infer": 20}, peaks={"w:1": 300 << 20})
    assert partly.lines(voxels, None)[0].startswith("blockwise: 25 blocks on 2 workers, largest worker peak 300 MiB; infer 2.00s (2.5 Mvoxels/s)")
