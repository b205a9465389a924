"""``segment`` end to end: check the specs into a plan, run it on its engine, summarise."""

from __future__ import annotations

import time
from typing import Callable

from .engines import engine_for
from .plan import ClusterSpec, InputSpec, ModelSpec, OutputSpec, ResumeSpec, describe_region, prepare
from .progress import Watch
from .result import Segmentation
from .summary import served_by, summary


def run_segment(input: InputSpec, output: OutputSpec, model: ModelSpec, resume: ResumeSpec, cluster: ClusterSpec, *,
                warn: Callable[[str], None], watch: Watch) -> Segmentation:
    """Segment as the specs say: everything is checked before any work (`prepare`),
    then the plan's engine segments and writes. Raises ``ClientError``; [`Cancelled`][skoots_client.Cancelled] when
    ``watch`` says to stop."""
    started = time.perf_counter()
    plan, endpoints = prepare(input, output, model, resume, cluster, warn)
    stats = engine_for(plan).run(plan, endpoints, watch, warn)
    region = describe_region(plan)
    if region is not None:
        stats.notes.insert(0, region)
    if model.urls:
        stats.notes.insert(0, served_by(plan.info, endpoints))
    text = summary(plan.volume, output.written, plan.normalization, stats, time.perf_counter() - started, xp=plan.xp,
                   voxel_size=plan.voxel_size, table=output.table, work=plan.work_path)
    return Segmentation(summary=text, voxel_size=plan.voxel_size, instances=stats.instances, labels_xyz=stats.labels,
                        written=output.written, table=stats.table, raw_xyz=plan.volume.data)
