"""Per-instance statistics of a label volume: the instance table.

One streaming pass over the labels, slab by slab along Z, gathers per-label partial sums
(`PartialStats`: voxel counts, coordinate sums, bounding boxes, raw intensity sum and
maximum). Partials of disjoint parts of a volume merge exactly (`PartialStats.merge`), so
a blockwise run can measure each block and sum the partials. Each slab is measured by
``cc3d.statistics`` (counts, bounding boxes and centroids in one C++ pass) after
``fastremap.renumber`` makes its labels dense; intensities by ``numpy.bincount`` and
``numpy.maximum.at``.

Skeleton length is measured per instance after the pass: the instance's mask (read from its
bounding box) is thinned by ``skimage.morphology.skeletonize`` (Lee's 3-D thinning) and the
length is the total weight of the minimum spanning tree of the skeleton voxels joined to their
26 neighbours by their physical distance (a straight line of n voxels: n - 1 steps; branches
add up; a blob thinned to one voxel: 0). The predicted skeleton of ``segment`` is not used: it
is dilated by the model's box (9x9x3 voxels in the seed) before it is labelled, so it is a thick
tube whose voxel count says more about the box than about the length; thinning the instance
gives the same number whether the labels come from ``segment --table`` or from ``measure`` on
its output. Thinning works on voxels, not physical units: an anisotropic volume is thinned as
if isotropic and only the edge lengths are physical.

Axes are named as users see the file: ``z`` (slices), ``y`` (rows), ``x`` (columns).
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import staged
from .destinations import check_destination
from .errors import InputError, OutputError
from .volume import describe_shape
from .voxel_size import UNKNOWN_VOXEL_SIZE, VoxelSize

__all__ = [
    "TABLE_SUFFIXES", "SLAB_VOXELS", "PartialStats", "SlabReader", "measure_slabs", "skeleton_length", "skeleton_lengths",
    "PANDAS", "PYARROW", "InstanceTable", "instance_table", "table_rows", "label_properties", "check_table_path",
    "write_table", "measure_xyz",
]

TABLE_SUFFIXES = (".csv", ".parquet")
SLAB_VOXELS = 32 << 20  # voxels per slab of the streaming pass


@dataclass
class PartialStats:
    """Per-label sums over part of a volume; ``merge`` adds those of another, disjoint part.

    Arrays are indexed like ``labels`` (sorted, unique, no 0). Coordinates are ``(z, y, x)``
    voxel indices in the whole volume; ``hi`` is the largest index (inclusive).
    """

    labels: np.ndarray  # uint64 [n]
    count: np.ndarray  # int64 [n]
    coord_sum: np.ndarray  # float64 [n, 3]
    lo: np.ndarray  # int64 [n, 3]
    hi: np.ndarray  # int64 [n, 3]
    intensity_sum: np.ndarray | None = None  # float64 [n]
    intensity_max: np.ndarray | None = None  # float64 [n]

    @classmethod
    def empty(cls, intensity: bool = False) -> PartialStats:
        n3 = np.zeros((0, 3))
        return cls(np.zeros(0, np.uint64), np.zeros(0, np.int64), n3, n3.astype(np.int64), n3.astype(np.int64),
                   np.zeros(0) if intensity else None, np.zeros(0) if intensity else None)

    @classmethod
    def of_block(cls, labels_zyx: np.ndarray, offset_zyx: Sequence[int] = (0, 0, 0), raw_zyx: np.ndarray | None = None) -> PartialStats:
        """Statistics of one block of labels whose first voxel is at ``offset_zyx``; ``raw_zyx``
        (same shape) adds intensities."""
        import cc3d
        import fastremap

        if raw_zyx is not None and raw_zyx.shape != labels_zyx.shape:
            raise ValueError(f"raw {raw_zyx.shape} and labels {labels_zyx.shape} differ in shape")
        dense, mapping = fastremap.renumber(np.ascontiguousarray(labels_zyx), preserve_zero=True, in_place=False)
        present = np.array(sorted(k for k in mapping if k != 0), dtype=np.uint64)
        if present.size == 0:
            return cls.empty(raw_zyx is not None)
        ids = np.array([mapping[int(k)] for k in present], dtype=np.int64)
        stats = cc3d.statistics(dense, no_slice_conversion=True)
        count = stats["voxel_counts"][ids].astype(np.int64)
        boxes = np.asarray(stats["bounding_boxes"])[ids]  # axis0 min, max, axis1 min, max, axis2 min, max
        offset = np.asarray(offset_zyx, dtype=np.int64)
        lo = boxes[:, 0::2].astype(np.int64) + offset
        hi = boxes[:, 1::2].astype(np.int64) + offset
        coord_sum = (stats["centroids"][ids] + offset) * count[:, None]
        intensity_sum = intensity_max = None
        if raw_zyx is not None:
            flat, values = dense.ravel(), raw_zyx.ravel().astype(np.float64)
            n = int(dense.max()) + 1
            intensity_sum = np.bincount(flat, weights=values, minlength=n)[ids]
            top = np.full(n, -np.inf)
            np.maximum.at(top, flat, values)
            intensity_max = top[ids]
        return cls(present, count, coord_sum, lo, hi, intensity_sum, intensity_max)

    def merge(self, other: PartialStats) -> PartialStats:
        """The statistics of both parts together (exact: sums, minima and maxima)."""
        labels, inverse = np.unique(np.concatenate([self.labels, other.labels]), return_inverse=True)
        n = labels.size

        def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            out = np.zeros((n, *a.shape[1:]), dtype=a.dtype)
            np.add.at(out, inverse, np.concatenate([a, b]))
            return out

        def reduce(op: Any, a: np.ndarray, b: np.ndarray, start: Any) -> np.ndarray:
            out = np.full((n, *a.shape[1:]), start, dtype=a.dtype)
            op.at(out, inverse, np.concatenate([a, b]))
            return out

        big = np.iinfo(np.int64).max
        sums = maxima = None
        if self.intensity_sum is not None and other.intensity_sum is not None:
            assert self.intensity_max is not None and other.intensity_max is not None  # kept with the sums
            sums = add(self.intensity_sum, other.intensity_sum)
            maxima = reduce(np.maximum, self.intensity_max, other.intensity_max, -np.inf)
        return PartialStats(
            labels.astype(np.uint64),
            add(self.count, other.count),
            add(self.coord_sum, other.coord_sum),
            reduce(np.minimum, self.lo, other.lo, big),
            reduce(np.maximum, self.hi, other.hi, -1),
            sums,
            maxima,
        )


SlabReader = Callable[[int, int], np.ndarray]  # (z0, z1) → [z1 - z0, Y, X]


def measure_slabs(labels: SlabReader, shape_zyx: Sequence[int], raw: SlabReader | None = None,
                  slab_voxels: int = SLAB_VOXELS) -> PartialStats:
    """One pass over a ``[Z, Y, X]`` label volume read slab by slab (``labels(z0, z1)``)."""
    z, y, x = shape_zyx
    step = max(1, slab_voxels // max(1, y * x))
    total = PartialStats.empty(raw is not None)
    for z0 in range(0, z, step):
        z1 = min(z, z0 + step)
        part = PartialStats.of_block(np.asarray(labels(z0, z1)), (z0, 0, 0), None if raw is None else np.asarray(raw(z0, z1)))
        total = total.merge(part)
    return total


# 13 of the 26 neighbour offsets: each pair of neighbouring voxels is joined once.
_HALF_NEIGHBOURS = [d for d in itertools.product((-1, 0, 1), repeat=3) if d > (0, 0, 0)]


def skeleton_length(mask_zyx: np.ndarray, spacing_zyx: Sequence[float]) -> float:
    """Physical length of ``mask_zyx``'s 3-D skeleton: thin it (Lee), join skeleton voxels to
    their 26 neighbours by physical distance, and sum the minimum spanning tree."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import minimum_spanning_tree
    from skimage.morphology import skeletonize

    skeleton = skeletonize(np.pad(mask_zyx.astype(bool), 1))  # padded: thinning sees the object's surface
    points = np.argwhere(skeleton)
    if len(points) < 2:
        return 0.0
    index = np.full(skeleton.shape, -1, dtype=np.int64)
    index[tuple(points.T)] = np.arange(len(points))
    rows, cols, weights = [], [], []
    spacing = np.asarray(spacing_zyx, dtype=np.float64)
    for d in _HALF_NEIGHBOURS:
        other = index[tuple(points[:, a] + d[a] for a in range(3))]  # the pad keeps these in range
        hit = other >= 0
        rows.append(np.flatnonzero(hit))
        cols.append(other[hit])
        weights.append(np.full(hit.sum(), np.sqrt(((np.asarray(d) * spacing) ** 2).sum())))
    graph = coo_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(len(points),) * 2)
    return float(minimum_spanning_tree(graph).sum())


def skeleton_lengths(stats: PartialStats, window: Callable[[tuple[slice, slice, slice]], np.ndarray],
                     spacing_zyx: Sequence[float]) -> np.ndarray:
    """Skeleton length of every instance in ``stats``; ``window(slices)`` reads labels there."""
    out = np.zeros(stats.labels.size)
    for i, label in enumerate(stats.labels):
        s0, s1, s2 = (slice(int(a), int(b) + 1) for a, b in zip(stats.lo[i], stats.hi[i]))
        out[i] = skeleton_length(np.asarray(window((s0, s1, s2))) == label, spacing_zyx)
    return out


PANDAS = "pandas>=2.1,<3"
PYARROW = "pyarrow>=14,<19"
"""What to install for ``to_pandas`` and Parquet tables: the pandas and parquet extras' bounds,
named directly (skoots-triton is installed from its source, not from the package index)."""


class InstanceTable(dict):
    """The instance table as columns: name → NumPy array, one row per instance, in order.

    A plain ``dict`` of arrays, so measuring needs no pandas (whose newest releases pull NumPy 2
    over the ``numpy<2`` the server extra pins); `to_pandas` gives the DataFrame.
    ``voxel_size`` is the [`VoxelSize`][skoots_client.VoxelSize] its physical columns are in.
    """

    voxel_size: VoxelSize = UNKNOWN_VOXEL_SIZE

    def to_pandas(self) -> Any:
        """The table as a ``pandas.DataFrame`` (``pip install "pandas>=2.1,<3"``, the pandas extra's bounds)."""
        try:
            import pandas
        except ImportError as e:
            raise ImportError(
                f"InstanceTable.to_pandas needs pandas: pip install \"{PANDAS}\" "
                "(below 3, which keeps the NumPy 1.x the server extra pins)"
            ) from e
        return pandas.DataFrame({name: np.asarray(values) for name, values in self.items()})


def instance_table(stats: PartialStats, shape_zyx: Sequence[int], voxel_size: VoxelSize = UNKNOWN_VOXEL_SIZE,
                   lengths: np.ndarray | None = None) -> InstanceTable:
    """Columns of the instance table (one row per label), in order.

    ``label, voxels, volume_<u>3, centroid_{z,y,x}`` (voxels), ``centroid_{z,y,x}_<u>``,
    ``bbox_{z,y,x}0`` and ``bbox_{z,y,x}1`` (half-open, voxels), ``mean_intensity`` and
    ``max_intensity`` (with raw), ``skeleton_length_<u>`` (with lengths), ``touches_border``.
    ``<u>`` is the unit's symbol (``um``; ``px`` when the voxel size is unknown; ``units`` for
    a scale without a unit, whose values are scaled but in no named unit)."""
    u = voxel_size.symbol
    spacing = np.asarray(voxel_size.zyx, dtype=np.float64)
    count = stats.count
    centroid = stats.coord_sum / np.maximum(count, 1)[:, None]
    columns: dict[str, np.ndarray] = {"label": stats.labels, "voxels": count, f"volume_{u}3": count * float(np.prod(spacing))}
    columns.update({f"centroid_{a}": centroid[:, i] for i, a in enumerate("zyx")})
    columns.update({f"centroid_{a}_{u}": centroid[:, i] * spacing[i] for i, a in enumerate("zyx")})
    columns.update({f"bbox_{a}0": stats.lo[:, i] for i, a in enumerate("zyx")})
    columns.update({f"bbox_{a}1": stats.hi[:, i] + 1 for i, a in enumerate("zyx")})
    if stats.intensity_sum is not None and stats.intensity_max is not None:
        columns["mean_intensity"] = stats.intensity_sum / np.maximum(count, 1)
        columns["max_intensity"] = stats.intensity_max
    if lengths is not None:
        columns[f"skeleton_length_{u}"] = lengths
    shape = np.asarray(shape_zyx)
    columns["touches_border"] = ((stats.lo == 0) | (stats.hi == shape - 1)).any(axis=1)
    table = InstanceTable(columns)
    table.voxel_size = voxel_size
    return table


def table_rows(columns: dict[str, np.ndarray]) -> Iterator[dict[str, Any]]:
    names = list(columns)
    for values in zip(*(columns[n].tolist() for n in names)):
        yield dict(zip(names, values))


def label_properties(columns: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """NGFF ``image-label.properties``: the table's rows keyed by ``label-value``."""
    return [{"label-value": row.pop("label"), **row} for row in table_rows(columns)]


def check_table_path(path: Path, overwrite: bool, option: str = "--table") -> None:
    """Fail before any work if the table cannot be written at ``path``."""
    check_destination(option, path, TABLE_SUFFIXES, "unknown table type; use .csv or .parquet")
    if path.exists() and not overwrite:
        raise OutputError(f"{option} {path} exists; pass --overwrite to replace it")
    if path.name.lower().endswith(".parquet"):
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError as e:  # missing, or built for another NumPy
            raise OutputError(f"{option} {path}: Parquet needs pyarrow (pip install \"{PYARROW}\"; "
                              f"{str(e).splitlines()[0] if str(e) else 'not importable'}); or write .csv") from None


def write_table(path: Path, columns: dict[str, np.ndarray]) -> Path:
    """Write the table as CSV (floats at full precision) or Parquet, atomically."""
    try:
        with staged(path) as target:
            if path.name.lower().endswith(".parquet"):
                import pyarrow as pa
                import pyarrow.parquet as pq

                pq.write_table(pa.table({k: np.asarray(v) for k, v in columns.items()}), target)
            else:
                with open(target, "w", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=list(columns))
                    writer.writeheader()
                    writer.writerows(table_rows(columns))
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
    return path


def measure_xyz(labels_xyz: Any, voxel_size: VoxelSize, raw_xyz: Any = None, *, skeleton: bool = True,
                slab_voxels: int = SLAB_VOXELS) -> InstanceTable:
    """The instance table of runtime ``[X, Y, Z]`` labels (an array or lazy view), with
    intensities from ``raw_xyz`` (same shape) when given; ``.to_pandas()`` for a DataFrame."""
    x, y, z = labels_xyz.shape
    if raw_xyz is not None and tuple(raw_xyz.shape) != (x, y, z):
        raise InputError(f"--raw is {describe_shape(raw_xyz.shape)}, the labels {describe_shape((x, y, z))}; give the volume they segment")

    def slab(volume: Any) -> SlabReader:
        return lambda z0, z1: np.asarray(volume[:, :, z0:z1]).transpose(2, 0, 1)

    def label_slab(z0: int, z1: int) -> np.ndarray:
        labels = slab(labels_xyz)(z0, z1)
        if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
            raise InputError("the labels hold negative values; labels are 0 (background) or positive")
        return labels

    stats = measure_slabs(label_slab, (z, x, y), None if raw_xyz is None else slab(raw_xyz), slab_voxels)
    lengths = None
    if skeleton:
        lengths = skeleton_lengths(stats, lambda b: np.asarray(labels_xyz[b[1], b[2], b[0]]).transpose(2, 0, 1), voxel_size.zyx)
    return instance_table(stats, (z, x, y), voxel_size, lengths)
