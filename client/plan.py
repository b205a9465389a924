"""A run's options as frozen, typed specs, checked once into a :class:`Plan` that either engine runs.

The specs say what the user asked (the API's keywords, grouped: input, output, model source,
resume, cluster); :func:`prepare` checks them all before any work, reads the volume lazily,
decides in memory or blockwise, resolves the voxel size, the normalisation and the model's
constants, and opens what answers crops. Nothing after it re-checks an option.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

from skoots_export.contract.wire import ModelParameters

from . import postprocess
from .address import grpc_address
from .choices import Device, LabelsDtype, NgffVersion, Precision, Runtime
from .destinations import check_not_input
from .endpoints import close_all, open_endpoints
from .errors import ClientError, InputError
from .in_memory import SkipRule, skip_rule
from .label_write import check_output_path, intermediates_path
from .levels import level_path
from .model_source import ModelInfo, Tls
from .normalize import Normalization, parse_normalize, resolve_normalization
from .origin import ZERO, Offset, describe_offset, is_integral
from .origin_read import read_offset
from .preview import check_preview_path
from .roi import Box, RoiText, cut, describe_box, resolve_roi
from .sanity import axes_warning, channel_warning, check_something_to_infer, intensity_warning, sample_voxels
from .summary import warn_each
from .volume import Volume, describe_shape
from .volume_read import read_volume, refuse_non_finite
from .voxel_size import UnitOption, VoxelSize
from .voxel_size_read import read_voxel_size, resolve_voxel_size
from .workdir import default_work_dir, fingerprint, stale_work_text

Triple = tuple[int, int, int]


@dataclass(frozen=True)
class InputSpec:
    """What to segment and how to read it (public: a pipeline builds a run in code from the five
    specs). ``source`` is a path or store URL, or an array's opened ``Volume``
    (client/volume.py); each other field is the keyword of [`segment`][skoots_client.api.segment]
    of the same name, parsed (``voxel_size`` a [`VoxelSize`][skoots_client.voxel_size.VoxelSize]
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
    the labels in memory only. Each field is the keyword of [`segment`][skoots_client.api.segment]
    of the same name (``out`` a path or a store URL, the choices their enums)."""

    out: Any = None  # a Path, or a StoreUrl (precomputed://, n5://)
    labels_into: Path | None = None
    label_name: str = "skoots"
    overwrite: bool = False
    table: Path | None = None
    preview: Path | None = None
    save_intermediates: bool = False
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
    ClusterSpec(blockwise=False, block=(z=20, y=300, x=280), workers=None, threads_per_worker=1, scheduler=None, memory_available=None)
    """
    def shown(name: str, value: Any) -> str:
        if name in triples and value is not None:
            rows, columns, slices = value
            return f"(z={slices}, y={rows}, x={columns})"
        return repr(value)

    return f"{type(spec).__name__}({', '.join(f'{f.name}={shown(f.name, getattr(spec, f.name))}' for f in fields(spec))})"


@dataclass(frozen=True, repr=False)
class ModelSpec:
    """What answers crops (Triton ``urls``, else the repository's model in-process), how the
    crops go out, the model constants to override, and where post-processing runs. Each field is
    the keyword of [`segment`][skoots_client.api.segment] of the same name, except ``urls`` (from
    ``url``) and ``tls`` (from ``ssl``, ``root_cert``, ``private_key``, ``cert_chain``);
    ``crop`` and ``overlap`` are in the runtime's ``(X, Y, Z)`` (rows, columns, slices), as
    ``segment`` turns a ``(z, y, x)`` tuple."""

    urls: tuple[str, ...] = ()
    model: str | None = None
    repository: Path = Path("model_repository")
    tls: Tls | None = None
    window: int = 4
    timeout: float = 120.0
    retries: int | None = None  # a cap on resends; None: --retry-for alone bounds them
    retry_for: float = 60.0
    batch: int | None = None
    runtime: Runtime = Runtime.AUTO
    threads: int | None = None
    precision: Precision = Precision.FP32
    crop: Triple | None = None
    overlap: Triple | None = None
    embedding_iterations: int | None = None
    reference_borders: bool = False
    device: Device = Device.AUTO

    def __repr__(self) -> str:
        return lettered_repr(self, ("crop", "overlap"))


@dataclass(frozen=True)
class ResumeSpec:
    """``resume`` and ``work_dir`` (which implies it): the keywords of
    [`segment`][skoots_client.api.segment] of the same names."""

    resume: bool = False
    work_dir: Path | None = None

    @property
    def keeps_work(self) -> bool:
        return self.resume or self.work_dir is not None


@dataclass(frozen=True, repr=False)
class ClusterSpec:
    """``blockwise`` and its Dask cluster (the keywords of [`segment`][skoots_client.api.segment]
    of the same names; ``block`` in the runtime's ``(X, Y, Z)``); ``memory_available`` (default:
    the machine's; no keyword) decides when a run too big for memory goes blockwise by itself."""

    blockwise: bool = False
    block: Triple | None = None
    workers: int | None = None
    threads_per_worker: int = 1
    scheduler: str | None = None
    memory_available: int | None = None

    def __repr__(self) -> str:
        return lettered_repr(self, ("block",))

    @property
    def asked(self) -> bool:
        return self.blockwise or self.scheduler is not None


@dataclass(frozen=True)
class Plan:
    """A checked run: the specs, and what they resolved to."""

    input: InputSpec
    output: OutputSpec
    model: ModelSpec
    resume: ResumeSpec
    cluster: ClusterSpec
    volume: Volume
    location: Any  # where the volume was read (the level's, with --level); the array's name otherwise
    blockwise: bool
    work_path: Path | None
    voxel_size: VoxelSize
    normalization: Normalization
    info: ModelInfo
    parameters: ModelParameters
    batch_size: int
    skip: SkipRule | None
    skip_described: dict[str, Any] | None
    xp: Any
    roi_of: tuple[int, int, int] | None = None  # the whole input's shape, with a roi
    roi: Box | None = None  # the box of the input segmented (--roi), along the runtime's X, Y, Z
    origin: Offset = ZERO  # where the labels' first voxel sits in the input's voxel grid (its offset + the box's start)

    def fingerprint(self) -> dict[str, Any]:
        """What a work directory records of this run: resuming needs all of it to match."""
        box = {"roi": [list(b) for b in self.roi]} if self.roi is not None else {}  # another box of the same shape is other crops
        return box | fingerprint(self.location, self.volume.shape, self.volume.dtype, self.input.channel, self.info.name,
                                 self.parameters, reference_borders=self.model.reference_borders,
                                 probability=self.output.save_intermediates and not self.blockwise, axes=self.volume.axes,
                                 normalization=self.normalization.to_dict(), skip=self.skip_described)


def check_options(input: InputSpec, output: OutputSpec, model: ModelSpec, resume: ResumeSpec, cluster: ClusterSpec) -> None:
    """Refuse, before anything is read, options that cannot be right or do not go together."""
    if (model.window < 1 or (model.retries is not None and model.retries < 0) or not model.timeout > 0 or not model.retry_for >= 0
            or (model.batch is not None and model.batch < 1)):
        raise InputError("--window and --batch must be at least 1, --retries and --retry-for at least 0, --timeout positive")
    if model.urls and (model.runtime is not Runtime.AUTO or model.threads is not None or model.precision is not Precision.FP32):
        raise InputError("--runtime, --threads and --precision choose how the model runs in-process: drop them with --url")
    for url in model.urls:
        grpc_address(url)  # a --url that cannot be right is refused before the volume is read
    if output.min_size < 0:
        raise InputError(f"--min-size {output.min_size}: give a voxel count of at least 0 (0 keeps every instance)")
    if cluster.block is not None and any(b < 1 for b in cluster.block):
        raise InputError(f"block {describe_shape(cluster.block)}: block sizes must be positive")
    if input.level is not None and not input.from_file:
        raise InputError("level= picks a resolution level of an OME-Zarr file: give its path, or pass that level's array")
    if not input.from_file and (cluster.asked or resume.keeps_work):
        raise InputError("blockwise, resume and work_dir read the volume again from its file: give the volume as a path")
    if cluster.asked and output.destination is None:
        raise InputError("blockwise writes the labels block by block and never holds them: give out= or labels_into=")
    if cluster.asked:
        check_blockwise_options(model, output)
    if input.roi is not None and output.labels_into is not None:
        raise InputError(f"--roi {input.roi.text}: --labels-into writes labels the size of the whole image; "
                         "write the cutout with --out (it states where it sits), or drop --roi")
    if input.roi is not None and input.mask is not None:
        raise InputError(f"--roi {input.roi.text}: --mask covers the whole volume; drop one of them")


def describe_region(plan: Plan) -> str | None:
    """The summary's line on where the labels sit: the box segmented and the offset written."""
    parts = []
    if plan.roi is not None:
        parts.append(f"roi {describe_box(plan.roi)} of {describe_shape(plan.roi_of)}")
    if plan.origin != ZERO:
        parts.append(f"offset {describe_offset(plan.origin)} (written to the output's metadata)")
    return ", ".join(parts) or None


def check_blockwise_options(model: ModelSpec, output: OutputSpec) -> None:
    """Refuse the options the blockwise mode does not do, naming the in-memory mode."""
    if model.device is Device.GPU:
        raise InputError("--blockwise post-processes on the workers' CPUs; drop --device gpu")
    if output.labels_into is not None and output.out is not None:
        raise InputError("--blockwise writes the labels to one place: give --out or --labels-into, not both")
    refused = [name for name, given in (("--save-intermediates", output.save_intermediates),
                                        ("--preview", output.preview is not None)) if given]
    if refused:
        one = len(refused) == 1
        raise InputError(f"{', '.join(refused)} need{'s' if one else ''} the labels in memory, which --blockwise never holds: "
                         f"drop {'it' if one else 'them'}, or segment without --blockwise on a machine the volume fits in")


def check_destinations(inputs: list[Any], output: OutputSpec, work_path: Path | None) -> None:
    """Fail before any work if something would be written over the input or cannot be written."""
    from .instances import check_table_path
    from .stores import check_destination, is_store

    inputs = [q for q in (p.local if is_store(p) else Path(p) for p in inputs) if q is not None]  # a remote input is never local
    out = output.out
    if is_store(out):  # precomputed:// or n5:// (client/stores)
        check_destination(out, output.overwrite, inputs)
        if output.save_intermediates:
            raise InputError(f"--save-intermediates writes beside a local --out, not {out}; drop it, or write to a local path")
    elif out is not None:
        check_not_input("--out", out, inputs)
        check_output_path(out, output.overwrite)
        if output.save_intermediates:
            check_not_input("--save-intermediates", intermediates_path(out), inputs)
    if output.table is not None:
        check_not_input("--table", output.table, inputs)
        check_table_path(output.table, output.overwrite)
    if output.preview is not None:
        check_not_input("--preview", output.preview, inputs)
        check_preview_path(output.preview)
    if work_path is not None:
        check_not_input("--work-dir", work_path, inputs)


def prepare(input: InputSpec, output: OutputSpec, model: ModelSpec, resume: ResumeSpec, cluster: ClusterSpec,
            warn: Callable[[str], None]) -> tuple[Plan, list[Any]]:
    """Check the specs into a :class:`Plan`, and open what answers crops for it: the endpoints
    (none for a blockwise run's in-process model, which its workers load). What looks wrong
    about the input goes to ``warn``, one line each. Raises ``ClientError``."""
    from .ngff import check_labels_into
    from .stores import is_store, store_of
    from .stores.reader import level as store_level

    check_options(input, output, model, resume, cluster)
    location = input.source.path if not input.from_file else input.source if is_store(input.source) else Path(input.source)
    if input.level is not None:
        store = store_of(location)
        # a precomputed scale, an N5 group's sN (client/stores), else an OME-Zarr level
        location = store_level(store, input.level) if store is not None else level_path(Path(location), input.level)
    work_path = (resume.work_dir or default_work_dir(output.destination)) if resume.keeps_work else None
    check_destinations([location] if input.from_file else [], output, work_path)
    choice = parse_normalize(input.normalize)
    whole = read_volume(location, input.channel, input.axes, check_finite=input.roi is None, fill_missing=input.fill_missing) if input.from_file else input.source
    size = resolve_voxel_size(input.voxel_size, read_voxel_size(location) if input.from_file else None, location, warn)
    box = resolve_roi(input.roi, whole.shape, size) if input.roi is not None else None
    volume = cut(whole, box)
    if box is not None and input.from_file:
        refuse_non_finite(volume)  # only the box: a float volume's other voxels are never read
    starts = [lo for lo, _ in box] if box is not None else [0, 0, 0]
    origin = tuple(o + s for o, s in zip(read_offset(location) if input.from_file else ZERO, starts))
    if not is_integral(origin) and is_store(output.out) and output.out.format in (None, "precomputed"):  # voxel_offset is whole voxels
        warn(f"the input's offset {describe_offset(origin)} is not whole voxels; {output.out} states it rounded")
    blockwise = cluster.asked
    if input.from_file and not blockwise and output.destination is not None and too_big_for_memory(volume.shape, cluster.memory_available):
        check_blockwise_options(model, output)
        blockwise = True
    warn_each(warn, channel_warning(volume), axes_warning(volume))
    if work_path is None and not blockwise and output.destination is not None:  # blockwise refuses it (blockwise/pipeline.py)
        warn_each(warn, stale_work_text(default_work_dir(output.destination)))
    if output.labels_into is not None:
        check_labels_into(output.labels_into, output.label_name, volume.shape, output.overwrite)
    skip, skip_described = skip_rule(input.mask, input.skip_below)
    if skip is not None:
        check_something_to_infer(volume, skip.mask, skip.below)
    try:
        xp = postprocess.device_array_module(model.device)
    except ValueError as e:
        raise ClientError(str(e)) from e
    endpoints, info = open_endpoints(model.urls, model.model, model.repository, window=model.window, timeout=model.timeout,
                                     retries=model.retries, retry_for=model.retry_for, tls=model.tls, runtime=model.runtime, threads=model.threads,
                                     precision=model.precision, load=not blockwise)
    try:
        try:
            refuse_bad_crop(model.crop or info.parameters.crop, model.overlap or info.parameters.overlap, info.parameters.minimum_size)
            parameters = info.parameters.replace(crop=model.crop, overlap=model.overlap, embedding_iterations=model.embedding_iterations)
        except ValueError as e:
            raise InputError(str(e)) from e
        sample = sample_voxels(volume)
        normalization = resolve_normalization(choice, parameters.dataset_mean, parameters.dataset_std, sample)
        warn_each(warn, intensity_warning(sample, volume.dtype, normalization, choice.explicit))
    except ClientError:
        close_all(endpoints)
        raise
    batch_size = min(model.batch or info.max_batch_size, info.max_batch_size)
    plan = Plan(input, output, model, resume, cluster, volume=volume, location=location, blockwise=blockwise,
                work_path=work_path, voxel_size=size, normalization=normalization, info=info, parameters=parameters,
                batch_size=batch_size, skip=skip, skip_described=skip_described, xp=xp, roi=box,
                roi_of=whole.shape if box is not None else None, origin=origin)  # type: ignore[arg-type]
    return plan, endpoints


def refuse_bad_crop(crop: tuple[int, int, int], overlap: tuple[int, int, int], minimum: int) -> None:
    """Crop and overlap (runtime ``X, Y, Z``) checked as the model's parameters check them, but
    named as the user names axes (``crop z 4, y 8, x 8``), not in the runtime's order."""
    named = f"crop {describe_shape(crop)}"
    if any(c < 1 for c in crop):
        raise InputError(f"{named} must be positive on every axis")
    if any(o < 0 for o in overlap):
        raise InputError(f"overlap {describe_shape(overlap)} must not be negative")
    if any(c - 2 * o <= 0 for c, o in zip(crop, overlap)):
        raise InputError(f"{named} with overlap {describe_shape(overlap)} keeps nothing of a crop: "
                         "each crop size must exceed twice its overlap")
    if any(c < minimum for c in crop):
        raise InputError(f"{named} is below the network's minimum of {minimum} voxels per axis; "
                         f"choose a crop of at least {minimum} on every axis")


def too_big_for_memory(shape: tuple[int, int, int], memory_available: int | None) -> bool:
    """Whether the in-memory mode would need more than the memory available; says so on stderr."""
    from .blockwise.blocks import in_memory_bytes
    from .blockwise.pipeline import available_memory

    need, have = in_memory_bytes(shape), memory_available if memory_available is not None else available_memory()
    if need <= have:
        return False
    print(f"note: {describe_shape(shape)} needs ~{need / 2**30:.1f} GiB in memory, {have / 2**30:.1f} GiB are available: segmenting blockwise (--blockwise)",
          file=sys.stderr)
    return True
