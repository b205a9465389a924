"""The PNG preview: projections against naive loops, the picture's size, and its path checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from skoots_client.errors import OutputError
from skoots_client.preview import (
    check_preview_path,
    colour_labels,
    label_colours,
    preview_size,
    project,
    write_preview,
)


def naive_projection(raw: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y, z = labels.shape
    top = np.zeros((x, y), np.float32)
    seen = np.zeros((x, y), labels.dtype)
    for i in range(x):
        for j in range(y):
            top[i, j] = max(raw[i, j, k] for k in range(z))
            for k in range(z):
                if labels[i, j, k]:
                    seen[i, j] = labels[i, j, k]
                    break
    return top, seen


@pytest.mark.parametrize("slab", [1, 3, 16])
def test_projection_equals_a_loop_over_columns(slab: int) -> None:
    rng = np.random.default_rng(slab)
    raw = rng.integers(0, 65535, (9, 7, 11)).astype(np.uint16)
    labels = (rng.integers(0, 6, (9, 7, 11)) * (rng.random((9, 7, 11)) < 0.2)).astype(np.uint32)
    top, seen = project(raw, labels, slab=slab)
    expected_top, expected_seen = naive_projection(raw, labels)
    assert np.array_equal(top, expected_top) and np.array_equal(seen, expected_seen)


def test_projection_needs_one_shape() -> None:
    with pytest.raises(ValueError, match="must be 3-D volumes of one shape"):
        project(np.zeros((4, 4, 4)), np.zeros((4, 4, 3), np.uint8))


def test_instances_get_distinct_colours_and_background_black() -> None:
    colours = label_colours(500)
    assert tuple(colours[0]) == (0.0, 0.0, 0.0)
    assert len({tuple(np.round(c, 4)) for c in colours}) == 501
    image = colour_labels(np.array([[0, 7], [7, 3]], np.uint32))
    assert (image[0, 0] == 0).all() and (image[0, 1] == image[1, 0]).all() and (image[0, 1] != image[1, 1]).any()


@pytest.mark.parametrize("shape", [(40, 64, 9), (130, 50, 5), (3, 3, 1)])
def test_preview_is_a_png_of_the_expected_size(tmp_path: Path, shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 255, shape).astype(np.uint8)
    labels = (raw > 200).astype(np.uint16) * rng.integers(1, 9, shape).astype(np.uint16)
    path = write_preview(tmp_path / "p.png", raw, labels)
    picture = mpimg.imread(path)
    width, height = preview_size(shape[:2])
    assert picture.shape[:2] == (height, width)
    assert picture[..., :3].std() > 0.05  # something is drawn
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]  # no partial file left


@pytest.mark.parametrize(
    "name,match",
    [("p.jpg", "ending in .png"), ("missing/p.png", "folder .*missing does not exist")],
)
def test_preview_path_is_checked(tmp_path: Path, name: str, match: str) -> None:
    with pytest.raises(OutputError, match=match):
        check_preview_path(tmp_path / name)
