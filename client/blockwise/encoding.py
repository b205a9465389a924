"""Dense block arrays as compressed objects in X slabs: how the work store keeps a block's vectors
shell, its resolved labels and its assigned ids (store.py's layout).

A block's intermediates are mostly runs of one value (a label per object, zeros outside the
shell) or smooth (vectors): byte-shuffled zstd (Blosc) takes them to a small fraction of a
byte per voxel, where the flat-index form (sparse.py) costs 4 bytes of index per voxel kept.
An object is an 8-byte header length, a JSON header (dtype, shape, slab planes, each slab's
end offset and CRC-32), then the slabs, each ``array[..., x0:x1, :, :]`` compressed on its own,
so a neighbour's halo fetches only the X planes it needs (`read_box`: three ranged reads) and
decodes one slab at a time; every slab read is checked against its CRC.
Pure functions of bytes and arrays, and the reads through the store's object API.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["encode", "decode", "read_box", "SLAB_BYTES"]

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
    header = json.dumps({"dtype": array.dtype.str, "shape": list(array.shape), "step": step, "ends": ends,
                         "crcs": [zlib.crc32(part) for part in parts]}).encode()
    return b"".join([_HEAD.pack(len(header)), header, *parts])


def _header(data: bytes) -> tuple[dict[str, Any], int]:
    (size,) = _HEAD.unpack_from(data)
    return json.loads(data[_HEAD.size:_HEAD.size + size]), _HEAD.size + size


def _into(head: dict[str, Any], body: bytes, first: int, box: Sequence[slice], out: np.ndarray,
          convert: Callable[[np.ndarray], np.ndarray] | None) -> None:
    """Write ``box`` (X, Y, Z slices of the stored array's last three axes, X within the slabs
    from ``first`` whose bytes ``body`` holds) into ``out`` (the box's shape), one slab decoded
    at a time, each checked against its CRC, each through ``convert`` when given."""
    codec, dtype, shape, step, ends, crcs = _codec(), np.dtype(head["dtype"]), head["shape"], head["step"], head["ends"], head["crcs"]
    base = ends[first - 1] if first else 0
    lo, hi = box[0].start, box[0].stop
    for i in range(first, math.ceil(hi / step)):
        part = body[(ends[i - 1] if i else 0) - base:ends[i] - base]
        if zlib.crc32(part) != crcs[i]:
            raise ValueError("a work store object's bytes do not match their checksum")
        x0, x1 = i * step, min(shape[-3], (i + 1) * step)
        raw = np.frombuffer(codec.decode(part), f"u{dtype.itemsize}" if dtype.kind == "f" else dtype)
        slab = raw.view(dtype).reshape(*shape[:-3], x1 - x0, *shape[-2:])
        a, b = max(lo, x0), min(hi, x1)
        piece = slab[..., a - x0:b - x0, box[1], box[2]]
        out[..., a - lo:b - lo, :, :] = convert(piece) if convert is not None else piece


def decode(data: bytes) -> np.ndarray:
    """The array `encode` made ``data`` of; ``ValueError`` when its bytes are not what were written."""
    head, at = _header(data)
    shape = head["shape"]
    out = np.empty(shape, np.dtype(head["dtype"]))
    _into(head, data[at:], 0, (slice(0, shape[-3]), slice(None), slice(None)), out, None)
    return out


def read_box(store: Any, key: str, box: Sequence[slice], out: np.ndarray,
             convert: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
    """Write ``box`` (X, Y, Z slices with bounds) of the array stored at ``key`` into ``out``
    (``[..., *box's extent]``), each value through ``convert`` when given, fetching only the
    slabs that hold its X planes (ranged reads through the store's object API) and decoding one
    slab at a time: a halo read holds one slab beyond what it fills."""
    (size,) = _HEAD.unpack(store.get_range(key, 0, _HEAD.size))
    head = json.loads(store.get_range(key, _HEAD.size, _HEAD.size + size))
    at, step, ends = _HEAD.size + size, head["step"], head["ends"]
    first, last = box[0].start // step, math.ceil(box[0].stop / step)
    body = store.get_range(key, at + (ends[first - 1] if first else 0), at + ends[last - 1])
    _into(head, body, first, box, out, convert)
