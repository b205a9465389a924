"""What a run was asked and what it resolved to, as frozen data: the specs (the API's keywords,
grouped: input, output, model source, resume, cluster) and the checked `Plan`.

Data only, below both engines: a plan holds no open endpoint, and the blockwise job carries the
`ModelSpec` to its Dask workers as it is (frozen, picklable).
`prepare` makes the plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from skoots_export.contract.wire import ModelParameters

from .choices import Device, LabelsDtype, NgffVersion, Precision, Runtime, SharedMemory
from .model_info import ModelInfo
from .model_source import Tls
from .normalize import Normalization
from .options import TILE_DEFAULT
from .origin import ZERO, Offset
from .roi import Box, RoiText
from .skip import SkipRule
from .volume import Volume
from .voxel_size import UnitOption, VoxelSize
from .workdir import fingerprint

__all__ = ["Triple", "InputSpec", "OutputSpec", "lettered_repr", "ModelSpec", "ResumeSpec", "ClusterSpec", "Plan"]

Triple = tuple[int, int, int]


@dataclass(frozen=True)
class InputSpec:
    """What to segment and how to read it (public: a pipeline builds a run in code from the five
    specs). ``source`` is a path or store URL, or an array's opened ``Volume``
    (client/volume.py); each other field is the keyword of [`segment`][skoots_client.segment]
    of the same name, parsed (``voxel_size`` a [`VoxelSize`][skoots_client.VoxelSize]
    with ``unit`` folded in, ``roi`` a ``RoiText``); client/options.py describes them all."""

    source: Any
    channel: int | None = None
    axes: str | None = None
    normalize: str | None = None
    voxel_size: VoxelSize | UnitOption | None = None
    level: int | None = None
    mask: Path | None = None
    skip_below: float | None = None
    fill_missing: bool = False  # --fill-missing: chunks missing from a chunked store read as zeros, counted
    roi: RoiText | None = None

    @property
    def from_file(self) -> bool:
        return not isinstance(self.source, Volume)


@dataclass(frozen=True)
class OutputSpec:
    """Where the labels and what comes with them go; ``out`` and ``labels_into`` both None keeps
    the labels in memory only. Each field is the keyword of [`segment`][skoots_client.segment]
    of the same name (``out`` a path or a store URL, the choices their enums)."""

    out: Any = None  # a Path, or a StoreUrl (precomputed://, n5://)
    labels_into: Path | None = None
    label_name: str = "skoots"
    overwrite: bool = False
    table: Path | None = None
    skeletons: bool = False
    preview: Path | None = None
    save_intermediates: bool = False
    meshes: bool = False  # --meshes: legacy Neuroglancer meshes into a precomputed out
    ngff_version: NgffVersion = NgffVersion.V0_4
    min_size: int = 0
    labels_dtype: LabelsDtype = LabelsDtype.UINT32

    @property
    def destination(self) -> Any:
        """The output a work directory is named after (``OUT.work``)."""
        return self.out if self.out is not None else self.labels_into

    @property
    def written(self) -> Any:
        """Where the labels end up: ``out``, or ``IMAGE/labels/NAME`` with ``labels_into``."""
        if self.out is not None:
            return self.out
        return None if self.labels_into is None else self.labels_into / "labels" / self.label_name


def lettered_repr(spec: Any, triples: tuple[str, ...]) -> str:
    """A spec's repr with its runtime-order triples named as napari names the axes.

    >>> ClusterSpec(block=(300, 280, 20))
    ClusterSpec(blockwise=False, block=(z=20, y=300, x=280), workers=None, threads_per_worker=1, scheduler=None, cluster=None, cluster_options=None, max_jobs=None, memory_available=None)
    """
    def shown(name: str, value: Any) -> str:
        if name in triples and isinstance(value, tuple):
            rows, columns, slices = value
            return f"(z={slices}, y={rows}, x={columns})"
        return repr(value)

    return f"{type(spec).__name__}({', '.join(f'{f.name}={shown(f.name, getattr(spec, f.name))}' for f in fields(spec))})"


@dataclass(frozen=True, repr=False)
class ModelSpec:
    """What answers crops (Triton ``urls``, else the repository's model in-process), how the
    crops go out, the model constants to override, and where post-processing runs. Each field is
    the keyword of [`segment`][skoots_client.segment] of the same name, except ``urls`` (from
    ``url``) and ``tls`` (from ``ssl``, ``root_cert``, ``private_key``, ``cert_chain``);
    ``crop``, ``overlap`` and a ``tile`` size are in the runtime's ``(X, Y, Z)`` (rows, columns,
    slices), as ``segment`` turns a ``(z, y, x)`` tuple; ``tile`` is else ``"crop"`` or ``"auto"``."""

    urls: tuple[str, ...] = ()
    model: str | None = None
    repository: Path = Path("model_repository")
    tls: Tls | None = None
    window: int = 4
    timeout: float = 120.0
    retries: int | None = None  # a cap on resends; None: --retry-for alone bounds them
    retry_for: float = 60.0
    shared_memory: SharedMemory = SharedMemory.NONE  # SYSTEM: requests and answers through /dev/shm
    batch: int | None = None
    runtime: Runtime = Runtime.AUTO
    threads: int | None = None
    precision: Precision = Precision.FP32
    crop: Triple | None = None
    overlap: Triple | None = None
    tile: Triple | str = TILE_DEFAULT  # "crop", "auto" or a size: the inference tile (plan: Plan.tile)
    embedding_iterations: int | None = None
    reference_borders: bool = False
    device: Device = Device.AUTO

    def __repr__(self) -> str:
        return lettered_repr(self, ("crop", "overlap", "tile"))


@dataclass(frozen=True)
class ResumeSpec:
    """``resume`` and ``work_dir`` (which implies it): the keywords of
    [`segment`][skoots_client.segment] of the same names."""

    resume: bool = False
    work_dir: Any = None  # a Path, or a StoreUrl (s3://, gs://: a --blockwise run's work store)

    @property
    def keeps_work(self) -> bool:
        return self.resume or self.work_dir is not None


@dataclass(frozen=True, repr=False)
class ClusterSpec:
    """``blockwise`` and its Dask cluster (the keywords of [`segment`][skoots_client.segment]
    of the same names; ``block`` in the runtime's ``(X, Y, Z)``); ``memory_available`` (default:
    the machine's; no keyword) decides when a run too big for memory goes blockwise by itself."""

    blockwise: bool = False
    block: Triple | None = None
    workers: int | None = None
    threads_per_worker: int = 1
    scheduler: str | None = None
    cluster: str | None = None  # --cluster: worker jobs on a batch system (dask-jobqueue)
    cluster_options: Mapping[str, Any] | None = None  # its keywords (--cluster-option, parsed)
    max_jobs: int | None = None
    memory_available: int | None = None

    def __repr__(self) -> str:
        return lettered_repr(self, ("block",))

    @property
    def asked(self) -> bool:
        return self.blockwise or self.scheduler is not None or self.cluster is not None


@dataclass(frozen=True)
class Plan:
    """A checked run: the specs, and what they resolved to. Data only: nothing in it is open.
    ``work_path`` is the run's work directory, named once: with ``--resume`` / ``--work-dir``,
    and always for a blockwise run."""

    input: InputSpec
    output: OutputSpec
    model: ModelSpec
    resume: ResumeSpec
    cluster: ClusterSpec
    volume: Volume
    location: Any  # where the volume was read (the level's, with --level); the array's name otherwise
    blockwise: bool
    work_path: Any  # a Path, a StoreUrl (a blockwise run's work store on S3 or GCS), or None
    voxel_size: VoxelSize
    normalization: Normalization
    info: ModelInfo
    parameters: ModelParameters  # the model's constants, with crop = the inference tile (see ``tile``)
    batch_size: int
    skip: SkipRule | None
    skip_described: dict[str, Any] | None
    xp: Any
    roi_of: tuple[int, int, int] | None = None  # the whole input's shape, with a roi
    roi: Box | None = None  # the box of the input segmented (--roi), along the runtime's X, Y, Z
    origin: Offset = ZERO  # where the labels' first voxel sits in the input's voxel grid (its offset + the box's start)
    served_by: str | None = None  # the summary's line on the servers that answer (client/summary.py), read by prepare

    @property
    def tile(self) -> Triple:
        """The inference tile (runtime ``X, Y, Z``) the grid is built with: ``parameters.crop``
        (prepare puts the resolved ``--tile`` there; with ``--reference-borders`` the model's crop)."""
        return self.parameters.crop

    @property
    def model_crop(self) -> Triple:
        """The model's crop (its card's, or ``--crop``): what it was trained on and reference mode tiles with."""
        return self.model.crop or self.info.parameters.crop

    def fingerprint(self) -> dict[str, Any]:
        """What a work directory records of this run: resuming needs all of it to match."""
        box = {"roi": [list(b) for b in self.roi]} if self.roi is not None else {}  # another box of the same shape is other crops
        return box | fingerprint(self.location, self.volume.shape, self.volume.dtype, self.input.channel, self.info.name,
                                 self.parameters, reference_borders=self.model.reference_borders,
                                 probability=self.output.save_intermediates and not self.blockwise, axes=self.volume.axes,
                                 normalization=self.normalization.to_dict(), skip=self.skip_described)
