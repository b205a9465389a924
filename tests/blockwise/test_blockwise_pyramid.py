"""A blockwise ``.ome.zarr`` carries the in-memory writer's label pyramid: every level bitwise
equal, the same multiscales metadata, written region by region and resumed region by region."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from blockwise_support import PARAMETERS_FOR_TESTS, answers_store, blockwise_labels, in_memory_labels, local_cluster, tubes  # noqa: F401 - a fixture

from skoots_client.blockwise.pyramid import level_region_name, level_regions, sampled_indices
from skoots_client.errors import OutputError
from skoots_client.label_write import write_labels
from skoots_client.ngff import level_data, pyramid
from skoots_client.voxel_size import VoxelSize

SHAPE = (130, 128, 14)  # [X, Y, Z]; Z twice as long: levels (14, 130, 128), (14, 65, 64), then Z halves too: (7, 33, 32)
SIZE = VoxelSize((1.0, 1.0, 2.0), "micrometer")
PER_BLOCK = (2, 3, 2)  # write blocks and chunks of 32 x 48 x 8 voxels: none divides the volume


@pytest.mark.parametrize("chunks, size", [((8, 32, 48), (8, 32, 48)), ((4, 16, 16), (10, 40, 70)), ((64, 256, 256), (64, 256, 256))],
                         ids=["one-chunk", "chunks-rounded-down", "chunks-over-the-level"])
def test_level_regions_are_whole_chunks_and_sample_as_the_in_memory_writer(chunks, size) -> None:
    labels_xyz = np.random.default_rng(0).integers(0, 1000, (150, 133, 21)).astype(np.uint16)
    levels = pyramid((21, 150, 133), (1.0, 1.0, 1.0))
    assert len(levels) == 3
    labels_zxy = labels_xyz.transpose(2, 0, 1)
    regions = level_regions(levels, chunks, size)
    assert len({level_region_name(path, region) for path, region in regions}) == len(regions)
    for level in levels[1:]:
        built, cover = np.zeros(level.shape, labels_xyz.dtype), np.zeros(level.shape, np.int32)
        for path, region in regions:
            if path != level.path:
                continue
            for (lo, hi), n, c in zip(region, level.shape, chunks):
                chunk = min(n, c)
                assert lo % chunk == 0 and (hi % chunk == 0 or hi == n), "a region is whole chunks of its level"
            where = tuple(slice(lo, hi) for lo, hi in region)
            built[where] = labels_zxy[np.ix_(*sampled_indices(labels_zxy.shape, level.shape, region))]
            cover[where] += 1
        assert (cover == 1).all()
        assert np.array_equal(built, level_data(labels_xyz, level.shape, slice(None)))


@pytest.fixture(scope="module")
def answers(tmp_path_factory):
    vectors, skeleton = tubes(SHAPE, 120, PARAMETERS_FOR_TESTS.vector_scaling, radius=6.0, seed=5)
    folder = tmp_path_factory.mktemp("pyramid")
    return answers_store(folder, vectors, skeleton), in_memory_labels(vectors, skeleton, PARAMETERS_FOR_TESTS)


def in_memory_ome_zarr(folder: Path, labels_xyz: np.ndarray, version: str) -> Path:
    folder.mkdir()
    return write_labels(folder / "labels.ome.zarr", labels_xyz, voxel_size=SIZE, ngff_version=version)


def assert_same_label_images(got: Path, expected: Path) -> None:
    a, b = zarr.open_group(str(got), mode="r"), zarr.open_group(str(expected), mode="r")
    assert a.attrs.asdict() == b.attrs.asdict() and a.metadata.zarr_format == b.metadata.zarr_format
    ome = b.attrs.asdict().get("ome", b.attrs.asdict())
    paths = [d["path"] for d in ome["multiscales"][0]["datasets"]]
    assert paths == ["0", "1", "2"]
    for path in paths:
        assert a[path].dtype == b[path].dtype and np.array_equal(a[path][...], b[path][...]), f"level {path}"
    assert b["2"][...].any()


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_blockwise_ome_zarr_has_the_in_memory_pyramid(local_cluster, answers, tmp_path: Path, version) -> None:
    path, labels = answers
    _, result = blockwise_labels(tmp_path, path, SHAPE, PARAMETERS_FOR_TESTS, PER_BLOCK, scheduler=local_cluster.scheduler_address,
                                 out_name="labels.ome.zarr", voxel_size=SIZE, ngff_version=version)
    assert_same_label_images(tmp_path / "labels.ome.zarr", in_memory_ome_zarr(tmp_path / "memory", labels, version))
    assert result.done["pyramid"] == 14 and "pyramid" in result.seconds  # level 1: 2 x 3 x 2 regions, level 2: 1 x 2 x 1
    group = zarr.open_group(str(tmp_path / "labels.ome.zarr"), mode="r")
    for path in ("1", "2"):  # level 0's chunks, as level_regions takes them: its regions are whole chunks
        assert group[path].chunks == tuple(min(n, c) for n, c in zip(group[path].shape, group["0"].chunks))


def test_resume_redoes_only_the_pyramid_regions_unmarked_or_altered(local_cluster, answers, tmp_path: Path) -> None:
    path, labels = answers
    out = tmp_path / "labels.ome.zarr"
    out.mkdir()  # the final move refuses it: the run fails after its pyramid, its work directory kept
    options = dict(scheduler=local_cluster.scheduler_address, out_name=out.name, voxel_size=SIZE, resume=True)
    with pytest.raises(OutputError, match="exists; pass --overwrite.*run again with --resume"):
        blockwise_labels(tmp_path, path, SHAPE, PARAMETERS_FOR_TESTS, PER_BLOCK, overwrite=False, **options)
    work = tmp_path / "work"
    markers = sorted((work / "done" / "pyramid").iterdir())
    assert len(markers) == 14
    markers[0].unlink()
    [partial] = tmp_path.glob(f".{out.name}.partial-*")  # built beside the destination, renamed into place when whole
    assert not (work / "out").exists()
    level = zarr.open_array(str(partial / out.name / "1"), mode="r+")
    level[0:8, 32:64, 48:64] = level[0:8, 32:64, 48:64] + 1  # the region 1.0-8.32-64.48-64, unlike its marker now
    _, result = blockwise_labels(tmp_path, path, SHAPE, PARAMETERS_FOR_TESTS, PER_BLOCK, **options)
    assert result.done["pyramid"] == 2 and result.resumed["pyramid"] == 12 and result.done["write"] == 0
    assert_same_label_images(out, in_memory_ome_zarr(tmp_path / "memory", labels, "0.4"))
