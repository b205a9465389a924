"""What a segmentation gives back: the labels, their instance table, the voxel size, the summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .voxel_size import VoxelSize

__all__ = ["Segmentation"]


class Segmentation:
    """The result of [`segment`][skoots_client.segment].

    ``labels`` is a NumPy ``uint32`` (or ``labels_dtype=``) array ``[Z, Y, X]`` (``np.asarray(result)`` is the same):
    0 is background, instances are numbered ``1..N`` in the order they first appear. A
    blockwise run never holds the labels: they are read back from where they were written on
    first use. ``table`` is the instance table (`skoots_client.instances.InstanceTable`),
    measured on first use unless the run measured it (``table=PATH``). ``voxel_size`` is a
    [`VoxelSize`][skoots_client.VoxelSize] (``.zyx``, ``.unit``); ``summary`` the text the
    command line prints.
    """

    def __init__(self, *, summary: str, voxel_size: VoxelSize, instances: int, labels_xyz: Any = None,
                 written: Path | None = None, table: Any = None, raw_xyz: Any = None) -> None:
        self.summary = summary
        self.voxel_size = voxel_size
        self.instances = instances
        self.written = written
        self._labels_xyz = labels_xyz
        self._labels: np.ndarray | None = None
        self._table = table
        self._raw_xyz = raw_xyz

    @property
    def labels(self) -> np.ndarray:
        """Instance labels ``[Z, Y, X]`` in the dtype they were written in (``uint32`` by default)."""
        if self._labels is None:
            if self._labels_xyz is None:  # blockwise: read back whatever format and axis order it was written in
                from .volume_read import open_labels

                assert self.written is not None  # a run that kept no labels in memory wrote them
                self._labels_xyz = np.asarray(open_labels(self.written).data)
            self._labels = np.ascontiguousarray(np.asarray(self._labels_xyz).transpose(2, 0, 1))
            self._labels_xyz = None
        return self._labels

    @property
    def table(self) -> Any:
        """The instance table (one row per instance), measured on first use with the raw intensities."""
        if self._table is None:
            from .instances import measure_xyz

            self._table = measure_xyz(self.labels.transpose(1, 2, 0), self.voxel_size, self._raw_xyz)
        return self._table

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.labels if dtype is None else self.labels.astype(dtype)

    def __repr__(self) -> str:
        """Never reads the labels: a blockwise run's are read from where they were written on first use."""
        if self._labels is not None:
            z, y, x = self._labels.shape
            labels = f"[Z, Y, X] = [{z}, {y}, {x}]"
        elif self._labels_xyz is not None:
            x, y, z = self._labels_xyz.shape  # the runtime's X, Y, Z: rows, columns, slices
            labels = f"labels [Z, Y, X] = [{z}, {x}, {y}] not yet read"
        else:
            labels = f"labels not yet read (from {self.written} on first use of .labels)"
        return f"Segmentation({self.instances} instances, {labels}, voxel size {self.voxel_size.describe()})"
