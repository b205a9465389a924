"""What a blockwise run is given: the job, built from the plan (`Job.from_plan`), and where
its answers come from.

Both are frozen and picklable: the Dask layer sends the job to every task. It carries the
plan's `ModelSpec` as it is (its enums, the model's resolved
name and repository), from which each worker opens its endpoints. What cannot travel (the block
grid's tables, the work directory's store) is rebuilt once per worker process.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skoots_export.contract.wire import ModelParameters

from .. import postprocess
from ..normalize import Normalization
from ..origin import Offset
from ..roi import Box
from ..specs import ModelSpec, OutputSpec, Plan
from ..stores import Location, StoreUrl
from ..voxel_size import UNKNOWN_VOXEL_SIZE, VoxelSize
from .blocks import BlockGrid, default_per_block, per_block_from_voxels
from .store import BlockStore
from .worker import cached

__all__ = ["StoredAnswers", "Job"]


@dataclass(frozen=True)
class StoredAnswers:
    """Answers instead of a model: a Zarr group of stitched answers, ``vectors`` ``[3, X, Y, Z]``
    float16 and ``skeleton`` ``[X, Y, Z]`` uint8 (dilated), e.g. a perfect network's; answers
    smaller than the volume repeat periodically (tests, benchmarks)."""

    path: Path


@dataclass(frozen=True)
class Job:
    """Everything a task needs, by value or by path; and, read by this process only, where the
    labels go and how the run goes (``output`` to ``workers``)."""

    volume: Path | StoreUrl  # a StoreUrl: N5, precomputed, Zarr by URL (client/stores)
    channel: int | None
    axes: str | None  # --axes, read on the workers exactly as the client read it
    normalization: Normalization  # computed once by the client: every block maps intensities alike
    work: Path | StoreUrl  # the plan's work_path, resolved: a folder, or a URL (s3://, gs://) no worker needs a path for
    shape: tuple[int, int, int]
    per_block: tuple[int, int, int]
    reference_borders: bool
    parameters: ModelParameters
    source: ModelSpec | StoredAnswers  # the plan's model spec (name and repository resolved, the workers' threads)
    batch_size: int
    threads: int
    label_halo: tuple[int, int, int]
    vector_halo: tuple[int, int, int]
    mask: Path | None = None  # --mask and --skip-below: crops not worth inferring stay background
    skip_below: float | None = None
    fill_missing: bool = False  # --fill-missing: the workers read missing chunks as zeros and count them
    roi: Box | None = None  # --roi: the box of the file that is segmented (runtime X, Y, Z)
    output: OutputSpec = OutputSpec()  # where the labels (and the instance table, with output.table) go
    voxel_size: VoxelSize = UNKNOWN_VOXEL_SIZE  # stated by the output
    offset: Offset | None = None  # where the labels' first voxel sits in the input (client/origin.py)
    fingerprint: dict[str, Any] = field(default_factory=dict, compare=False)  # the work directory's
    resume: bool = False  # a failed run keeps its finished blocks
    scheduler: str | None = None  # --scheduler, else a local cluster of ``workers`` processes
    workers: int | None = None
    cluster: str | None = None  # --cluster: worker jobs on a batch system, sized by its options and max_jobs
    cluster_options: Mapping[str, Any] | None = None
    max_jobs: int | None = None

    @classmethod
    def from_plan(cls, plan: Plan) -> Job:
        """The job of a blockwise plan: its blocks (``--block`` voxels rounded to whole crop steps,
        or what keeps a worker near its memory budget) and halos, and the plan's model spec
        for the workers (in-process inference uses a worker's threads unless ``--threads`` says)."""
        model, cluster, parameters, shape = plan.model, plan.cluster, plan.parameters, plan.volume.shape
        assert plan.work_path is not None, "a blockwise plan names its work directory"
        label_halo, vector_halo = postprocess.halo_widths(parameters.vector_scaling, parameters.embedding_iterations)
        if cluster.block is not None:
            per_block = per_block_from_voxels(cluster.block, parameters.crop, parameters.overlap, shape)
        else:
            per_block = default_per_block(shape, parameters.crop, parameters.overlap, label_halo, vector_halo)
        threads = model.threads if model.threads is not None else cluster.threads_per_worker
        source = dataclasses.replace(model, model=plan.info.name, repository=Path(model.repository).resolve(), threads=threads)
        path = plan.volume.path
        return cls(
            volume=Location.of(path).resolved(), channel=plan.input.channel, axes=plan.input.axes,
            normalization=plan.normalization, work=Location.of(plan.work_path).resolved(), shape=shape, per_block=per_block,
            reference_borders=model.reference_borders, parameters=parameters, source=source, batch_size=plan.batch_size,
            threads=cluster.threads_per_worker, label_halo=label_halo, vector_halo=vector_halo,
            mask=None if plan.input.mask is None else Path(plan.input.mask).resolve(), skip_below=plan.input.skip_below,
            fill_missing=plan.input.fill_missing, roi=None if plan.roi is None else _plain_box(plan.roi),
            output=plan.output, voxel_size=plan.voxel_size, offset=plan.origin, fingerprint=plan.fingerprint(),
            resume=plan.resume.keeps_work, scheduler=cluster.scheduler, workers=cluster.workers,
            cluster=cluster.cluster, cluster_options=cluster.cluster_options, max_jobs=cluster.max_jobs,
        )

    @property
    def into(self) -> tuple[Path, str] | None:
        """``--labels-into IMAGE --label-name NAME``: the image the labels go into, and their name."""
        return None if self.output.labels_into is None else (self.output.labels_into, self.output.label_name)

    @property
    def grid(self) -> BlockGrid:
        return cached(("grid", self.shape, self.parameters.crop, self.parameters.overlap, self.per_block, self.reference_borders),
                       lambda: BlockGrid(self.shape, self.parameters.crop, self.parameters.overlap, self.per_block, self.reference_borders))

    @property
    def store(self) -> BlockStore:
        return cached(("store", self.work), lambda: BlockStore(self.work))


def _plain_box(box: Box) -> Box:
    """``box`` in Python ints, as the job carries it to the workers."""
    (x0, x1), (y0, y1), (z0, z1) = box
    return (int(x0), int(x1)), (int(y0), int(y1)), (int(z0), int(z1))
