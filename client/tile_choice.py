"""Which inference tile ``--tile auto`` picks: pure arithmetic on the volume's shape, the model's
crop and overlap, and a cap on the voxels of one tile (from a memory budget).

The tile is how much of the volume the network sees at once; the model's crop is what it was
trained on. Every crop of a grid sends its whole window and keeps its interior, so a grid costs
``network input voxels per output voxel`` (`input_per_output`): ~2.3 for the seed's crop
(300, 300, 20) with overlap (10, 10, 5) on a long volume, most of it z.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import InputError
from .tiling import tile_starts
from .volume import describe_shape

__all__ = ["Triple", "TileCap", "input_per_output", "tile_candidates", "choose_tile", "resolve_tile"]

Triple = tuple[int, int, int]


def input_per_output(shape: Sequence[int], tile: Sequence[int], overlap: Sequence[int], minimum: int = 1) -> float:
    """Network input voxels per output voxel of the grid of ``tile`` over ``shape`` (all crops
    sent, each padded to the network's ``minimum`` where the volume is shorter).

    >>> round(input_per_output((600, 600, 40), (300, 300, 20), (10, 10, 5)), 2)
    3.38
    >>> input_per_output((600, 600, 40), (600, 600, 40), (10, 10, 5))
    1.0
    """
    sent = 1
    for n, t, o in zip(shape, tile, overlap):
        sent *= len(tile_starts(n, t, o)) * max(min(t, n), minimum)
    return sent / math.prod(shape)


def tile_candidates(length: int, crop: int, overlap: int) -> list[int]:
    """Tile sizes along one axis: whole steps of the model's crop with its overlap
    (``k * (crop - 2 * overlap) + 2 * overlap``, ``k >= 1``), up to the first that covers the axis
    (given as the axis' length, or the crop on an axis shorter than it: a tile is never smaller
    than the crop, and the grid clips it to the volume).

    >>> tile_candidates(600, 300, 10)
    [300, 580, 600]
    >>> tile_candidates(7, 20, 5)
    [20]
    """
    step = crop - 2 * overlap
    sizes = []
    k = 1
    while True:
        size = k * step + 2 * overlap
        if size >= length:
            sizes.append(max(length, crop))
            return sizes
        sizes.append(size)
        k += 1


def choose_tile(shape: Sequence[int], crop: Sequence[int], overlap: Sequence[int], max_voxels: int,
                minimum: int = 1) -> Triple:
    """The tile (runtime ``X, Y, Z``) with the fewest network input voxels per output voxel
    among whole-step tiles (`tile_candidates`) of at most ``max_voxels`` voxels; of equal cost
    (within 1 %) one that covers the whole z axis first (most waste is z), then y, then x, then
    the smallest. Never smaller than the crop: when even the crop exceeds ``max_voxels`` it is the
    crop, and on an axis shorter than the crop it is the crop's (the grid clips both to the
    volume, and the model's parameters stay valid). Deterministic.

    >>> choose_tile((600, 600, 40), (300, 300, 20), (10, 10, 5), 300 * 300 * 20)
    (300, 300, 20)
    >>> choose_tile((600, 600, 40), (300, 300, 20), (10, 10, 5), 320 * 320 * 40)
    (300, 300, 40)
    >>> choose_tile((600, 600, 40), (300, 300, 20), (10, 10, 5), 10**9)
    (600, 600, 40)
    """
    per_axis = [tile_candidates(n, c, o) for n, c, o in zip(shape, crop, overlap)]
    per_axis = [[min(t, n) for t in sizes] for sizes, n in zip(per_axis, shape)]  # what the grid sends of each
    factor = [{t: len(tile_starts(n, t, o)) * max(t, minimum) / n for t in sizes}  # the cost is a product over axes
              for sizes, n, o in zip(per_axis, shape, overlap)]
    smallest = [max(sizes[0], minimum) for sizes in per_axis]
    best: tuple[tuple[float, ...], Triple] | None = None
    for x in per_axis[0]:
        if best is not None and max(x, minimum) * smallest[1] * smallest[2] > max_voxels:
            break  # sizes ascend: every tile from here on is over the cap
        for y in per_axis[1]:
            if best is not None and max(x, minimum) * max(y, minimum) * smallest[2] > max_voxels:
                break
            for z in per_axis[2]:
                tile = (x, y, z)
                voxels = math.prod(max(t, minimum) for t in tile)
                if best is not None and voxels > max_voxels:
                    break
                cost = math.prod(f[t] for f, t in zip(factor, tile))
                covers = [t < n for t, n in zip(tile, shape)]  # False where the tile covers the axis
                key = (0 if voxels <= max_voxels else 1, round(math.log(cost) / math.log(1.01)), covers[2], covers[1],
                       covers[0], voxels, *tile)
                if best is None or key < best[0]:
                    best = (key, tile)
    assert best is not None
    return tuple(max(t, c) for t, c in zip(best[1], crop))  # type: ignore[return-value]  # never below the crop: the grid clips


@dataclass(frozen=True)
class TileCap:
    """The most voxels one tile may have (``voxels``), and how a refusal explains it: in-process,
    the network's estimated ``bytes_per_voxel`` plus ``fixed`` bytes against ``budget`` bytes;
    on Triton (``bytes_per_voxel`` None) the model config's limit, ``source`` naming it."""

    voxels: int
    source: str
    bytes_per_voxel: float | None = None
    fixed: int = 0
    budget: int = 0

    def refusal(self, tile: Triple, voxels: int) -> str:
        """The one line refusing an explicit ``tile`` of ``voxels`` over the cap."""
        fix = "pass a smaller --tile, or --tile auto (the largest that fits)"
        if self.bytes_per_voxel is None:
            return f"tile {describe_shape(tile)} is {voxels:,} voxels per crop, over the {self.voxels:,} {self.source}: {fix}"
        need = self.fixed + voxels * self.bytes_per_voxel
        return (f"tile {describe_shape(tile)} needs ~{_size(need)} to infer one crop in this process "
                f"(this network's activation estimate), over the {_size(self.budget)} budget ({self.source}): {fix}")


def _size(size: float) -> str:
    """Bytes as a message says them: ``13.5 GiB``, ``134 MiB``."""
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"


def resolve_tile(asked: Triple | str, shape: Sequence[int], crop: Sequence[int], overlap: Sequence[int], minimum: int,
                 cap: TileCap | None, *, reference_borders: bool = False) -> Triple:
    """The tile a run infers with (runtime ``X, Y, Z``) for ``--tile asked``: the model's
    ``crop`` for ``"crop"`` and in reference mode; for ``"auto"`` `choose_tile` under ``cap``
    (the crop without a cap: a model whose config says nothing of its network); a size as
    given, refused (`InputError`, one line) when ``cap`` says one crop of it (clipped to the
    volume) does not fit. The model's crop always fits: it is what runs without ``--tile``."""
    model_crop = (int(crop[0]), int(crop[1]), int(crop[2]))
    if reference_borders or asked == "crop":
        return model_crop
    if asked == "auto":
        return model_crop if cap is None else choose_tile(shape, crop, overlap, cap.voxels, minimum)
    if isinstance(asked, str):
        raise InputError(f"--tile {asked}: give crop, auto or a size X,Y,Z")
    tile = (int(asked[0]), int(asked[1]), int(asked[2]))
    voxels = math.prod(max(min(t, n), minimum) for t, n in zip(tile, shape))
    if cap is not None and voxels > max(cap.voxels, math.prod(max(min(c, n), minimum) for c, n in zip(crop, shape))):
        raise InputError(cap.refusal(tile, voxels))
    return tile
