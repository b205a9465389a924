"""A volume as the runtime sees it: a single-channel ``[X, Y, Z]`` view of what a file or an
array holds, and how it was read.

On disk a volume is ``[Z, Y, X]`` or ``[Z, Y, X, C]`` as Fiji and napari name the axes (the
seed's ``[Z, X, Y]``), unless the file or ``--axes`` says otherwise; the runtime works in the
seed's ``[X, Y, Z]`` (X = rows, docs/AXES.md). Reading is lazy where the format allows: crops are
cut from a view (`XYZView`). Opening files is volume_read.py's job, writing label_write.py's.
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

__all__ = [
    "SUPPORTED_DTYPES", "TIFF_SUFFIXES", "ZARR_SUFFIXES", "Volume", "XYZView", "describe_shape", "describe_channel",
    "release_pages",
]

if TYPE_CHECKING:
    from .stores import StoreUrl

SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "float16", "float32", "float64")
TIFF_SUFFIXES = (".tif", ".tiff")
ZARR_SUFFIXES = (".zarr",)


@dataclass(frozen=True)
class Volume:
    """A single-channel volume as an ``[X, Y, Z]`` array-like (possibly lazy), and how it was read.

    ``axes`` are the file's axes in Fiji/napari letters (``ZYX``, ``ZCYX``, ``XYZ``, ...) and
    ``axes_from`` where they came from: ``"file"`` (ImageJ/OME metadata), ``"--axes"`` or
    ``"default"`` (the seed's reading). ``channel`` is the channel taken of ``channels``, and
    ``channel_from`` why: ``"--channel"``, ``"only"`` or ``"default"`` (channel 2 of more than 3).
    """

    data: Any
    path: Path | StoreUrl
    axes: str = "ZYX"
    axes_from: str = "default"
    channel: int = 0
    channels: int = 1
    channel_from: str = "only"

    @property
    def shape(self) -> tuple[int, int, int]:
        x, y, z = (int(n) for n in self.data.shape)
        return x, y, z

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)


class XYZView:
    """An on-disk array seen as ``[X, Y, Z]`` without reading it.

    ``axes`` gives the array axes that hold Z, X and Y; ``fixed`` pins the others (a channel, a
    single time point) to one index. Slicing reads only the requested window.
    """

    def __init__(self, array: Any, axes: tuple[int, int, int], fixed: dict[int, int]) -> None:
        self._array = array
        self._axes = axes
        self._fixed = fixed
        z, x, y = axes
        self.shape = (int(array.shape[x]), int(array.shape[y]), int(array.shape[z]))
        self.dtype = array.dtype
        kept = sorted(axes)
        self._to_xyz = (kept.index(x), kept.index(y), kept.index(z))

    @property
    def array(self) -> Any:
        """The array as stored (e.g. a store's windows, which count the chunks read as zeros)."""
        return self._array

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        sx, sy, sz = key
        index: list[Any] = [slice(None)] * len(self._array.shape)
        z, x, y = self._axes
        index[z], index[x], index[y] = sz, sx, sy
        for axis, at in self._fixed.items():
            index[axis] = at
        return np.asarray(self._array[tuple(index)]).transpose(self._to_xyz)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[slice(None), slice(None), slice(None)]
        return out if dtype is None else out.astype(dtype)


def describe_shape(shape_xyz: Sequence[int]) -> str:
    """The runtime's ``(X, Y, Z)`` as Fiji and napari name the axes: ``z 48, y 256, x 256``."""
    x, y, z = (int(n) for n in shape_xyz)
    return f"z {z}, y {x}, x {y}"


def describe_channel(volume: Volume) -> str:
    """Which channel was segmented and why, for the summary."""
    if volume.channels == 1:
        return "the only channel"
    why = {
        "--channel": f"--channel {volume.channel}",
        "default": "default for more than 3 channels; pick with --channel",
    }[volume.channel_from]
    return f"channel {volume.channel} of {volume.channels} ({why})"


def release_pages(volume: Volume) -> None:
    """Drop a memory-mapped input's pages from this process's resident set.

    Once every crop has been read the pages are of no further use; the kernel keeps them in
    its page cache, but while they are mapped they count toward the process's memory, at the
    very moment post-processing needs it most. Other inputs are left alone.
    """
    data = volume.data._array if isinstance(volume.data, XYZView) else volume.data
    mapping = getattr(data, "_mmap", None)  # numpy.memmap's mmap.mmap (TIFF read by tifffile.memmap)
    if isinstance(mapping, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        mapping.madvise(mmap.MADV_DONTNEED)
