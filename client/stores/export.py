"""``segment --blockwise --out precomputed://…`` / ``n5://…``: the blockwise run's finished
labels (a Zarr array in its work directory, the checkpoint a resumed run starts from) copied
into the output by Dask tasks, each a box of whole shards (or of chunks, up to 64 MiB) so no
two tasks write the same file or object, into a staging location published when every task
is done."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .location import StoreUrl, context, explain
from .writer import Region, add_offset, add_properties, done, open_output, output_format, spec, staged_store, write_boxes, write_region

__all__ = ["copy_region", "export_labels"]


def copy_region(array_path: str, target: StoreUrl, format: str, region: Region) -> dict[str, Any]:
    """One task: read ``region`` of the ``[Z, X, Y]`` Zarr labels and write it to ``target``."""
    import zarr

    (x0, x1), (y0, y1), (z0, z1) = region
    labels = np.asarray(zarr.open_array(array_path, mode="r")[z0:z1, x0:x1, y0:y1]).transpose(1, 2, 0)
    write_region(open_output(target, format), region, labels)
    return {"voxels": int(labels.size)}


def export_labels(run: Callable[[str, list[Any], int], dict[str, Any]], array_path: str, url: StoreUrl, *, voxel_size: Any,
                  properties: Sequence[dict[str, Any]] | None, overwrite: bool, offset: Sequence[float] | None = None, **layout: Any) -> None:
    """Write the labels at ``array_path`` to ``url`` through ``run`` (a blockwise stage: maps
    the tasks over the cluster), staged then published, their first voxel at ``offset``
    (runtime X, Y, Z voxels); ``properties`` (the instance table's, `label_properties`) become
    precomputed ``segment_properties``."""
    import tensorstore as ts
    import zarr

    from ..errors import OutputError

    format = output_format(url)
    source = zarr.open_array(array_path, mode="r")
    z, x, y = (int(n) for n in source.shape)
    with staged_store(url, overwrite) as target:
        try:
            store = done(ts.open(spec(target, format, (x, y, z), source.dtype, voxel_size, offset=offset, **layout), context=context()), url)
        except ValueError as e:
            raise explain(e, url, "output", OutputError) from e
        boxes = write_boxes((x, y, z), store.chunk_layout.write_chunk.shape)  # whole shards or chunks, up to 64 MiB
        run("export", [(".".join(str(lo) for lo, _ in box), copy_region, (array_path, target, format, box)) for box in boxes], len(boxes))
        add_offset(target, format, offset, voxel_size)
        if format == "precomputed" and properties is not None:
            add_properties(target, properties)
