"""The two ways a `Plan` is run, behind one interface.

`InMemoryEngine` holds the whole volume in this process (the default);
`BlockwiseEngine` runs it block by block on a Dask cluster (``--blockwise``, or a volume
too big for memory). Both segment alike (bitwise), write every output the plan names and
return the same `RunStats`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .endpoints import close_all, open_endpoints
from .errors import ClientError, OutputError
from .in_memory import segment_volume
from .label_write import keep_labels, write_intermediates, write_labels
from .preview import write_preview
from .progress import Watch
from .run_stats import RunStats
from .sanity import empty_result_text, empty_result_warning
from .specs import Plan
from .stores import StoreUrl, filled_text
from .volume_read import missing_chunks_warning
from .workdir import WorkDir, default_work_dir

__all__ = ["Engine", "engine_for", "InMemoryEngine", "BlockwiseEngine"]


class Engine(Protocol):
    """Runs a plan: opens what answers crops and closes it, segments, writes what the plan names,
    and says everything through ``watch``. Raises ``ClientError`` (``Cancelled`` when ``watch``
    says to stop)."""

    def run(self, plan: Plan, watch: Watch) -> RunStats: ...


def engine_for(plan: Plan) -> Engine:
    return BlockwiseEngine() if plan.blockwise else InMemoryEngine()


class InMemoryEngine:
    """The whole volume in this process: crops through the endpoints as they answer, then the
    post-processing on ``plan.xp`` (NumPy or CuPy). With a work directory, finished crops are
    kept as they arrive and taken from it on the next run; it is removed once the labels are
    written and kept when the run fails. A failure after the labels exist never loses them."""

    def run(self, plan: Plan, watch: Watch) -> RunStats:
        from .instances import label_properties, measure_xyz, write_table
        from .ngff import write_labels_into
        from .skeletons import swc_folder_of, write_swc_folder
        from .stores import Location

        output, volume = plan.output, plan.volume
        work = None
        endpoints, _ = open_endpoints(plan.model)
        try:
            if plan.work_path is not None:
                work = WorkDir(plan.work_path, plan.fingerprint())
            stats = segment_volume(
                volume, plan.parameters, endpoints, batch_size=plan.batch_size, xp=plan.xp,
                reference_borders=plan.model.reference_borders, output=output, watch=watch, work=work,
                normalization=plan.normalization, skip=plan.skip,
            )
            labels = stats.labels = stats.labels.get() if hasattr(stats.labels, "get") else stats.labels
            done_at: list[Path | StoreUrl] = []  # a failure from here on never loses the labels (keep_labels)
            try:
                stats.table = measure_xyz(labels, plan.voxel_size, volume.data) if output.table is not None else None
                drawn = _skeletons(plan, stats) if output.skeletons else None
                properties = label_properties(stats.table) if stats.table is not None else None
                if output.out is not None:
                    done_at.append(write_labels(output.out, labels, overwrite=output.overwrite, voxel_size=plan.voxel_size,
                                                properties=properties, ngff_version=output.ngff_version.value,
                                                offset=plan.origin, meshes=output.meshes, skeletons=drawn))
                if output.labels_into is not None:
                    done_at.append(write_labels_into(output.labels_into, output.label_name, labels,
                                                     overwrite=output.overwrite, properties=properties))
                if output.table is not None and stats.table is not None:
                    write_table(output.table, stats.table)
                if output.skeletons and (folder := swc_folder_of(output)) is not None:
                    stats.notes.append(f"skeletons → {write_swc_folder(folder, stats.skeletons or {}, plan.voxel_size, range(1, stats.instances + 1))}")
                if output.save_intermediates:
                    write_intermediates(output.destination, stats.intermediates, overwrite=output.overwrite,
                                        voxel_size=plan.voxel_size)
            except Exception as e:
                # beside the destination's work directory; else beside an input file, never inside an input store
                location = Location.of(plan.location)
                folders = [*([work.path.parent] if work is not None else []),
                           *([default_work_dir(output.destination).parent] if output.destination is not None else []),
                           *([location.parent] if location.is_file else [])]
                raise keep_labels(e, labels, plan.voxel_size, [p for p in (output.out, output.labels_into) if p is not None],
                                  folders, written=done_at) from e
        except ClientError as e:
            if work is None or not work.exists:
                raise
            work.close()
            raise type(e)(f"{e} — finished crops are kept in {work.path}; run again with --resume to continue") from e
        finally:
            close_all(endpoints)
        if work is not None:
            work.remove()
        watch.warn(missing_chunks_warning(volume))
        watch.warn(empty_result_warning(stats.instances, labels))
        if not plan.model.urls:
            stats.notes.append(f"inference in-process: {endpoints[0].runtime}")
        resent = sum(getattr(endpoint, "resent", 0) for endpoint in endpoints)
        if resent:
            stats.notes.append(f"resent {resent} requests after server faults")
        if output.preview is not None:
            try:
                stats.notes.append(f"preview → {write_preview(output.preview, volume.data, labels)}")
            except Exception as e:
                detail = e.strerror if isinstance(e, OSError) and e.strerror else f"{type(e).__name__}: {e}"
                raise OutputError(f"cannot write the preview {output.preview} ({detail}) — the labels were written to {output.written}") from e
        return stats


def _skeletons(plan: Plan, stats: RunStats) -> tuple[dict[str, Any], dict[int, bytes]]:
    """--skeletons in memory: every instance's graph from its predicted skeleton (``stats.skeletons``),
    its length in the table, and the precomputed info and objects (client/skeletons.py)."""
    from .skeletons import SKELETON_INFO, encoded_objects, graph_lengths, trace_predicted, with_graph_lengths

    started = time.perf_counter()
    assert stats.skeleton_voxels is not None
    stats.skeletons = trace_predicted(stats.skeleton_voxels, stats.labels.shape, plan.voxel_size, plan.origin)
    stats.skeleton_voxels = None
    if stats.table is not None:
        stats.table = with_graph_lengths(stats.table, graph_lengths(stats.skeletons, stats.table["label"], plan.voxel_size))
    drawn = SKELETON_INFO, encoded_objects(stats.skeletons, range(1, stats.instances + 1))
    stats.seconds["skeletons"] = time.perf_counter() - started
    return drawn


class BlockwiseEngine:
    """Block by block on a Dask cluster: a local one of ``--workers`` processes, or the one at
    ``--scheduler``. The labels are written block by block and never held; the workers load the
    model (or reach the servers) themselves: this process opens no endpoint."""

    def run(self, plan: Plan, watch: Watch) -> RunStats:
        from .blockwise.job import Job
        from .blockwise.pipeline import segment_job
        from .instances import write_table

        output = plan.output
        stats = segment_job(Job.from_plan(plan), watch)
        watch.warn(filled_text(stats.filled, plan.location))
        if output.table is not None and stats.table is not None:
            try:
                write_table(output.table, stats.table)
            except ClientError as e:
                raise type(e)(f"{e} — the labels were written to {output.written}") from e
        watch.warn(empty_result_text(stats.instances, stats.labelled / max(1, int(np.prod(plan.volume.shape)))))
        return stats
