"""Synthetic mitochondria-like volumes with ground truth, for the demo and its tests.

A volume holds curved tubes and blobs of varying length and thickness, some touching or
crossing, imaged with anisotropic voxels (z ``anisotropy[2]`` times coarser than x and y),
blurred, on an uneven background, with shot noise. Every object is a swept sphere around a
centreline, so its medial line is known exactly: the training targets of SKOOTS (object
probability, skeleton, vectors to the skeleton) come from the same geometry as the labels.

Arrays are ``[X, Y, Z]`` voxels (the runtime's order, docs/AXES.md); files on disk are ``[Z, Y, X]`` TIFF
stacks, the order the client reads (``skoots_client.volume_read``). Everything but
:func:`write_volume` and :func:`main` is a pure function: a seed or ``numpy.random.Generator``
in, arrays out.

Run ``python -m examples.synthetic OUT.tif --seed 7`` to write ``OUT.tif`` (raw) and
``OUT_labels.tif`` (ground truth) beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class SyntheticSpec:
    """What a synthetic volume looks like; lengths in x/y voxels (the fine axes).

    ``anisotropy`` is the physical voxel size per axis: with ``(1, 1, 3)`` a z step is three
    times an x step, so a tube of radius 4 spans ~8 voxels in x/y and ~3 slices in z.
    ``min_separation`` is the least distance between two centrelines in voxels of the grid
    (z counted in slices): it keeps objects' skeletons apart, so each object stays one
    instance for the runtime however closely the objects themselves touch.
    """

    shape: tuple[int, int, int] = (128, 128, 32)
    anisotropy: tuple[float, float, float] = (1.0, 1.0, 3.0)
    density: float = 1.0 / 12000.0  # objects per (x/y voxel)^3 of physical volume
    blob_fraction: float = 0.3
    tube_radius: tuple[float, float] = (2.5, 4.5)
    tube_length: tuple[float, float] = (12.0, 50.0)
    blob_radius: tuple[float, float] = (3.5, 6.0)
    blob_length: tuple[float, float] = (0.0, 5.0)
    touching_fraction: float = 0.4  # objects allowed to touch or slightly interpenetrate others
    min_separation: float = 5.0
    blur_sigma: float = 1.0  # physical, x/y voxels
    photons: float = 40.0  # expected photon count at full brightness: shot noise
    background: tuple[float, float] = (0.05, 0.25)  # uneven background level range
    dtype: str = "uint8"

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"shape {self.shape} needs three positive lengths (X, Y, Z)")
        if len(self.anisotropy) != 3 or min(self.anisotropy) <= 0:
            raise ValueError(f"anisotropy {self.anisotropy} needs three positive voxel sizes")
        if self.dtype not in ("uint8", "uint16"):
            raise ValueError(f"dtype {self.dtype!r} must be uint8 or uint16")
        if not 0.0 <= self.blob_fraction <= 1.0 or not 0.0 <= self.touching_fraction <= 1.0:
            raise ValueError("blob_fraction and touching_fraction must lie in [0, 1]")


@dataclass(frozen=True)
class SyntheticObject:
    """A swept sphere: ``centreline`` points ``[M, 3]`` in physical units, a radius, a brightness."""

    centreline: np.ndarray
    radius: float
    brightness: float


@dataclass(frozen=True)
class SyntheticVolume:
    """A generated volume, ``[X, Y, Z]``: raw image, instance labels and SKOOTS training targets.

    ``vectors`` ``[3, X, Y, Z]`` are offsets in voxels from each object voxel to the nearest
    voxel of its own rasterised centreline (zero on background and on the centreline);
    ``skeleton`` marks that centreline, thickened by one voxel in x and y, inside the object.
    """

    raw: np.ndarray
    labels: np.ndarray
    skeleton: np.ndarray
    vectors: np.ndarray
    objects: tuple[SyntheticObject, ...]


def _centreline(rng: np.random.Generator, centre: np.ndarray, length: float, flatness: float) -> np.ndarray:
    """A smooth random curve of ``length`` (unit steps) centred on ``centre``, mostly in x/y.

    Heading and elevation angles random-walk; ``flatness`` scales the elevation, so tubes run
    mostly along the imaging planes as mitochondria in thin sections do.
    """
    steps = max(1, int(round(length)))
    turn = rng.uniform(0.04, 0.25)  # curvature of this tube
    heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(scale=turn, size=steps))
    elevation = np.clip(rng.normal(scale=flatness) + np.cumsum(rng.normal(scale=turn * flatness, size=steps)), -1.2, 1.2)
    directions = np.stack([np.cos(elevation) * np.cos(heading), np.cos(elevation) * np.sin(heading), np.sin(elevation)], 1)
    points = np.concatenate([np.zeros((1, 3)), np.cumsum(directions, 0)])
    return points - points.mean(0) + centre


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances of ``points`` ``[N, 3]`` to the segment ``a-b``.

    ``einsum``, not ``@``: no BLAS threads. napari's demo sample draws this volume on the GUI
    thread while the model's export runs torch in a worker, and OpenBLAS's threads then spun on
    ``sched_yield`` for minutes (2 cores); the values are the same bits."""
    ab = b - a
    t = np.clip(np.einsum("ij,j->i", points - a, ab) / max(float(np.einsum("i,i->", ab, ab)), 1e-12), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1)


def _polyline_distance(points: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Distances of ``points`` ``[N, 3]`` to a polyline ``[M, 3]`` (physical units)."""
    if len(line) == 1:
        return np.linalg.norm(points - line[0], axis=1)
    return np.min([_segment_distance(points, a, b) for a, b in zip(line[:-1], line[1:])], axis=0)


def sample_objects(rng: np.random.Generator, spec: SyntheticSpec) -> list[SyntheticObject]:
    """Random tubes and blobs inside the volume, placed so centrelines keep ``min_separation``.

    Most objects keep a gap of 15-60% of their radii from their neighbours; a
    ``touching_fraction`` of them may touch or overlap a neighbour by up to 15%.
    """
    spacing = np.asarray(spec.anisotropy, dtype=float)
    extent = np.asarray(spec.shape, dtype=float) * spacing
    wanted = int(round(spec.density * float(np.prod(extent))))
    objects: list[SyntheticObject] = []
    lows, highs = np.empty((0, 3)), np.empty((0, 3))  # centreline bounding boxes, to skip far objects
    for _ in range(wanted * 30):  # rejection sampling; crowded volumes end up a little sparser
        if len(objects) >= wanted:
            break
        blob = rng.random() < spec.blob_fraction
        radius = rng.uniform(*(spec.blob_radius if blob else spec.tube_radius))
        length = rng.uniform(*(spec.blob_length if blob else spec.tube_length))
        margin = np.array([radius, radius, min(radius, extent[2] / 2 - 1e-3)])
        start = rng.uniform(margin, extent - margin)
        line = _centreline(rng, start, length, flatness=0.35)
        if (line < margin).any() or (line > extent - margin).any():
            continue
        gap = rng.uniform(0.85, 1.0) if rng.random() < spec.touching_fraction else rng.uniform(1.15, 1.6)
        reach = max(gap * (radius + max(spec.tube_radius[1], spec.blob_radius[1])), spec.min_separation * spacing.max())
        near = np.flatnonzero(((lows - reach <= line.max(0)) & (highs + reach >= line.min(0))).all(1))
        if any(_too_close(line, radius, objects[i], gap, spec.min_separation, spacing) for i in near):
            continue
        objects.append(SyntheticObject(line, float(radius), float(rng.uniform(0.55, 1.0))))
        lows, highs = np.vstack([lows, line.min(0)]), np.vstack([highs, line.max(0)])
    return objects


def _too_close(line: np.ndarray, radius: float, other: SyntheticObject, gap: float, separation: float, spacing: np.ndarray) -> bool:
    difference = line[:, None, :] - other.centreline[None, :, :]
    physical = np.sqrt((difference**2).sum(-1)).min()
    grid = np.sqrt(((difference / spacing) ** 2).sum(-1)).min()
    return bool(physical < gap * (radius + other.radius) or grid < separation)


def render_objects(objects: Sequence[SyntheticObject], spec: SyntheticSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (uint16, 1..K in ``objects`` order), skeleton (uint8) and vectors (float32 voxels).

    A voxel belongs to the object whose surface it is deepest inside (smallest distance to the
    centreline divided by radius), so touching objects split along the surface between them.
    The vector of an object voxel points to the nearest voxel of the object's rasterised
    centreline, so centreline voxels hold zero vectors: the embedding's later iterations
    (docs/SEMANTICS.md step 8) stay where the first one landed.
    """
    if len(objects) > np.iinfo(np.uint16).max:
        raise ValueError(f"{len(objects)} objects do not fit uint16 labels")
    spacing = np.asarray(spec.anisotropy, dtype=float)
    shape = spec.shape
    labels = np.zeros(shape, np.uint16)
    depth = np.full(shape, np.inf, np.float32)  # distance / radius of the owning object
    boxes = []
    for index, obj in enumerate(objects, start=1):
        low = np.maximum(np.floor((obj.centreline.min(0) - obj.radius) / spacing).astype(int) - 1, 0)
        high = np.minimum(np.ceil((obj.centreline.max(0) + obj.radius) / spacing).astype(int) + 2, shape)
        box = tuple(slice(lo, hi) for lo, hi in zip(low, high))
        grid = np.stack(np.meshgrid(*[np.arange(lo, hi) for lo, hi in zip(low, high)], indexing="ij"), -1)
        distance = _polyline_distance(grid.reshape(-1, 3) * spacing, obj.centreline)
        ratio = (distance / obj.radius).reshape(grid.shape[:3]).astype(np.float32)
        owns = (ratio <= 1.0) & (ratio < depth[box])
        depth[box][owns] = ratio[owns]
        labels[box][owns] = index
        boxes.append((box, low))
    vectors = np.zeros((3, *shape), np.float32)
    skeleton = np.zeros(shape, np.uint8)
    for index, (obj, (box, low)) in enumerate(zip(objects, boxes), start=1):
        own = labels[box] == index
        line = _rasterise(obj.centreline / spacing - low, own.shape) & own
        if not line.any():
            continue
        skeleton[box][ndimage.binary_dilation(line, np.ones((3, 3, 1), bool)) & own] = 1
        _, nearest = ndimage.distance_transform_edt(~line, sampling=spacing, return_indices=True)
        offsets = nearest - np.indices(own.shape)
        for axis in range(3):
            vectors[axis][box][own] = offsets[axis][own]
    return labels, skeleton, vectors


def _rasterise(line_voxels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The voxels a polyline passes through (26-connected), as a boolean array of ``shape``."""
    dense = [line_voxels[:1]]
    for a, b in zip(line_voxels[:-1], line_voxels[1:]):
        n = int(np.ceil(np.abs(b - a).max() / 0.25)) + 1
        dense.append(a + (b - a) * np.linspace(0, 1, n)[1:, None])
    voxels = np.rint(np.concatenate(dense)).astype(int)
    voxels = voxels[((voxels >= 0) & (voxels < shape)).all(1)]
    out = np.zeros(shape, bool)
    out[tuple(voxels.T)] = True
    return out


def render_raw(rng: np.random.Generator, labels: np.ndarray, brightness: np.ndarray, spec: SyntheticSpec) -> np.ndarray:
    """Image the labelled objects: brightness, anisotropic blur, uneven background, shot noise.

    Returns ``spec.dtype`` voxels with full brightness near 3/4 of the type's range.
    """
    spacing = np.asarray(spec.anisotropy, dtype=float)
    signal = np.concatenate([[0.0], brightness]).astype(np.float32)[labels]
    signal = ndimage.gaussian_filter(signal, sigma=spec.blur_sigma / spacing)
    low, high = spec.background
    field = ndimage.gaussian_filter(rng.random(labels.shape).astype(np.float32), sigma=24.0 / spacing, mode="wrap")
    field = (field - field.min()) / max(float(field.max() - field.min()), 1e-6)
    expected = signal * 0.75 + low + (high - low) * field
    counts = rng.poisson(np.clip(expected, 0, None) * spec.photons)
    image = np.clip(counts / spec.photons, 0.0, 1.0)
    top = np.iinfo(spec.dtype).max
    return np.round(image * top).astype(spec.dtype)


def generate(seed: int | np.random.Generator, spec: SyntheticSpec = SyntheticSpec()) -> SyntheticVolume:
    """One synthetic volume with ground truth and targets; the same seed gives the same arrays."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    objects = sample_objects(rng, spec)
    labels, skeleton, vectors = render_objects(objects, spec)
    brightness = np.array([o.brightness for o in objects], np.float32)
    raw = render_raw(rng, labels, brightness, spec)
    return SyntheticVolume(raw, labels, skeleton, vectors, tuple(objects))


def labels_path(raw_path: Path) -> Path:
    """``vol.tif`` → ``vol_labels.tif``: where the ground truth of a raw volume is written."""
    name = raw_path.name
    for suffix in (".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return raw_path.with_name(name[: -len(suffix)] + "_labels" + name[-len(suffix):])
    return raw_path.with_name(name + "_labels.tif")


def write_volume(path: Path, volume: SyntheticVolume) -> tuple[Path, Path]:
    """Write raw and labels as ``[Z, Y, X]`` TIFF stacks (ImageJ metadata); returns both paths."""
    import tifffile

    path = Path(path)
    written = []
    for target, array in ((path, volume.raw), (labels_path(path), volume.labels)):
        tifffile.imwrite(target, np.ascontiguousarray(array.transpose(2, 0, 1)), imagej=True, metadata={"axes": "ZYX"}, compression="zlib")
        written.append(target)
    return written[0], written[1]


def shape_option(text: str) -> tuple[int, int, int]:
    """argparse type for voxel counts, ``X,Y,Z`` or named ``x=..,y=..,z=..`` (napari's letters)."""
    from skoots_export.contract.triples import parse_triple

    try:
        shape = parse_triple(text, int)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} needs three positive integers X,Y,Z, e.g. 128,128,32, or named as napari shows the axes, e.g. y=128,x=128,z=32")
    return shape  # type: ignore[return-value]


def main(argv: Sequence[str] | None = None) -> int:
    from skoots_client.volume import describe_shape
    from skoots_export.contract.triples import TRIPLE_HELP

    parser = argparse.ArgumentParser(prog="python -m examples.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="raw volume to write (.tif); labels go to OUT_labels.tif")
    parser.add_argument("--seed", type=int, default=0, help="random seed (the demo's training uses 1000 and up)")
    parser.add_argument("--shape", type=shape_option, default=SyntheticSpec.shape, help="voxels (default 128,128,32): " + TRIPLE_HELP)
    parser.add_argument("--dtype", choices=("uint8", "uint16"), default="uint8")
    args = parser.parse_args(argv)
    if not str(args.out).lower().endswith((".tif", ".tiff")):
        parser.error(f"{args.out}: the output must be a .tif or .tiff file")
    if not args.out.parent.is_dir():
        parser.error(f"{args.out}: folder {args.out.parent} does not exist; create it first")
    spec = dataclasses.replace(SyntheticSpec(), shape=args.shape, dtype=args.dtype)
    volume = generate(args.seed, spec)
    raw, labels = write_volume(args.out, volume)
    print(f"{raw} ({describe_shape(volume.raw.shape)}, {args.dtype}) and {labels}: {len(volume.objects)} objects")
    return 0


if __name__ == "__main__":
    sys.exit(main())
