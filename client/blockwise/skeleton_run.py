"""``--skeletons`` blockwise, run from the client: the label tables kept for a resumed run,
then skeleton_stage.py's two stages, and each instance's graph length for the table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .skeleton_stage import LENGTHS, buckets_for, grown, merge_bucket, region_table, skeleton_region
from .stage_runner import still_done
from .stages import region_name

__all__ = ["COMPONENTS", "keep_tables", "run_skeletons"]


COMPONENTS = "skeleton_components"  # COMPONENTS/{block}.npz: a block's label table, kept for a resumed run


def keep_tables(store: Any, names: Sequence[str], tables: Sequence[np.ndarray]) -> None:
    """Each block's label table (its labels → the volume's components), for this stage of a
    run resumed past assign (which does not label again)."""
    for name, table in zip(names, tables):
        store.save_npz(COMPONENTS, name, table=table)


def run_skeletons(stage: Any, target: Any, firsts: Mapping[str, tuple[np.ndarray, ...]], keys: np.ndarray,
                  ranks: np.ndarray, dtype: Any) -> np.ndarray:
    """Both stages (after the write, before publishing); each instance's graph length in nm,
    indexed by id (0: background). ``keys``/``ranks``: the write stage's numbering."""
    from ..errors import OutputError

    job, store = stage.job, stage.store
    grid = job.grid
    names = [b.name for b in grid.blocks]
    try:
        loaded = store.load_npz_many(COMPONENTS, names, ["table"])
    except FileNotFoundError as e:
        raise OutputError("--skeletons need the predicted skeleton, which this work directory no longer holds (its run "
                          "finished assigning without --skeletons): run again without --resume") from e
    tables = {b.index: loaded[b.name]["table"] for b in grid.blocks}
    component_dtype = np.result_type(*(t.dtype for t in tables.values())) if tables else np.dtype(np.uint32)
    instances = int(stage.result.instances)
    buckets = buckets_for(instances)
    regions = target.destination.regions()
    region_names = [region_name(r) for r in regions]
    done = still_done(stage, "skeleton", region_names)
    calls = []
    for region, name in zip(regions, region_names):
        if name in done:
            continue
        box = grown(region, job.shape)
        reach = list(grid.overlapping(box))
        present, final = region_table([firsts[b.name][0] for b in reach], keys, ranks)
        calls.append((name, skeleton_region, (job, region, {b.index: tables[b.index] for b in reach}, component_dtype,
                                              present, final, dtype, buckets)))
    stage.run("skeleton", calls, len(regions))
    bucket_names = [str(b) for b in range(buckets)]
    done = still_done(stage, "skeleton-merge", bucket_names)
    url = target.destination.store.url
    merged = stage.run("skeleton-merge", [(n, merge_bucket, (job, int(n), buckets, instances, url))
                                          for n in bucket_names if n not in done], buckets)
    stage.result.skeleton_bytes = sum(v.get("bytes", 0) for v in merged.values()) + sum(
        v[1].get("bytes", 0) for v in done.values())
    lengths = np.zeros(instances + 1, np.float64)
    for arrays in store.load_npz_many(LENGTHS, bucket_names, ["ids", "lengths"]).values():
        lengths[arrays["ids"]] = arrays["lengths"]
    return lengths
