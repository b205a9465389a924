"""A PNG preview of a segmentation: the raw volume's maximum projection beside the labels.

The projection runs along Z, one slab at a time (a lazy volume is never read whole at once).
The label panel shows the objects as seen along Z, as if opaque: each (x, y) column takes the
label of its first labelled voxel. Instances get distinct
colours (golden-ratio hues, varied lightness), background is black. Rows are X and columns Y,
as Fiji shows a ``[Z, X, Y]`` stack.
"""

from __future__ import annotations

import colorsys
import math
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import staged
from .destinations import check_destination
from .errors import OutputError

__all__ = [
    "PANEL", "TITLE", "MARGIN", "project", "label_colours", "colour_labels", "stretch", "panel_size", "preview_size",
    "check_preview_path", "write_preview",
]

PANEL = 512  # the longer side of each panel, in pixels
TITLE = 28  # height of the title band, in pixels
MARGIN = 8


def project(raw_xyz: Any, labels_xyz: np.ndarray, slab: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Max projection of ``raw`` over Z (float32), and the labels seen looking along Z: each
    column's first labelled voxel, as if the objects were opaque. Reads ``slab`` Z planes at a time."""
    shape = tuple(labels_xyz.shape)
    if tuple(raw_xyz.shape) != shape or len(shape) != 3:
        raise ValueError(f"raw {tuple(raw_xyz.shape)} and labels {shape} must be 3-D volumes of one shape")
    projection = np.full(shape[:2], -np.inf, np.float32)
    seen = np.zeros(shape[:2], labels_xyz.dtype)
    for z in range(0, shape[2], slab):
        window = (slice(None), slice(None), slice(z, min(z + slab, shape[2])))
        np.maximum(projection, np.asarray(raw_xyz[window], dtype=np.float32).max(axis=2), out=projection)
        ids = np.asarray(labels_xyz[window])
        first = np.take_along_axis(ids, (ids != 0).argmax(axis=2)[..., None], 2)[..., 0]
        np.copyto(seen, first, where=seen == 0)
    return projection, seen


def label_colours(count: int) -> np.ndarray:
    """``[count + 1, 3]`` RGB in [0, 1]: black for 0, then distinct colours for labels 1..count."""
    golden = (math.sqrt(5) - 1) / 2
    colours = [(0.0, 0.0, 0.0)]
    for i in range(count):
        colours.append(colorsys.hls_to_rgb((i * golden) % 1.0, (0.45, 0.6, 0.75)[i % 3], (0.95, 0.7)[(i // 3) % 2]))
    return np.array(colours, np.float32)


def colour_labels(labels_xy: np.ndarray) -> np.ndarray:
    """``[X, Y, 3]`` RGB of a 2-D label image (labels are renumbered by first appearance)."""
    values, inverse = np.unique(labels_xy, return_inverse=True)
    offset = 0 if values.size and values[0] == 0 else 1
    return label_colours(len(values) - (1 - offset))[inverse.reshape(labels_xy.shape) + offset]


def stretch(image: np.ndarray) -> np.ndarray:
    """Contrast stretch to [0, 1] between the 1st and 99.8th percentiles."""
    low, high = np.percentile(image, (1.0, 99.8)) if image.size else (0.0, 1.0)
    return np.clip((image - low) / max(float(high - low), 1e-12), 0.0, 1.0)


def panel_size(shape_xy: tuple[int, int]) -> tuple[int, int]:
    """``(width, height)`` in pixels of one panel: the longer side `PANEL`, the aspect kept."""
    x, y = shape_xy
    scale = PANEL / max(x, y)
    return max(1, round(y * scale)), max(1, round(x * scale))


def preview_size(shape_xy: tuple[int, int]) -> tuple[int, int]:
    """``(width, height)`` in pixels of the whole preview for a volume of ``shape_xy`` (X, Y)."""
    width, height = panel_size(shape_xy)
    return 2 * width + 3 * MARGIN, height + TITLE + MARGIN


def check_preview_path(path: Path) -> None:
    """Fail before any work if the preview cannot be written at ``path``."""
    check_destination("--preview", path, (".png",), "the preview is a PNG; give a path ending in .png")


def write_preview(path: str | Path, raw_xyz: Any, labels_xyz: np.ndarray, *, title: str | None = None) -> Path:
    """Write the preview PNG (raw max projection | labels) of an ``[X, Y, Z]`` volume to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    path = Path(path)
    check_preview_path(path)
    projection, label = project(raw_xyz, labels_xyz)
    instances = int(np.count_nonzero(np.unique(labels_xyz)))
    shape_xy = (projection.shape[0], projection.shape[1])
    width, height = panel_size(shape_xy)
    total_width, total_height = preview_size(shape_xy)
    dpi = 100
    figure = Figure(figsize=(total_width / dpi, total_height / dpi), dpi=dpi, facecolor="white")
    panels: tuple[tuple[np.ndarray, dict[str, Any], str], ...] = (
        (stretch(projection), {"cmap": "gray", "vmin": 0.0, "vmax": 1.0, "interpolation": "antialiased"}, "raw, max projection over Z"),
        (colour_labels(label), {"interpolation": "nearest"}, f"labels, {instances} instances"),
    )
    for i, (image, style, name) in enumerate(panels):
        left = MARGIN + i * (width + MARGIN)
        axes = figure.add_axes((left / total_width, MARGIN / total_height, width / total_width, height / total_height))
        axes.imshow(image, aspect="auto", **style)
        axes.set_axis_off()
        axes.set_title(name if i or not title else f"{title}: {name}", fontsize=10, pad=4)
    try:
        with staged(path) as target:
            figure.savefig(target, dpi=dpi, format="png")
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
    return path
