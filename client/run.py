"""``segment`` end to end: check the specs into a plan, run it on its engine, summarise."""

from __future__ import annotations

import time
from collections.abc import Callable

from .engines import engine_for
from .plan import describe_region, prepare
from .progress import Watch
from .result import Segmentation
from .specs import ClusterSpec, InputSpec, ModelSpec, OutputSpec, ResumeSpec
from .summary import summary

__all__ = ["run_segment"]


def run_segment(input: InputSpec, output: OutputSpec, model: ModelSpec, resume: ResumeSpec, cluster: ClusterSpec, *,
                watch: Watch, warn: Callable[[str], None] | None = None) -> Segmentation:
    """Segment as the specs say: everything is checked before any work
    (`prepare`), then the plan's engine segments and writes.
    Everything the run says goes through ``watch`` (``warn``, when given, becomes its warning
    callback). Raises ``ClientError``; ``Cancelled`` when ``watch`` says to stop."""
    if warn is not None:
        watch.on_warn = warn
    started = time.perf_counter()
    plan = prepare(input, output, model, resume, cluster, watch)
    stats = engine_for(plan).run(plan, watch)
    region = describe_region(plan)
    if region is not None:
        stats.notes.insert(0, region)
    if plan.served_by is not None:
        stats.notes.insert(0, plan.served_by)
    text = summary(plan.volume, output.written, plan.normalization, stats, time.perf_counter() - started, xp=plan.xp,
                   voxel_size=plan.voxel_size, table=output.table, work=plan.work_path)
    return Segmentation(summary=text, voxel_size=plan.voxel_size, instances=stats.instances, labels_xyz=stats.labels,
                        written=output.written, table=stats.table, raw_xyz=plan.volume.data)
