"""``segment`` end to end: check everything, segment, write atomically, summarise."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from skoots_export.contract.wire import ModelParameters

from . import postprocess
from .address import grpc_address
from .endpoints import close_all, open_endpoints
from .errors import ClientError, InputError, OutputError
from .in_memory import segment_volume, skip_rule
from .model_source import ModelInfo, Tls
from .normalize import Normalization, parse_normalize, resolve_normalization
from .preview import check_preview_path, write_preview
from .progress import Watch
from .result import Segmentation
from .sanity import axes_warning, channel_warning, check_something_to_infer, empty_result_warning, intensity_warning, sample_voxels
from .summary import describe_run, summary, warn_each, warn_on_stderr
from .destinations import check_not_input
from .label_write import check_output_path, intermediates_path, keep_labels, write_intermediates, write_labels
from .levels import level_path
from .volume import Volume, describe_shape
from .volume_read import read_volume
from .voxel_size import UnitOption, VoxelSize
from .voxel_size_read import read_voxel_size, resolve_voxel_size
from .workdir import WorkDir, default_work_dir, fingerprint, stale_work_text


def check_destinations(
    inputs: list[Path],
    out: Path | None,
    overwrite: bool,
    save_intermediates: bool,
    preview: Path | None,
    work_dir: Path | None,
    table: Path | None = None,
) -> None:
    """Fail before any work if something would be written over the input or cannot be written."""
    from .instances import check_table_path
    from .stores import check_destination, is_store

    inputs = [q for q in (p.local if is_store(p) else Path(p) for p in inputs) if q is not None]  # a remote input is never local
    if is_store(out):  # precomputed:// or n5:// (client/stores)
        check_destination(out, overwrite, inputs)
        if save_intermediates:
            raise InputError(f"--save-intermediates writes beside a local --out, not {out}; drop it, or write to a local path")
    elif out is not None:
        check_not_input("--out", out, inputs)
        check_output_path(out, overwrite)
        if save_intermediates:
            check_not_input("--save-intermediates", intermediates_path(out), inputs)
    if table is not None:
        check_not_input("--table", table, inputs)
        check_table_path(table, overwrite)
    if preview is not None:
        check_not_input("--preview", preview, inputs)
        check_preview_path(preview)
    if work_dir is not None:
        check_not_input("--work-dir", work_dir, inputs)


def resolve_parameters(info: ModelInfo, **overrides: Any) -> ModelParameters:
    try:
        return info.parameters.replace(**overrides)
    except ValueError as e:
        raise InputError(str(e)) from e


def segment_file(volume_path: Any, *, out: Any, labels_into: Path | None = None, **options: Any) -> str:
    """``segment`` from a file into ``out`` (or ``labels_into``); returns the summary text. See
    :func:`run_segment` for the options. Raises ``ClientError``."""
    if out is None and labels_into is None:
        raise InputError("nowhere to write the labels: give --out or --labels-into")
    from .stores import is_store

    source = volume_path if is_store(volume_path) else Path(volume_path)  # N5, precomputed, Zarr by URL stay URLs
    return run_segment(source, out=out, labels_into=labels_into, **options).summary


def run_segment(
    source: Path | Volume,
    *,
    out: Path | None,
    urls: Sequence[str] = (),
    model: str | None = None,
    repository: Path = Path("model_repository"),
    overwrite: bool = False,
    channel: int | None = None,
    batch: int | None = None,
    window: int = 4,
    timeout: float = 120.0,
    retries: int = 5,
    device: str = "auto",
    crop: tuple[int, int, int] | None = None,
    overlap: tuple[int, int, int] | None = None,
    embedding_iterations: int | None = None,
    reference_borders: bool = False,
    save_intermediates: bool = False,
    quiet: bool = False,
    preview: Path | None = None,
    resume: bool = False,
    work_dir: Path | None = None,
    tls: Tls | None = None,
    normalize: str | None = None,
    axes: str | None = None,
    voxel_size: VoxelSize | UnitOption | None = None,
    table: Path | None = None,
    labels_into: Path | None = None,
    label_name: str = "skoots",
    ngff_version: str = "0.4",
    mask: Path | None = None,
    skip_below: float | None = None,
    warn: Callable[[str], None] = warn_on_stderr,
    runtime: str = "auto",
    threads: int | None = None,
    precision: str = "fp32",
    blockwise: bool = False,
    block: tuple[int, int, int] | None = None,
    workers: int | None = None,
    threads_per_worker: int = 1,
    scheduler: str | None = None,
    memory_available: int | None = None,
    level: int | None = None,
    min_size: int = 0,
    watch: Watch | None = None,
) -> Segmentation:
    """Segment the volume at ``source`` (a path) or an opened one (an array's, see
    ``volume_io.volume_from_array``) into ``out``, if given; returns the labels and the summary.
    Raises ``ClientError``: :class:`Cancelled` when ``watch`` says to stop.

    With ``resume`` (or a ``work_dir``) finished crops are kept in a work directory
    (``OUT.work`` by default) as they arrive and taken from it on the next run; it is removed
    once the labels are written, and kept when the run fails. ``normalize`` is ``--normalize``
    (default: the model's rule), ``axes`` declares the file's axis order (``--axes``). What looks
    wrong about the input or the result goes to ``warn``, one line each; nothing that would
    write over the input is accepted.

    ``out`` may be None when ``labels_into`` (an OME-Zarr image) receives the labels instead,
    in its ``labels/<label_name>``. ``table`` also writes the instance table (client/instances.py);
    with an OME-Zarr output its rows become the labels' NGFF ``properties``. ``mask`` and
    ``skip_below`` keep empty crops from being inferred (in_memory.SkipRule). Instances of fewer
    than ``min_size`` voxels become background before renumbering, in both modes alike.

    With ``blockwise`` (or when the in-memory mode would need more than ``memory_available``,
    by default the machine's available memory) the volume is segmented block by block on a
    Dask cluster: a local one of ``workers`` processes, or the one at ``scheduler``.

    ``level`` (``--level N``) segments level N of an OME-Zarr image, as ``IMAGE/PATH`` of
    that level would: with the level's own voxel size.
    """
    from .instances import label_properties, measure_xyz, write_table
    from .ngff import check_labels_into, write_labels_into
    from .stores import is_store, store_of
    from .stores.reader import level as store_level

    started = time.perf_counter()
    watch = watch or Watch(quiet)
    from_file = not isinstance(source, Volume)
    volume_path = Path(source.path) if not from_file else source if is_store(source) else Path(source)
    if level is not None:
        if not from_file:
            raise InputError("level= picks a resolution level of an OME-Zarr file: give its path, or pass that level's array")
        store = store_of(volume_path)
        # a precomputed scale, an N5 group's sN (client/stores), else an OME-Zarr level
        volume_path = store_level(store, level) if store is not None else level_path(Path(volume_path), level)
    if window < 1 or retries < 0 or not timeout > 0 or (batch is not None and batch < 1):
        raise InputError("--window and --batch must be at least 1, --retries at least 0, --timeout positive")
    if urls and (runtime != "auto" or threads is not None or precision != "fp32"):
        raise InputError("--runtime, --threads and --precision choose how the model runs in-process: drop them with --url")
    for url in urls:
        grpc_address(url)  # a --url that cannot be right is refused before the volume is read
    if min_size < 0:
        raise InputError(f"--min-size {min_size}: give a voxel count of at least 0 (0 keeps every instance)")
    if block is not None and any(b < 1 for b in block):
        raise InputError(f"--block {','.join(map(str, block))}: block sizes must be positive")
    asked_blockwise = blockwise or scheduler is not None
    if not from_file and (asked_blockwise or resume or work_dir is not None):
        raise InputError("blockwise, resume and work_dir read the volume again from its file: give the volume as a path")
    if asked_blockwise and out is None and labels_into is None:
        raise InputError("blockwise writes the labels block by block and never holds them: give out= or labels_into=")
    if asked_blockwise:
        check_blockwise_options(device=device, save_intermediates=save_intermediates, preview=preview, labels_into=labels_into, out=out)
    work_path = (work_dir or default_work_dir(out or labels_into)) if resume or work_dir is not None else None
    check_destinations([volume_path] if from_file else [], out, overwrite, save_intermediates, preview, work_path, table)
    choice = parse_normalize(normalize)
    volume = read_volume(volume_path, channel, axes) if from_file else source
    if from_file and not asked_blockwise and (out or labels_into) and _too_big_for_memory(volume.shape, memory_available):
        check_blockwise_options(device=device, save_intermediates=save_intermediates, preview=preview, labels_into=labels_into, out=out)
        asked_blockwise = True
    warn_each(warn, channel_warning(volume), axes_warning(volume))
    if work_path is None and not asked_blockwise and (out or labels_into):  # blockwise refuses it (blockwise/pipeline.py)
        warn_each(warn, stale_work_text(default_work_dir(out or labels_into)))
    size = resolve_voxel_size(voxel_size, read_voxel_size(volume_path) if from_file else None, volume_path, warn)
    if labels_into is not None:
        check_labels_into(labels_into, label_name, volume.shape, overwrite)
    skip, skip_described = skip_rule(mask, skip_below)
    if skip is not None:
        check_something_to_infer(volume, skip.mask, skip.below)
    try:
        xp = postprocess.device_array_module(device)
    except ValueError as e:
        raise ClientError(str(e)) from e
    endpoints, info = open_endpoints(urls, model, repository, window=window, timeout=timeout, retries=retries, tls=tls,
                                     runtime=runtime, threads=threads, precision=precision, load=not asked_blockwise)
    work = None
    try:
        parameters = resolve_parameters(info, crop=crop, overlap=overlap, embedding_iterations=embedding_iterations)
        sample = sample_voxels(volume)
        normalization = resolve_normalization(choice, parameters.dataset_mean, parameters.dataset_std, sample)
        warn_each(warn, intensity_warning(sample, volume.dtype, normalization, choice.explicit))
        del sample
        if work_path is not None and not asked_blockwise:
            made_of = fingerprint(volume_path, volume.shape, volume.dtype, channel, info.name, parameters,
                                  reference_borders=reference_borders, probability=save_intermediates,
                                  axes=volume.axes, normalization=normalization.to_dict(), skip=skip_described)
            work = WorkDir(work_path, made_of)
    except ClientError:
        close_all(endpoints)
        raise
    batch_size = min(batch or info.max_batch_size, info.max_batch_size)
    if asked_blockwise:
        close_all(endpoints)
        return _blockwise(
            volume, out=out, into=None if labels_into is None else (labels_into, label_name), urls=urls, model=info.name,
            repository=repository, overwrite=overwrite, channel=channel,
            axes=axes, normalization=normalization, voxel_size=size, ngff_version=ngff_version, warn=warn, table=table,
            mask=mask, skip_below=skip_below, skip_described=skip_described,
            batch_size=batch_size, window=window, timeout=timeout, retries=retries, parameters=parameters,
            reference_borders=reference_borders, quiet=quiet, resume=resume, work_dir=work_dir, tls=tls,
            runtime=runtime, threads=threads, precision=precision, block=block, workers=workers,
            threads_per_worker=threads_per_worker, scheduler=scheduler, started=started, min_size=min_size, watch=watch,
        )

    def lost(name: str, error: BaseException) -> None:
        warn(f"{name} dropped out ({error}); carrying on with the others")

    try:
        result = segment_volume(
            volume,
            parameters,
            endpoints,
            batch_size=batch_size,
            xp=xp,
            reference_borders=reference_borders,
            save_intermediates=save_intermediates,
            progress=watch.stage("infer", "crops"),
            on_endpoint_lost=lost,
            work=work,
            normalization=normalization,
            skip=skip,
            min_size=min_size,
        )
        labels = result.labels.get() if hasattr(result.labels, "get") else result.labels
        done_at: list[Path] = []  # a failure from here on never loses the labels (keep_labels)
        try:
            columns = measure_xyz(labels, size, volume.data) if table is not None else None
            properties = label_properties(columns) if columns is not None else None
            if out is not None:
                done_at.append(write_labels(out, labels, overwrite=overwrite, voxel_size=size, properties=properties,
                                            ngff_version=ngff_version))
            if labels_into is not None:
                done_at.append(write_labels_into(labels_into, label_name, labels, overwrite=overwrite, properties=properties))
            if columns is not None:
                write_table(table, columns)
            if save_intermediates:
                write_intermediates(out or labels_into, result.intermediates, overwrite=overwrite, voxel_size=size)
        except Exception as e:  # noqa: BLE001 - whatever failed, the labels are kept and the error says where
            raise keep_labels(e, labels, size, [p for p in (out, labels_into) if p is not None],
                              [*([work.path] if work is not None else []), volume_path.parent if is_store(volume_path) else Path(volume_path).parent], written=done_at) from e
    except ClientError as e:
        if work is None or not work.exists:
            raise
        work.close()
        raise type(e)(f"{e} — finished crops are kept in {work.path}; run again with --resume to continue") from e
    finally:
        close_all(endpoints)
    if work is not None:
        work.remove()
    warn_each(warn, empty_result_warning(result.instances, labels))
    written = out if out is not None else labels_into / "labels" / label_name if labels_into is not None else None
    text = summary(volume, written, normalization, result, time.perf_counter() - started, xp)
    text += f"\nvoxel size {size.describe()}" + (f", instance table → {table}" if table is not None else "")
    if not urls:
        text += f"\ninference in-process: {endpoints[0].runtime}"
    resent = sum(getattr(endpoint, "resent", 0) for endpoint in endpoints)
    if resent:
        text += f"\nresent {resent} requests after server faults"
    if work is not None and result.resumed:
        text += f"\nresumed {result.resumed} of {result.crops} crops from {work.path}"
    if preview is not None:
        try:
            text += f"\npreview → {write_preview(preview, volume.data, labels)}"
        except Exception as e:  # noqa: BLE001 - the labels are written; say so, in one line
            detail = e.strerror if isinstance(e, OSError) and e.strerror else f"{type(e).__name__}: {e}"
            raise OutputError(f"cannot write the preview {preview} ({detail}) — the labels were written to {written}") from e
    return Segmentation(summary=text, voxel_size=size, instances=result.instances, labels_xyz=labels, written=written,
                        table=columns, raw_xyz=volume.data)


def _too_big_for_memory(shape: tuple[int, int, int], memory_available: int | None) -> bool:
    """Whether the in-memory mode would need more than the memory available; says so on stderr."""
    from .blockwise.blocks import in_memory_bytes
    from .blockwise.pipeline import available_memory

    need, have = in_memory_bytes(shape), memory_available if memory_available is not None else available_memory()
    if need <= have:
        return False
    print(f"note: {describe_shape(shape)} needs ~{need / 2**30:.1f} GiB in memory, {have / 2**30:.1f} GiB are available: segmenting blockwise (--blockwise)",
          file=sys.stderr)
    return True


def check_blockwise_options(*, device: str, save_intermediates: bool, preview: Path | None, labels_into: Path | None,
                            out: Path | None = None) -> None:
    """Refuse, before any work, the options the blockwise mode does not do, naming the in-memory mode."""
    if device == "gpu":
        raise InputError("--blockwise post-processes on the workers' CPUs; drop --device gpu")
    if labels_into is not None and out is not None:
        raise InputError("--blockwise writes the labels to one place: give --out or --labels-into, not both")
    refused = [name for name, given in (("--save-intermediates", save_intermediates), ("--preview", preview is not None)) if given]
    if refused:
        one = len(refused) == 1
        raise InputError(f"{', '.join(refused)} need{'s' if one else ''} the labels in memory, which --blockwise never holds: "
                         f"drop {'it' if one else 'them'}, or segment without --blockwise on a machine the volume fits in")


def _blockwise(volume: Any, *, out: Path | None, urls: Sequence[str], model: str, repository: Path, window: int,
               timeout: float, retries: int, tls: Tls | None, started: float, normalization: Normalization,
               voxel_size: VoxelSize, warn: Callable[[str], None], runtime: str, threads: int | None, precision: str,
               table: Path | None, skip_described: dict[str, Any] | None, watch: Watch, **options: Any) -> Segmentation:
    """``segment --blockwise``: the in-memory mode's checked options, then the pipeline."""
    from .blockwise.pipeline import blockwise_file
    from .blockwise.job import Source
    from .instances import write_table
    from .sanity import empty_result_text

    parameters, channel, reference_borders = options.pop("parameters"), options["channel"], options["reference_borders"]
    made_of = fingerprint(volume.path, volume.shape, volume.dtype, channel, model, parameters,
                          reference_borders=reference_borders, probability=False, axes=volume.axes,
                          normalization=normalization.to_dict(), skip=skip_described)
    quiet = options["quiet"]
    options["resume"] = options["resume"] or options["work_dir"] is not None  # --work-dir implies --resume
    # In-process inference on a worker uses its own threads unless --threads says otherwise.
    threads = threads if threads is not None else options["threads_per_worker"]
    source = Source(tuple(urls), model, Path(repository).resolve(), window, timeout, retries, tls, runtime, threads, precision)
    written = out if out is not None else options["into"][0] / "labels" / options["into"][1]
    result = blockwise_file(volume, out=out, parameters=parameters, source=source, fingerprint=made_of,
                            normalization=normalization, voxel_size=voxel_size, measure=table is not None,
                            say=None if quiet else (lambda line: print(line, file=sys.stderr)), watch=watch, **options)
    if table is not None and result.table is not None:
        try:
            write_table(table, result.table)
        except ClientError as e:
            raise type(e)(f"{e} — the labels were written to {written}") from e
    total = time.perf_counter() - started
    voxels = int(np.prod(volume.shape))
    warn_each(warn, empty_result_text(result.instances, result.labelled / max(1, voxels)))
    text = (
        f"{describe_run(volume, written, normalization)}\n"
        f"{result.crops} crops, {result.instances} instances\n"
        f"time {total:.2f}s, {voxels / total / 1e6:.2f} Mvoxels/s\n{result.summary(voxels)}\n"
        f"voxel size {voxel_size.describe()}" + (f", instance table → {table}" if table is not None else "")
    )
    return Segmentation(summary=text, voxel_size=voxel_size, instances=result.instances, written=written,
                        table=result.table, raw_xyz=volume.data)
