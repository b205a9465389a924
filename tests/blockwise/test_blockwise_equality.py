"""Blockwise labels equal the in-memory mode's, bitwise, whatever the blocks (docs/SEMANTICS.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from blockwise_support import CROP, OVERLAP, PARAMETERS_FOR_TESTS, answers_store, blockwise_labels, in_memory_labels, local_cluster, tubes  # noqa: F401 - a fixture

from skoots_client import postprocess
from skoots_client.blockwise.blocks import BlockGrid

SHAPE = (70, 61, 23)  # 5 x 4 x 6 crops: no block size below divides it
PARAMETERS = PARAMETERS_FOR_TESTS


@pytest.fixture(scope="module")
def answers(tmp_path_factory):
    vectors, skeleton = tubes(SHAPE, 60, PARAMETERS.vector_scaling, radius=6.0, seed=3)
    folder = tmp_path_factory.mktemp("answers")
    return answers_store(folder, vectors, skeleton), vectors, skeleton


@pytest.mark.parametrize("per_block", [(1, 1, 1), (2, 3, 2), (3, 2, 4), (9, 9, 9)], ids=["one-crop", "2x3x2", "3x2x4", "single-block"])
def test_blockwise_equals_in_memory(local_cluster, answers, tmp_path: Path, per_block) -> None:
    path, vectors, skeleton = answers
    expected = in_memory_labels(vectors, skeleton, PARAMETERS)
    got, result = blockwise_labels(tmp_path, path, SHAPE, PARAMETERS, per_block, scheduler=local_cluster.scheduler_address)
    assert expected.max() > 20
    assert got.dtype == expected.dtype and np.array_equal(got, expected)


def test_the_halos_matter(local_cluster, answers, tmp_path: Path) -> None:
    """Embeddings cross into neighbouring blocks: halos smaller than docs/SEMANTICS.md's change labels."""
    path, vectors, skeleton = answers
    expected = in_memory_labels(vectors, skeleton, PARAMETERS)
    too_small = ((2, 2, 1), (1, 1, 1))  # docs/SEMANTICS.md's: (9, 9, 5) for labels, (5, 5, 3) for vectors
    got, _ = blockwise_labels(tmp_path, path, SHAPE, PARAMETERS, (1, 1, 1), scheduler=local_cluster.scheduler_address, halos=too_small)
    assert not np.array_equal(got, expected)


def test_reference_borders(local_cluster, tmp_path: Path) -> None:
    """The reference's unwritten frame (50, 50, 5) needs a volume wider than 100 voxels."""
    shape = (118, 109, 14)
    vectors, skeleton = tubes(shape, 120, PARAMETERS.vector_scaling, radius=6.0, seed=4)
    path = answers_store(tmp_path, vectors, skeleton)
    expected = in_memory_labels(vectors, skeleton, PARAMETERS, reference_borders=True)
    got, _ = blockwise_labels(tmp_path, path, shape, PARAMETERS, (2, 3, 1), scheduler=local_cluster.scheduler_address,
                              reference_borders=True, out_name="labels.ome.zarr")
    assert expected.max() > 10 and np.array_equal(got, expected)


def test_a_volume_without_objects(local_cluster, tmp_path: Path) -> None:
    shape = (40, 40, 12)
    vectors, skeleton = np.zeros((3, *shape), np.float16), np.zeros(shape, np.uint8)
    path = answers_store(tmp_path, vectors, skeleton)
    got, result = blockwise_labels(tmp_path, path, shape, PARAMETERS, (1, 1, 1), scheduler=local_cluster.scheduler_address)
    expected = in_memory_labels(vectors, skeleton, PARAMETERS)
    assert result.instances == 0 and got.dtype == expected.dtype == np.uint32 and not got.any()


def test_min_size_removes_the_same_instances_blockwise_with_sizes_summed_across_blocks(local_cluster, answers, tmp_path: Path) -> None:
    """--min-size: the in-memory labels are the oracle's (whole instances under the size gone,
    the rest renumbered by first appearance), and blockwise equals them bitwise, although some
    kept instances have fewer than min-size voxels in every block they cross."""
    path, vectors, skeleton = answers
    whole = in_memory_labels(vectors, skeleton, PARAMETERS)
    sizes = np.bincount(whole.ravel())[1:]
    min_size = int(np.median(sizes))
    oracle = whole.copy()
    oracle[np.isin(whole, np.flatnonzero(sizes < min_size) + 1)] = 0
    oracle = postprocess.renumber_labels(oracle)[0]
    expected = in_memory_labels(vectors, skeleton, PARAMETERS, min_size=min_size)
    assert expected.dtype == oracle.dtype and np.array_equal(expected, oracle)
    assert 5 < expected.max() < whole.max()
    got, result = blockwise_labels(tmp_path, path, SHAPE, PARAMETERS, (1, 1, 1), scheduler=local_cluster.scheduler_address,
                                   min_size=min_size)
    assert got.dtype == expected.dtype and np.array_equal(got, expected) and result.instances == expected.max()
    largest_part = np.zeros(expected.max() + 1, np.int64)
    for block in BlockGrid(SHAPE, CROP, OVERLAP, (1, 1, 1)).blocks:
        part = np.bincount(expected[block.slices].ravel(), minlength=len(largest_part))
        largest_part = np.maximum(largest_part, part)
    assert (largest_part[1:] < min_size).any(), "an instance kept only by summing its blocks"
