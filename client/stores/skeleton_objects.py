"""A precomputed output's ``skeletons/`` source: its ``info`` and one object per instance.

Written into the store before the volume's ``info`` names it (in memory, into the staged
store; blockwise, in place by the merge tasks, then `publish` adds the key): nothing is
readable before the ``info``. The objects are client/skeletons.py's `encode_precomputed`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import OutputError
from .location import StoreUrl, context, explain
from .writer import done

__all__ = ["SKELETONS_KEY", "write_skeleton_info", "write_skeleton_objects", "name_skeletons"]

SKELETONS_KEY = "skeletons"  # the info's "skeletons" value: the folder of the objects and their info


def _kv(url: StoreUrl) -> Any:
    import tensorstore as ts

    try:
        return done(ts.KvStore.open(url.kvstore(), context=context()), url)
    except ValueError as e:
        raise explain(e, url, "store", OutputError) from e


def write_skeleton_info(url: StoreUrl, info: Mapping[str, Any]) -> None:
    """``skeletons/info`` (``"@type": "neuroglancer_skeletons"``, transform, vertex attributes)."""
    done(_kv(url).write(f"{SKELETONS_KEY}/info", json.dumps(dict(info)).encode()), url)


def write_skeleton_objects(url: StoreUrl, encoded: Mapping[int, bytes]) -> int:
    """``skeletons/{id}`` for each id of ``encoded``; the bytes written."""
    kv = _kv(url)
    try:
        pending = [kv.write(f"{SKELETONS_KEY}/{int(segid)}", data) for segid, data in encoded.items()]
        for future in pending:
            done(future, url)
    except ValueError as e:
        raise explain(e, url, "store", OutputError) from e
    return sum(len(data) for data in encoded.values())


def name_skeletons(metadata: dict[str, Any]) -> dict[str, Any]:
    """The volume's ``info`` with its ``skeletons`` source named."""
    return {**metadata, "skeletons": SKELETONS_KEY}
