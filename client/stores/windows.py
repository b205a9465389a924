"""Windows of an opened volume read into memory as NumPy reads them, and what a chunk the store
does not hold becomes: an error by default, zeros counted with ``--fill-missing``.

TensorStore's chunked drivers read a missing chunk as the fill value unless told otherwise
(``fill_missing_data_reads``), and so does zarr-python, always; a copy or upload that stopped
half-way would then segment into fewer instances with no sign of it (CloudVolume raises
``EmptyVolumeException`` there unless asked to fill).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .location import StoreUrl, explain

__all__ = ["WindowArray", "FILL_MISSING", "is_missing", "CheckedZarr", "read_error", "filled_text"]


class WindowArray:
    """A TensorStore seen as a NumPy-like array: ``shape``, ``dtype``, and ``a[key]`` reading
    that window into memory. A read that fails mid-run (a host gone, a chunk missing) is one
    ``InputError``; with ``filler`` (the same volume opened to read missing chunks as zeros,
    ``--fill-missing``) a missing chunk is read as zeros and counted in ``filled``."""

    def __init__(self, store: Any, url: StoreUrl, filler: Any = None) -> None:
        self._store = store
        self.url = url
        self._filler = filler
        self.filled: set[tuple[int, ...]] = set()  # grid indices of the chunks read as zeros
        self.shape = tuple(int(n) for n in store.shape)
        self.dtype = np.dtype(store.dtype.numpy_dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = self._clipped(key)
        try:
            return np.asarray(self._store[key].read().result())
        except ValueError as e:
            if self._filler is None or not is_missing(e):
                raise read_error(e, self.url) from e
        self.filled |= self._missing(key)
        try:
            return np.asarray(self._filler[key].read().result())
        except ValueError as e:
            raise read_error(e, self.url) from e

    def _missing(self, key: tuple[Any, ...]) -> set[tuple[int, ...]]:
        """The grid indices of the chunks in ``key``'s window that the store does not hold."""
        layout = self._store.chunk_layout
        chunk, origin = layout.read_chunk.shape, layout.grid_origin
        box = [(k.start, k.stop) if isinstance(k, slice) else (k, k + 1) for k in key]
        cells = itertools.product(*(range((lo - o) // c, -(-(hi - o) // c)) for (lo, hi), c, o in zip(box, chunk, origin)))
        found = set()
        for cell in cells:
            window = tuple(slice(max(lo, o + i * c), min(hi, o + (i + 1) * c)) for (lo, hi), i, c, o in zip(box, cell, chunk, origin))
            try:
                self._store[window].read().result()
            except ValueError as e:
                if not is_missing(e):
                    raise read_error(e, self.url) from e
                found.add(cell)
        return found

    def _clipped(self, key: Any) -> tuple[Any, ...]:
        return _numpy_key(key, self.shape)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype)


FILL_MISSING = "pass --fill-missing to read missing chunks as zeros"


def _numpy_key(key: Any, shape: tuple[int, ...]) -> tuple[Any, ...]:
    """``key`` as NumPy reads it (TensorStore refuses what NumPy clips): ``...`` expanded,
    slices clipped to the shape, negative indices from the end."""
    ndim = len(shape)
    key = key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis for k in key):
        at = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:at] + (slice(None),) * (ndim - len(key) + 1) + key[at + 1 :]
    out: list[Any] = []
    for k, n in zip(key + (slice(None),) * (ndim - len(key)), shape):
        if isinstance(k, slice):
            start, stop, step = k.indices(n)
            out.append(slice(start, max(start, stop), step) if step > 0 else k)
        else:
            out.append(int(k) + n if int(k) < 0 else int(k))
    return tuple(out)


def is_missing(error: BaseException) -> bool:
    """Whether a TensorStore read failed because a chunk is absent (a file, object or shard
    entry the store does not hold; an HTTP 404)."""
    text = str(error)
    return text.startswith("NOT_FOUND") and "is missing" in text


def _missing_line(url: Any, what: str) -> str:
    return (f"{url}: {what} is missing — the volume is incomplete (a failed copy or upload?); "
            f"restore it, or {FILL_MISSING}")


class CheckedZarr:
    """A local zarr-python array (one TensorStore cannot open) whose window reads fail on a
    missing chunk file, as `WindowArray`'s do: zarr-python reads one as the fill value.
    With ``fill_missing`` it is read so and counted in ``filled``."""

    def __init__(self, array: Any, folder: Path, fill_missing: bool) -> None:
        self._array, self._folder, self._fill = array, folder, fill_missing
        self.url = folder
        self.filled: set[tuple[int, ...]] = set()
        self.shape, self.dtype, self.ndim = tuple(array.shape), np.dtype(array.dtype), len(array.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        box = [(k.start, k.stop) if isinstance(k, slice) else (k, k + 1) for k in _numpy_key(key, self.shape)]
        grid = getattr(self._array, "shards", None) or self._array.chunks  # a shard is one file
        for cell in itertools.product(*(range(lo // c, -(-hi // c)) for (lo, hi), c in zip(box, grid))):
            name = self._array.metadata.encode_chunk_key(cell)
            if not (self._folder / name).exists() and cell not in self.filled:
                if not self._fill:
                    raise InputError(_missing_line(self.url, f"chunk {{{', '.join(map(str, cell))}}} ({self._folder / name})"))
                self.filled.add(cell)
        return np.asarray(self._array[key])


def read_error(error: BaseException, url: StoreUrl) -> InputError:
    """A failed window read as one line: a missing chunk named with the fix, else
    `explain`'s line (a host gone, access denied, a server without Range)."""
    if is_missing(error):
        found = re.search(r"chunk (\{[^}]*\}) stored at (?:shard entry \S+ in )?(.*?) is missing", str(error))
        return InputError(_missing_line(url, f"chunk {found[1]} ({found[2]})" if found else "a chunk"))
    return explain(error, url, "data")


def filled_text(count: int, url: Any = None) -> str | None:
    """``N missing chunks were read as zeros`` (``--fill-missing``), or None for none."""
    if not count:
        return None
    where = f" of {url}" if url is not None else ""
    return (f"{count} missing chunk{'s' if count != 1 else ''}{where} {'were' if count != 1 else 'was'} read as zeros "
            "(--fill-missing): the labels there are background")
