"""The block grid of blockwise segmentation: blocks made of whole crop interiors.

Along each axis a block is ``k`` consecutive crops: its bounds are the starts of their owned
intervals (docs/SEMANTICS.md, blockwise), so every crop belongs to exactly one block and is inferred
once. The first block also takes the volume's near edge and the last its far edge (with
``--reference-borders`` frames no crop writes). A snapped last crop (one moved back to fit the
volume) never starts a block: it joins the block before it, so every interior boundary lies at
``j * k * step + overlap``.

The output is written in a regular grid of ``k * step`` voxels from 0, in whole chunks of
``d * step`` voxels (``d`` divides ``k``), so no two tasks write one chunk. Pure arithmetic, no I/O.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..memory import WORKER_BUDGET
from ..tiling import Crop, crop_grid, owned_intervals, tile_starts

__all__ = [
    "Triple", "Region", "BLOCK_BYTES_PER_VOXEL", "DEFAULT_WORKER_BUDGET", "CHUNK_TARGET", "Axis", "Block", "BlockGrid",
    "grow", "block_peak_bytes", "largest_block", "default_per_block", "per_block_from_voxels",
]

Triple = tuple[int, int, int]
Region = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]

# Bytes per voxel a worker holds at the peak of a stage (assign: block labels, uniques, the
# output; label: skeleton, cc3d's labels and its work) and per halo voxel (vectors 6, labels 4).
BLOCK_BYTES_PER_VOXEL = 24
DEFAULT_WORKER_BUDGET = WORKER_BUDGET  # ~1.5 GB per worker process (client/memory.py: --tile auto leaves it to the block)
CHUNK_TARGET = 256  # voxels per axis of an output chunk, at most (unless one step is longer)


@dataclass(frozen=True)
class Axis:
    """One axis of the grid: block bounds, the block of each crop, the output's chunk and blocks."""

    length: int
    bounds: tuple[int, ...]  # [0, b1, ..., length]
    crop_block: tuple[int, ...]  # block index of each crop along this axis
    chunk: int  # output chunk
    write: int  # output block size (a multiple of chunk)

    @property
    def blocks(self) -> int:
        return len(self.bounds) - 1


def _axis(length: int, crop: int, overlap: int, k: int, reference_borders: bool) -> Axis:
    starts = tile_starts(length, crop, overlap)
    owned = owned_intervals(starts, crop, overlap, length, reference_borders)
    step = min(crop, length) - 2 * overlap
    k = max(1, k)
    if len(starts) == 1 or step <= 0 or k >= len(starts):
        chunk = min(length, max(CHUNK_TARGET, step if step > 0 else 1))
        return Axis(length, (0, length), (0,) * len(starts), chunk, length)
    inner = [owned[i][0] for i in range(k, len(starts), k) if starts[i] == i * step]
    bounds = (0, *inner, length)
    crop_block = tuple(min(bisect.bisect_right(bounds, lo) - 1, len(bounds) - 2) for lo, _ in owned)
    d = max((d for d in range(1, k + 1) if k % d == 0 and d * step <= CHUNK_TARGET), default=1)
    chunk = d * step
    return Axis(length, bounds, crop_block, chunk, k * step)


def _region(axes: Sequence[Axis], index: Triple) -> Region:
    return tuple((a.bounds[i], a.bounds[i + 1]) for a, i in zip(axes, index))  # type: ignore[return-value]


@dataclass(frozen=True)
class Block:
    """One block: its grid index, the voxels it covers and the crops whose interiors tile it."""

    index: Triple
    region: Region
    crops: tuple[Crop, ...]

    @property
    def name(self) -> str:
        return ".".join(map(str, self.index))

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(lo, hi) for lo, hi in self.region)  # type: ignore[return-value]

    @property
    def voxels(self) -> int:
        return math.prod(hi - lo for lo, hi in self.region)


class BlockGrid:
    """Blocks of ``per_block`` crops per axis over a volume of ``shape`` and its crop grid."""

    def __init__(self, shape: Triple, crop: Triple, overlap: Triple, per_block: Triple, reference_borders: bool = False) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.per_block = tuple(int(k) for k in per_block)
        self.crops = crop_grid(self.shape, crop, overlap, reference_borders)  # type: ignore[arg-type]
        self.axes = tuple(_axis(n, c, o, k, reference_borders) for n, c, o, k in zip(shape, crop, overlap, per_block))
        members: dict[Triple, list[Crop]] = {}
        counts = [len(a.crop_block) for a in self.axes]
        for c in self.crops:
            i = c.index
            along = (i // (counts[1] * counts[2]), (i // counts[2]) % counts[1], i % counts[2])
            members.setdefault(tuple(a.crop_block[j] for a, j in zip(self.axes, along)), []).append(c)  # type: ignore[arg-type]
        self.blocks = [
            Block(index, _region(self.axes, index), tuple(members.get(index, ())))  # type: ignore[arg-type]
            for index in itertools.product(*(range(a.blocks) for a in self.axes))
        ]

    @property
    def largest(self) -> Triple:
        """The longest block along each axis, in voxels (`largest_block`)."""
        return tuple(max(hi - lo for lo, hi in zip(a.bounds, a.bounds[1:])) for a in self.axes)  # type: ignore[return-value]

    @property
    def chunks(self) -> Triple:
        return tuple(a.chunk for a in self.axes)  # type: ignore[return-value]

    def block(self, index: Sequence[int]) -> Block:
        nx, ny, nz = (a.blocks for a in self.axes)
        return self.blocks[(index[0] * ny + index[1]) * nz + index[2]]

    def overlapping(self, region: Region) -> Iterator[Block]:
        """Blocks that share a voxel with ``region``."""
        ranges = []
        for a, (lo, hi) in zip(self.axes, region):
            first = bisect.bisect_right(a.bounds, lo) - 1
            last = bisect.bisect_left(a.bounds, hi) - 1
            ranges.append(range(max(first, 0), min(last, a.blocks - 1) + 1))
        for index in itertools.product(*ranges):
            yield self.block(index)

    def neighbours_up(self, block: Block) -> Iterator[tuple[int, Block]]:
        """The blocks after ``block`` along each axis, with that axis: the faces it owns."""
        for axis in range(3):
            index = list(block.index)
            index[axis] += 1
            if index[axis] < self.axes[axis].blocks:
                yield axis, self.block(index)

    def write_regions(self) -> list[Region]:
        """The output's blocks: a regular grid of whole output chunks from voxel 0."""
        per_axis = [[(lo, min(lo + a.write, a.length)) for lo in range(0, a.length, a.write)] for a in self.axes]
        return [tuple(r) for r in itertools.product(*per_axis)]  # type: ignore[misc]


def grow(region: Region, halo: Sequence[int], shape: Sequence[int]) -> Region:
    """``region`` widened by ``halo`` on each side, clamped to the volume."""
    return tuple((max(0, lo - h), min(n, hi + h)) for (lo, hi), h, n in zip(region, halo, shape))  # type: ignore[return-value]


def block_peak_bytes(extent: Sequence[int], label_halo: Sequence[int], vector_halo: Sequence[int]) -> int:
    """A worker's peak while assigning one block of ``extent``: the block's own arrays plus the
    skeleton labels (4 B) and vectors (6 B) of its halos."""
    inner = math.prod(extent)
    labels = math.prod(n + 2 * h for n, h in zip(extent, label_halo))
    vectors = math.prod(n + 2 * h for n, h in zip(extent, vector_halo))
    return BLOCK_BYTES_PER_VOXEL * inner + 4 * labels + 6 * vectors


def largest_block(shape: Sequence[int], crop: Sequence[int], overlap: Sequence[int], per_block: Sequence[int],
                  reference_borders: bool = False) -> Triple:
    """The longest block along each axis of `BlockGrid` ``(shape, crop, overlap, per_block)``:
    more than ``per_block`` crop steps where the first block takes the near edge and the last
    the far edge and a snapped last crop (a volume of 840 voxels in 300-voxel crops is one block
    of 840 at two crops a block, not 560)."""
    axes = [_axis(n, c, o, k, reference_borders) for n, c, o, k in zip(shape, crop, overlap, per_block)]
    return tuple(max(hi - lo for lo, hi in zip(a.bounds, a.bounds[1:])) for a in axes)  # type: ignore[return-value]


def default_per_block(
    shape: Sequence[int], crop: Sequence[int], overlap: Sequence[int], label_halo: Sequence[int],
    vector_halo: Sequence[int], budget: int = DEFAULT_WORKER_BUDGET,
) -> Triple:
    """Crops per block along each axis that keep `block_peak_bytes` of the grid's largest
    block (`largest_block`) within ``budget``: the shortest block axis grows first (cubic
    blocks carry the least halo), one crop at a time."""
    counts = [len(tile_starts(n, c, o)) for n, c, o in zip(shape, crop, overlap)]
    k = [1, 1, 1]
    while True:
        growable = [a for a in range(3) if k[a] < counts[a]]
        if not growable:
            return tuple(k)  # type: ignore[return-value]
        extent = largest_block(shape, crop, overlap, k)
        axis = min(growable, key=lambda a: extent[a])
        trial = list(k)
        trial[axis] += 1
        if block_peak_bytes(largest_block(shape, crop, overlap, trial), label_halo, vector_halo) > budget:
            return tuple(k)  # type: ignore[return-value]
        k = trial


def per_block_from_voxels(block: Sequence[int], crop: Sequence[int], overlap: Sequence[int], shape: Sequence[int]) -> Triple:
    """``--block X,Y,Z`` (voxels) rounded to whole crop steps, at least one."""
    steps = [max(1, min(c, n) - 2 * o) for c, n, o in zip(crop, shape, overlap)]
    return tuple(max(1, round(b / s)) for b, s in zip(block, steps))  # type: ignore[return-value]
