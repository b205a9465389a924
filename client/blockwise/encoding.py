"""Dense block arrays as compressed objects in X slabs: how the work store keeps a block's vectors
shell, its resolved labels and its assigned ids (store.py's layout).

A block's intermediates are mostly runs of one value (a label per object, zeros outside the
shell) or smooth (vectors): byte-shuffled zstd (Blosc) takes them to a small fraction of a
byte per voxel, where the flat-index form (sparse.py) costs 4 bytes of index per voxel kept.
An object is an 8-byte header length, a JSON header (dtype, shape, slab planes, each slab's
end offset), then the slabs (their CRC-32 in the header: `decode` checks it), each ``array[..., x0:x1, :, :]`` compressed on its own, so a
neighbour's halo fetches only the X planes it needs (`read_planes`: two ranged reads).
Pure functions of bytes and arrays, and the reads through the store's object API.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from typing import Any

import numpy as np

__all__ = ["encode", "decode", "read_planes", "SLAB_BYTES"]

SLAB_BYTES = 4 << 20  # raw bytes per slab: small enough for a halo read to fetch little beyond its planes
_HEAD = struct.Struct("<Q")


def _codec() -> Any:
    from numcodecs import Blosc  # type: ignore[import-untyped]

    return Blosc(cname="zstd", clevel=3, shuffle=Blosc.SHUFFLE)


def encode(array: np.ndarray) -> bytes:
    """``array`` (``[..., X, Y, Z]``) as one object of compressed X slabs (float16 as its bits).

    Examples
    --------
    >>> a = np.arange(24, dtype=np.uint32).reshape(2, 3, 4)
    >>> np.array_equal(decode(encode(a)), a)
    True
    """
    array = np.asarray(array)
    x = array.shape[-3]
    plane = array.nbytes // max(x, 1)
    step = max(1, min(x, SLAB_BYTES // max(plane, 1)))
    codec = _codec()
    parts: list[bytes] = []
    ends: list[int] = []
    for x0 in range(0, x, step):
        raw = np.ascontiguousarray(array[..., x0:x0 + step, :, :])
        parts.append(bytes(codec.encode(raw.view(f"u{raw.dtype.itemsize}") if raw.dtype.kind == "f" else raw)))
        ends.append(ends[-1] + len(parts[-1]) if ends else len(parts[-1]))
    body = b"".join(parts)
    header = json.dumps({"dtype": array.dtype.str, "shape": list(array.shape), "step": step, "ends": ends,
                         "crc": zlib.crc32(body)}).encode()
    return b"".join([_HEAD.pack(len(header)), header, body])


def _header(data: bytes) -> tuple[dict[str, Any], int]:
    (size,) = _HEAD.unpack_from(data)
    return json.loads(data[_HEAD.size:_HEAD.size + size]), _HEAD.size + size


def _slabs(head: dict[str, Any], body: bytes, first: int, last: int) -> np.ndarray:
    """Slabs ``first .. last-1`` from ``body`` (their bytes, from slab ``first``'s start) as one array."""
    codec, dtype, shape, step, ends = _codec(), np.dtype(head["dtype"]), head["shape"], head["step"], head["ends"]
    base = ends[first - 1] if first else 0
    x = shape[-3]
    out = np.empty((*shape[:-3], min(x, last * step) - first * step, *shape[-2:]), dtype)
    bits = out.view(f"u{dtype.itemsize}") if dtype.kind == "f" else out
    for i in range(first, last):
        start = (ends[i - 1] if i else 0) - base
        lo, hi = i * step - first * step, min(x, (i + 1) * step) - first * step
        raw = np.frombuffer(codec.decode(body[start:ends[i] - base]), bits.dtype)
        bits[..., lo:hi, :, :] = raw.reshape(*shape[:-3], hi - lo, *shape[-2:])
    return out


def decode(data: bytes) -> np.ndarray:
    """The array `encode` made ``data`` of; ``ValueError`` when its bytes are not what were written."""
    head, at = _header(data)
    if zlib.crc32(data[at:]) != head["crc"]:
        raise ValueError("a work store object's bytes do not match their checksum")
    return _slabs(head, data[at:], 0, len(head["ends"]))


def read_planes(store: Any, key: str, lo: int, hi: int) -> np.ndarray:
    """X planes ``lo .. hi-1`` of the array stored at ``key``, fetching only the slabs that hold
    them (ranged reads through the store's object API)."""
    (size,) = _HEAD.unpack(store.get_range(key, 0, _HEAD.size))
    head = json.loads(store.get_range(key, _HEAD.size, _HEAD.size + size))
    at, step, ends = _HEAD.size + size, head["step"], head["ends"]
    first, last = lo // step, math.ceil(hi / step)
    start = at + (ends[first - 1] if first else 0)
    body = store.get_range(key, start, at + ends[last - 1])
    slabs = _slabs(head, body, first, last)
    return slabs[..., lo - first * step:hi - first * step, :, :]
