"""A precomputed output's ``skeletons/`` source: its ``info`` and one object per instance, as
the keys and bytes to write (`write_objects` writes them).

Written into the store before the volume's ``info`` names them (in memory, into the staged
store; blockwise, in place by the merge tasks, then ``export.publish`` adds the key): nothing
is readable before the ``info``. The objects are client/skeletons.py's `encode_precomputed`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import OutputError
from .location import StoreUrl, context, done, explain, write_all

__all__ = ["SKELETONS_KEY", "SKELETON_INFO", "skeleton_info_object", "skeleton_objects", "name_skeletons", "write_objects", "add_skeletons"]

SKELETONS_KEY = "skeletons"  # the info's "skeletons" value: the folder of the objects and their info
SKELETON_INFO: dict[str, Any] = {
    "@type": "neuroglancer_skeletons",
    "transform": [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0],  # vertices are stored in nm
    "vertex_attributes": [{"id": "radius", "data_type": "float32", "num_components": 1}],
}
"""``skeletons/info`` of a precomputed output."""


def skeleton_info_object(info: Mapping[str, Any]) -> dict[str, bytes]:
    """``skeletons/info`` (``"@type": "neuroglancer_skeletons"``, transform, vertex attributes)."""
    return {f"{SKELETONS_KEY}/info": json.dumps(dict(info)).encode()}


def skeleton_objects(encoded: Mapping[int, bytes]) -> dict[str, bytes]:
    """``skeletons/{id}`` for each id of ``encoded``."""
    return {f"{SKELETONS_KEY}/{int(segid)}": data for segid, data in encoded.items()}


def name_skeletons(metadata: dict[str, Any]) -> dict[str, Any]:
    """The volume's ``info`` with its ``skeletons`` source named."""
    return {**metadata, "skeletons": SKELETONS_KEY}


def write_objects(url: StoreUrl, objects: Mapping[str, bytes]) -> int:
    """Write each key's bytes at ``url`` (each request bounded); the bytes written."""
    import tensorstore as ts

    try:
        kv = done(ts.KvStore.open(url.kvstore(), context=context()), url)
        return write_all(kv, url, objects.items())
    except ValueError as e:
        raise explain(e, url, "store", OutputError) from e


def add_skeletons(url: StoreUrl, info: Mapping[str, Any], encoded: Mapping[int, bytes]) -> None:
    """In memory, into the staged store: ``skeletons/info`` and ``skeletons/{id}``, then the
    volume's ``info`` naming them."""
    import tensorstore as ts

    write_objects(url, {**skeleton_info_object(info), **skeleton_objects(encoded)})
    try:
        kv = done(ts.KvStore.open(url.kvstore(), context=context()), url)
        metadata = json.loads(bytes(done(kv.read("info"), url).value))
        done(kv.write("info", json.dumps(name_skeletons(metadata)).encode()), url)
    except ValueError as e:
        raise explain(e, url, "store", OutputError) from e
