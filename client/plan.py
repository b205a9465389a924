"""A run's specs checked once into a `Plan` that either engine runs.

The specs (client/specs.py) say what the user asked; `prepare`
checks them all before any work, reads the volume lazily, decides in memory or blockwise,
resolves the voxel size, the normalisation and the model's constants (read, not loaded), and
names the work directory. The plan is data: each engine opens what answers crops itself.
Nothing after it re-checks an option.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import memory, postprocess
from .address import grpc_address
from .choices import Device, Precision, Runtime, SharedMemory
from .destinations import check_not_input
from .endpoints import read_model
from .errors import ClientError, InputError
from .jobqueue_options import check_cluster_options
from .label_write import check_output_path, intermediates_path
from .levels import level_path
from .memory import in_memory_bytes
from .model_info import ModelInfo
from .normalize import parse_normalize, resolve_normalization
from .origin import ZERO, Offset, describe_offset, is_integral
from .origin_read import read_offset
from .preview import check_preview_path
from .progress import Watch
from .roi import cut, describe_box, resolve_roi
from .sanity import axes_warning, channel_warning, check_something_to_infer, intensity_warning, sample_voxels
from .shared_memory import check_local
from .skip import skip_rule
from .specs import ClusterSpec, InputSpec, ModelSpec, OutputSpec, Plan, ResumeSpec
from .tile_choice import TileCap, resolve_tile
from .volume import describe_shape
from .volume_read import read_volume, refuse_non_finite
from .voxel_size_read import read_voxel_size, resolve_voxel_size
from .workdir import default_work_dir, stale_work_text

if TYPE_CHECKING:
    from .stores import StoreUrl

__all__ = [
    "ClusterSpec", "InputSpec", "ModelSpec", "OutputSpec", "Plan", "ResumeSpec", "check_blockwise_options", "check_cluster", "check_destinations", "check_meshes",
    "check_options", "describe_region", "prepare", "refuse_bad_crop", "too_big_for_memory",
]


def check_options(input: InputSpec, output: OutputSpec, model: ModelSpec, resume: ResumeSpec, cluster: ClusterSpec) -> None:
    """Refuse, before anything is read, options that cannot be right or do not go together."""
    if (model.window < 1 or (model.retries is not None and model.retries < 0) or not model.timeout > 0 or not model.retry_for >= 0
            or (model.batch is not None and model.batch < 1)):
        raise InputError("--window and --batch must be at least 1, --retries and --retry-for at least 0, --timeout positive")
    if model.urls and (model.runtime is not Runtime.AUTO or model.threads is not None or model.precision is not Precision.FP32):
        raise InputError("--runtime, --threads and --precision choose how the model runs in-process: drop them with --url")
    for url in model.urls:
        grpc_address(url)  # a --url that cannot be right is refused before the volume is read
        if model.shared_memory is SharedMemory.SYSTEM:
            check_local(grpc_address(url)[0])
    if model.shared_memory is SharedMemory.SYSTEM and not model.urls:
        raise InputError("--shared-memory system is how requests reach a server: give --url, or drop it to run the model in-process")
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
    check_meshes(output)
    check_cluster(cluster)
    if input.roi is not None and output.labels_into is not None:
        raise InputError(f"--roi {input.roi.text}: --labels-into writes labels the size of the whole image; "
                         "write the cutout with --out (it states where it sits), or drop --roi")
    if input.roi is not None and input.mask is not None:
        raise InputError(f"--roi {input.roi.text}: --mask covers the whole volume; drop one of them")
    if model.reference_borders and isinstance(model.tile, tuple):
        raise InputError(f"tile {describe_shape(model.tile)} with --reference-borders: reference mode tiles with the model's crop; "
                         "drop --tile, or --reference-borders")


def check_meshes(output: OutputSpec) -> None:
    """Refuse ``--meshes`` where they cannot go: they are written into a precomputed ``--out``
    (Neuroglancer's mesh source), beside its labels and named by its ``info``."""
    if not output.meshes:
        return
    from .extras import require
    from .stores import Location
    from .stores.writer import output_format

    if output.labels_into is not None:
        raise InputError("--meshes are written into a precomputed output, not --labels-into: add --out precomputed://PATH "
                         "(without --labels-into), or drop --meshes")
    if output.out is None:
        raise InputError("--meshes are written into a Neuroglancer precomputed output: give --out precomputed://PATH, or drop --meshes")
    url = Location.of(output.out).url
    if url is None or output_format(url) != "precomputed":
        raise InputError(f"--meshes are written into a Neuroglancer precomputed output, not --out {output.out}: "
                         "write --out precomputed://PATH, or drop --meshes")
    require("zmesh", "--meshes", "neuroglancer")


def describe_region(plan: Plan) -> str | None:
    """The summary's line on where the labels sit: the box segmented and the offset written."""
    parts = []
    if plan.roi is not None:
        if plan.roi_of is None:  # prepare sets both
            raise ValueError("a plan with a roi names the shape of the volume it was cut from (roi_of)")
        parts.append(f"roi {describe_box(plan.roi)} of {describe_shape(plan.roi_of)}")
    if plan.origin != ZERO:
        parts.append(f"offset {describe_offset(plan.origin)} (written to the output's metadata)")
    return ", ".join(parts) or None


def check_cluster(cluster: ClusterSpec) -> None:
    """Refuse batch-job options that cannot be right or do not go together, and a ``--cluster``
    without dask-jobqueue, before anything is read."""
    if cluster.cluster is None:
        if cluster.cluster_options is not None or cluster.max_jobs is not None:
            raise InputError("--cluster-option and --max-jobs size the worker jobs of --cluster: add --cluster slurm|pbs|lsf|sge, or drop them")
        return
    if cluster.scheduler is not None:
        raise InputError(f"--cluster {cluster.cluster} starts its own scheduler and --scheduler joins a running one: give one of them")
    if cluster.workers is not None:
        raise InputError("--workers sizes a local cluster: with --cluster, a job's workers are --cluster-option processes=N "
                         "and --max-jobs caps the jobs")
    if cluster.max_jobs is not None and cluster.max_jobs < 1:
        raise InputError(f"--max-jobs {cluster.max_jobs}: give at least 1")
    check_cluster_options(cluster.cluster, cluster.cluster_options or {})


def check_blockwise_options(model: ModelSpec, output: OutputSpec) -> None:
    """Refuse the options the blockwise mode does not do, naming the in-memory mode."""
    if model.device is Device.GPU:
        raise InputError("--blockwise post-processes on the workers' CPUs; drop --device gpu")
    if output.skeletons:
        from .skeletons import check_skeletons

        check_skeletons(output, blockwise=True)
    if output.labels_into is not None and output.out is not None:
        raise InputError("--blockwise writes the labels to one place: give --out or --labels-into, not both")
    refused = [name for name, given in (("--save-intermediates", output.save_intermediates),
                                        ("--preview", output.preview is not None)) if given]
    if refused:
        one = len(refused) == 1
        raise InputError(f"{', '.join(refused)} need{'s' if one else ''} the labels in memory, which --blockwise never holds: "
                         f"drop {'it' if one else 'them'}, or segment without --blockwise on a machine the volume fits in")


def check_destinations(inputs: list[Any], output: OutputSpec, work_path: Path | StoreUrl | None) -> None:
    """Fail before any work if something would be written over the input or cannot be written."""
    from .instances import check_table_path
    from .stores import Location, check_store_destination

    inputs = [q for q in (Location.of(p).local for p in inputs) if q is not None]  # a remote input is never local
    out = output.out
    if out is not None and (url := Location.of(out).url) is not None:  # precomputed:// or n5:// (client/stores)
        check_store_destination(url, output.overwrite, inputs)
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
    if output.skeletons:
        from .skeletons import check_skeletons

        check_skeletons(output, inputs)
    if output.preview is not None:
        check_not_input("--preview", output.preview, inputs)
        check_preview_path(output.preview)
    if work_path is not None and (local := Location.of(work_path).local) is not None:  # a URL is checked when opened
        check_not_input("--work-dir", local, inputs)


def prepare(input: InputSpec, output: OutputSpec, model: ModelSpec, resume: ResumeSpec, cluster: ClusterSpec,
            watch: Watch) -> Plan:
    """Check the specs into a `Plan`: data only, nothing left open.
    The model's constants are read from the servers' configs or the repository's (the model is
    not loaded: the engine opens what answers crops). What looks wrong about the input goes to
    ``watch.warn``, one line each; the switch to blockwise to ``watch.note``. Raises ``ClientError``."""
    from .ngff import check_labels_into
    from .stores import Location, StoreUrl, store_of
    from .stores import level as store_level

    check_options(input, output, model, resume, cluster)
    location: Path | StoreUrl = Location.of(input.source).target if input.from_file else input.source.path
    if input.level is not None:
        # a precomputed scale, an N5 group's sN (client/stores), else an OME-Zarr level
        if isinstance(location, StoreUrl):
            location = store_level(location, input.level)
        elif (store := store_of(location)) is not None:  # a local N5 group or precomputed volume
            location = store_level(store, input.level)
        else:
            location = level_path(location, input.level)
    kept_work = (resume.work_dir or default_work_dir(output.destination)) if resume.keeps_work else None
    check_destinations([location] if input.from_file else [], output, kept_work)
    choice = parse_normalize(input.normalize)
    whole = read_volume(location, input.channel, input.axes, check_finite=input.roi is None, fill_missing=input.fill_missing) if input.from_file else input.source
    size = resolve_voxel_size(input.voxel_size, read_voxel_size(location) if input.from_file else None, location, watch.warn)
    box = resolve_roi(input.roi, whole.shape, size) if input.roi is not None else None
    volume = cut(whole, box)
    if box is not None and input.from_file:
        refuse_non_finite(volume)  # only the box: a float volume's other voxels are never read
    starts = [lo for lo, _ in box] if box is not None else [0, 0, 0]
    x, y, z = (o + s for o, s in zip(read_offset(location) if input.from_file else ZERO, starts))
    origin: Offset = (x, y, z)
    out_url = Location.of(output.out).url if output.out is not None else None
    if not is_integral(origin) and out_url is not None and out_url.format in (None, "precomputed"):  # voxel_offset is whole voxels
        watch.warn(f"the input's offset {describe_offset(origin)} is not whole voxels; {output.out} states whole voxels only: it is written truncated toward zero")
    blockwise = cluster.asked
    if input.from_file and not blockwise and output.destination is not None:
        too_big = too_big_for_memory(volume.shape, cluster.memory_available)
        if too_big is not None:
            watch.note(too_big)
            check_blockwise_options(model, output)
            blockwise = True
    watch.warn(channel_warning(volume))
    watch.warn(axes_warning(volume))
    if kept_work is not None and not blockwise and not isinstance(kept_work, Path):  # the in-memory engine's crops: a local Zarr
        if resume.work_dir is not None:
            raise InputError(f"--work-dir {kept_work}: only a --blockwise run keeps its work on a URL; pass a local folder, or --blockwise")
        kept_work = Location.of(output.destination).local_work_dir
    if kept_work is None and not blockwise and output.destination is not None:  # blockwise refuses it (blockwise/pipeline.py)
        watch.warn(stale_work_text(Location.of(output.destination).local_work_dir))
    if output.labels_into is not None:
        check_labels_into(output.labels_into, output.label_name, volume.shape, output.overwrite)
    skip, skip_described = skip_rule(input.mask, input.skip_below)
    if skip is not None:
        check_something_to_infer(volume, skip.mask, skip.below)
    try:
        xp = postprocess.device_array_module(model.device)
    except ValueError as e:
        raise ClientError(str(e)) from e
    info, served_by = read_model(model)
    try:
        refuse_bad_crop(model.crop or info.parameters.crop, model.overlap or info.parameters.overlap, info.parameters.minimum_size)
        parameters = info.parameters.replace(crop=model.crop, overlap=model.overlap, embedding_iterations=model.embedding_iterations)
        if isinstance(model.tile, tuple):
            refuse_bad_crop(model.tile, parameters.overlap, parameters.minimum_size, name="tile")
    except ValueError as e:
        raise InputError(str(e)) from e
    uses_cap = model.tile != "crop" and not model.reference_borders
    tile = resolve_tile(model.tile, volume.shape, parameters.crop, parameters.overlap, parameters.minimum_size,
                        _tile_cap(model, info, volume.shape, blockwise, cluster) if uses_cap else None,
                        reference_borders=model.reference_borders)
    try:
        parameters = parameters.replace(crop=tile)  # the grid's crop is the tile (Plan.tile); the model's stays Plan.model_crop
    except ValueError as e:
        raise InputError(str(e)) from e
    sample = sample_voxels(volume)
    normalization = resolve_normalization(choice, parameters.dataset_mean, parameters.dataset_std, sample)
    watch.warn(intensity_warning(sample, volume.dtype, normalization, choice.explicit))
    batch_size = min(model.batch or info.max_batch_size, info.max_batch_size)
    # the one place the work directory is named: kept with resume, and always a blockwise run's
    work_path = kept_work or (default_work_dir(output.destination) if blockwise else None)
    return Plan(input, output, model, resume, cluster, volume=volume, location=location, blockwise=blockwise,
                work_path=work_path, voxel_size=size, normalization=normalization, info=info, parameters=parameters,
                batch_size=batch_size, skip=skip, skip_described=skip_described, xp=xp, roi=box,
                roi_of=whole.shape if box is not None else None, origin=origin, served_by=served_by)


def refuse_bad_crop(crop: tuple[int, int, int], overlap: tuple[int, int, int], minimum: int, name: str = "crop") -> None:
    """Crop (or ``--tile``: ``name``) and overlap (runtime ``X, Y, Z``) checked as the model's
    parameters check them, but named as the user names axes (``crop z 4, y 8, x 8``), not in
    the runtime's order."""
    named = f"{name} {describe_shape(crop)}"
    if any(c < 1 for c in crop):
        raise InputError(f"{named} must be positive on every axis")
    if any(o < 0 for o in overlap):
        raise InputError(f"overlap {describe_shape(overlap)} must not be negative")
    if any(c - 2 * o <= 0 for c, o in zip(crop, overlap)):
        raise InputError(f"{named} with overlap {describe_shape(overlap)} keeps nothing of a crop: "
                         f"each {name} size must exceed twice its overlap")
    if any(c < minimum for c in crop):
        raise InputError(f"{named} is below the network's minimum of {minimum} voxels per axis; "
                         f"choose a {name} of at least {minimum} on every axis")


def _tile_cap(model: ModelSpec, info: ModelInfo, shape: tuple[int, int, int], blockwise: bool, cluster: ClusterSpec) -> TileCap | None:
    """What bounds ``--tile``: on Triton the model config's ``max_tile_voxels``; in-process the
    network's activation estimate against the memory left for inference (a CUDA GPU's free
    memory, else the host's less the in-memory post-processing of the volume, or per blockwise
    worker less its block). None where the model does not say (an export without them)."""
    from skoots_export.contract.activation import FIXED_BYTES, bytes_per_voxel, max_tile_voxels

    if model.urls:
        if info.max_tile_voxels is None:
            return None
        return TileCap(info.max_tile_voxels, f"that model {info.name} allows (max_tile_voxels in its config, set by skoots export --max-tile-voxels)")
    if info.network is None:
        return None
    gpu = memory.gpu_memory_free() if model.runtime in (Runtime.AUTO, Runtime.CUDA) else None
    if gpu is not None:
        budget, source = int(memory.HEADROOM * gpu), "three quarters of the GPU's free memory"
    elif blockwise:
        from .runtimes import all_cores

        workers = cluster.workers or all_cores()
        budget = memory.inference_budget(memory.WORKER_BUDGET, share=workers, memory_available=cluster.memory_available)
        source = f"three quarters of the memory available per worker of {workers}, less its block's"
    else:
        budget = memory.inference_budget(in_memory_bytes(shape), memory_available=cluster.memory_available)
        source = "three quarters of the memory available, less what post-processing the volume needs"
    return TileCap(max_tile_voxels(info.network, budget), source, bytes_per_voxel(info.network), FIXED_BYTES, budget)


def too_big_for_memory(shape: tuple[int, int, int], memory_available: int | None) -> str | None:
    """The note saying the in-memory mode would need more than the memory available (so the run
    goes blockwise), or None when it fits."""
    need, have = in_memory_bytes(shape), memory_available if memory_available is not None else memory.available_memory()
    if need <= have:
        return None
    return (f"note: {describe_shape(shape)} needs ~{need / 2**30:.1f} GiB in memory, {have / 2**30:.1f} GiB are available: "
            "segmenting blockwise (--blockwise)")
