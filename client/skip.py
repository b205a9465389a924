"""Crops not worth inferring (``--mask``, ``--skip-below``): the rule both engines apply, and
what a work directory's fingerprint records of it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .ngff import nearest_indices
from .tiling import Crop
from .volume import Volume
from .volume_read import read_volume
from .workdir import file_identity

__all__ = ["mask_window", "SkipRule", "skip_rule"]


def mask_window(mask: Any, shape: Sequence[int], window: Sequence[slice]) -> np.ndarray:
    """``mask`` (any ``[X, Y, Z]`` shape) scaled to a volume of ``shape`` by nearest neighbour,
    over ``window`` of that volume. Reads only the mask voxels the window samples' bounding box."""
    picks = [nearest_indices(m, n, w.start, w.stop) for m, n, w in zip(mask.shape, shape, window)]
    lows = [int(p[0]) for p in picks]
    block = np.asarray(mask[tuple(slice(lo, int(p[-1]) + 1) for lo, p in zip(lows, picks))])
    return block[np.ix_(*(p - lo for p, lo in zip(picks, lows)))]


@dataclass(frozen=True)
class SkipRule:
    """Crops not worth inferring: those whose whole window (margins included) holds no
    foreground of ``mask`` (nonzero, nearest-neighbour scaled to the volume), or whose raw
    maximum over the window is below ``below`` (in the input's own units, before normalising)."""

    mask: Any = None
    below: float | None = None

    def skips(self, volume: Volume, crop: Crop) -> bool:
        if self.mask is not None and not mask_window(self.mask, volume.shape, crop.window).any():
            return True
        return self.below is not None and bool(np.asarray(volume.data[crop.window]).max() < self.below)


def skip_rule(mask: Path | None, skip_below: float | None) -> tuple[SkipRule | None, dict[str, Any] | None]:
    """The rule for ``--mask`` / ``--skip-below`` and what a work directory's fingerprint says of it."""
    if mask is None and skip_below is None:
        return None, None
    mask_data = described_mask = None
    if mask is not None:
        try:
            mask_volume = read_volume(mask, fill_missing=None)  # a mask is label-like: missing chunks are background
        except InputError as e:
            raise InputError(f"--mask: {e}") from e
        mask_data = mask_volume.data
        described_mask = {**file_identity(mask), "shape": list(mask_data.shape)}
    described = {"mask": described_mask, "below": skip_below}
    return SkipRule(mask_data, skip_below), described
