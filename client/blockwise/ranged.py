"""A ``.npy`` object read by byte ranges: what a memory map gives a local file, for any work store.

A neighbour's halo needs only the run of a block's sparse voxels in a few X planes. `RangedArray`
reads the header once, then only the bytes of the slices taken from it (`__getitem__` with a
slice of the last axis); `searchsorted` finds a run from a small sample of the sorted array
(every `STRIDE`-th element, stored beside it) and one ranged read of the stretch between two
samples. Anything else reads the whole object (``np.asarray``).
"""

from __future__ import annotations

import ast
import io
import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["STRIDE", "npy_bytes", "sample", "RangedArray"]

STRIDE = 4096  # elements of a sorted array between two samples: one ranged read of 16 KiB (uint32) per search
_HEAD = 128  # np.save's header, padded to 64 bytes: one read for all but very long shapes


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as ``.npy`` bytes (C order)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array))
    return buffer.getvalue()


def sample(at: np.ndarray) -> np.ndarray:
    """Every `STRIDE`-th element of the sorted ``at``: what `RangedArray.searchsorted` narrows with."""
    return np.ascontiguousarray(at[::STRIDE])


class RangedArray:
    """A C-order ``.npy`` object as an array-like: ``shape``, ``dtype``, ranged slices of the last axis.

    ``read(start, stop)`` returns the object's bytes ``start .. stop-1``; ``read_all()`` the
    whole object; ``samples()`` `sample` of it (for a sorted 1-D array)."""

    def __init__(self, read: Callable[[int, int], bytes], read_all: Callable[[], bytes],
                 samples: Callable[[], np.ndarray] | None = None) -> None:
        self._read, self._read_all, self._samples = read, read_all, samples
        head = read(0, _HEAD)
        if head[:6] != b"\x93NUMPY":
            raise ValueError("not a .npy object")
        width = 2 if head[6] == 1 else 4
        length = int.from_bytes(head[8:8 + width], "little")
        self.offset = 8 + width + length
        if self.offset > len(head):
            head = read(0, self.offset)
        header = ast.literal_eval(head[8 + width:self.offset].decode("latin1"))
        if header["fortran_order"]:
            raise ValueError("a Fortran-order .npy object")
        self.dtype = np.dtype(header["descr"])
        self.shape: tuple[int, ...] = tuple(header["shape"])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        data = self._read_all()
        array = np.frombuffer(data, self.dtype, count=math.prod(self.shape), offset=self.offset).reshape(self.shape)
        return array if dtype is None else array.astype(dtype)

    def __getitem__(self, item: Any) -> np.ndarray:
        if isinstance(item, tuple) and len(item) == 2 and item[0] is Ellipsis:
            item = item[1]
        if not isinstance(item, slice) or item.step not in (None, 1):
            return np.asarray(self)[item]
        n = self.shape[-1]
        start, stop, _ = item.indices(n)
        stop = max(start, stop)
        size = self.dtype.itemsize
        rows = [self._read(self.offset + (r * n + start) * size, self.offset + (r * n + stop) * size)
                for r in range(math.prod(self.shape[:-1]))]
        return np.frombuffer(b"".join(rows), self.dtype).reshape(*self.shape[:-1], stop - start)

    def searchsorted(self, keys: np.ndarray) -> np.ndarray:
        """``np.searchsorted(self, keys)`` for a sorted 1-D array, reading one stretch per key."""
        if self._samples is None:
            return np.searchsorted(np.asarray(self), keys)
        samples = self._samples()
        out = np.empty(len(keys), np.int64)
        for i, key in enumerate(np.asarray(keys, self.dtype)):
            j = int(np.searchsorted(samples, key))  # samples[j-1] < key <= samples[j]
            lo, hi = max(j - 1, 0) * STRIDE, min(j * STRIDE, self.shape[0])
            out[i] = lo + int(np.searchsorted(self[lo:hi], key)) if hi > lo else lo
        return out
