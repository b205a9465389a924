"""The synthetic data generator: seeded, anisotropic, and its labels, raw image and targets agree."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from examples.synthetic import SyntheticSpec, generate, labels_path, write_volume
from examples.train import MODEL_CARD, VECTOR_SCALING, vector_targets
from skoots_client import postprocess
from skoots_client.evaluate import evaluate
from skoots_client.volume_read import read_volume

SMALL = SyntheticSpec(shape=(64, 64, 16))
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def volume():
    return generate(3, SMALL)


def test_same_seed_same_volume_and_other_seeds_differ(volume) -> None:
    again = generate(3, SMALL)
    for field in ("raw", "labels", "skeleton", "vectors"):
        assert np.array_equal(getattr(volume, field), getattr(again, field)), field
    other = generate(4, SMALL)
    assert not np.array_equal(volume.labels, other.labels)


def test_every_object_is_one_label_and_the_raw_image_shows_them(volume) -> None:
    ids = np.unique(volume.labels)
    assert ids[0] == 0 and np.array_equal(ids[1:], np.arange(1, len(volume.objects) + 1))
    assert len(volume.objects) >= 10
    inside, outside = volume.raw[volume.labels > 0].mean(), volume.raw[volume.labels == 0].mean()
    assert inside > 2 * outside, (inside, outside)
    assert volume.raw.dtype == np.uint8 and volume.labels.dtype == np.uint16


def test_z_voxels_are_coarser(volume) -> None:
    """Objects lie mostly in the x/y planes and z voxels are 3x larger: far fewer slices than columns."""
    extents = []
    for index in range(1, len(volume.objects) + 1):
        where = np.argwhere(volume.labels == index)
        extents.append(where.max(0) - where.min(0) + 1)
    extents = np.array(extents)
    assert np.median(extents[:, 2]) * 2 < np.median(extents[:, :2])


def test_some_objects_touch(volume) -> None:
    """Touching objects: voxels of two different labels are face neighbours somewhere."""
    touching = 0
    for axis in range(3):
        a, b = np.moveaxis(volume.labels, axis, 0)[1:], np.moveaxis(volume.labels, axis, 0)[:-1]
        touching += int(((a != b) & (a > 0) & (b > 0)).sum())
    assert touching > 0


def test_skeletons_lie_inside_their_own_objects_and_vectors_point_at_them(volume) -> None:
    labels, skeleton, vectors = volume.labels, volume.skeleton > 0, volume.vectors
    assert not (skeleton & (labels == 0)).any()
    assert set(np.unique(labels[skeleton])) == set(range(1, len(volume.objects) + 1))
    assert not vectors[:, labels == 0].any()
    objects = np.argwhere(labels > 0)
    landing = np.rint(objects + vectors[:, labels > 0].T).astype(int)
    own = labels[tuple(objects.T)]
    assert np.array_equal(labels[tuple(landing.T)], own)
    assert skeleton[tuple(landing.T)].all()
    assert not vectors[(slice(None), *landing.T)].any(), "centreline voxels hold zero vectors"


def test_ideal_network_outputs_reproduce_the_ground_truth(volume) -> None:
    """The targets, run through the runtime's post-processing with the demo model card's settings
    (dilations, vector scaling, N = 2), give back the labels exactly."""
    widths = postprocess.dilation_half_widths(MODEL_CARD["dilations_3d"], MODEL_CARD["dilations_2d"])
    skeleton_labels, _ = postprocess.label_skeleton(postprocess.dilate_skeleton(volume.skeleton, widths))
    vectors = vector_targets(volume.vectors, VECTOR_SCALING).astype(np.float16)
    labels = postprocess.assign_instances(vectors, skeleton_labels, VECTOR_SCALING, 2)
    scores = evaluate(labels, volume.labels)
    assert scores.matches[0].f1 == 1.0 and scores.matches[1].f1 == 1.0
    assert scores.adjusted_rand_index == 1.0


def test_vector_targets_fit_the_tanh_range(volume) -> None:
    scaled = vector_targets(volume.vectors, VECTOR_SCALING)
    assert np.abs(scaled).max() < 0.9, "VECTOR_SCALING must reach past the largest object radius"


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_files_are_zxy_stacks_the_client_reads(tmp_path: Path, dtype: str) -> None:
    spec = dataclasses.replace(SMALL, shape=(40, 36, 12), dtype=dtype)
    volume = generate(5, spec)
    raw_path, truth_path = write_volume(tmp_path / "v.tif", volume)
    assert truth_path == labels_path(raw_path) == tmp_path / "v_labels.tif"
    assert tifffile.imread(raw_path).shape == (12, 40, 36)
    read = read_volume(raw_path)
    assert read.shape == (40, 36, 12) and read.dtype == np.dtype(dtype)
    assert np.array_equal(np.asarray(read.data), volume.raw)
    assert np.array_equal(tifffile.imread(truth_path).transpose(1, 2, 0), volume.labels)


def test_command_line_writes_the_pair_and_refuses_bad_shapes(tmp_path: Path) -> None:
    run = lambda *a: subprocess.run([sys.executable, "-m", "examples.synthetic", *a], capture_output=True, text=True, cwd=REPO, timeout=120)  # noqa: E731
    done = run(str(tmp_path / "c.tif"), "--seed", "2", "--shape", "48,40,12", "--dtype", "uint16")
    assert done.returncode == 0, done.stderr
    assert tifffile.imread(tmp_path / "c.tif").dtype == np.uint16
    assert tifffile.imread(tmp_path / "c_labels.tif").shape == (12, 48, 40)
    for args, message in (
        ((str(tmp_path / "d.tif"), "--shape", "48,40"), "three positive integers X,Y,Z"),
        ((str(tmp_path / "d.png"),), "must be a .tif or .tiff file"),
        ((str(tmp_path / "nowhere" / "d.tif"),), "does not exist; create it first"),
    ):
        bad = run(*args)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tif", "c_labels.tif"]


def test_spec_is_checked() -> None:
    with pytest.raises(ValueError, match="must be uint8 or uint16"):
        SyntheticSpec(dtype="float32")
    with pytest.raises(ValueError, match="three positive lengths"):
        SyntheticSpec(shape=(4, 0, 4))
    with pytest.raises(ValueError, match="three positive voxel sizes"):
        SyntheticSpec(anisotropy=(1, 1, 0))
    with pytest.raises(ValueError, match="must lie in"):
        SyntheticSpec(blob_fraction=1.5)
