"""``segment`` end to end: check everything, segment, write atomically, summarise."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from skoots_export.model_config import ModelParameters

from . import postprocess
from .address import grpc_address
from .errors import ClientError, InputError, ModelError
from .model_source import EmbeddedModel, ModelInfo, Tls, TritonEndpoint
from .preview import check_preview_path, write_preview
from .progress import ProgressLine
from .segment import SegmentResult, segment_volume
from .volume_io import check_output_path, read_volume, write_labels, write_intermediates
from .workdir import WorkDir, default_work_dir, fingerprint


def open_endpoints(
    urls: Sequence[str], model: str | None, repository: Path, *, window: int, timeout: float, retries: int, tls: Tls | None = None
) -> tuple[list[Any], ModelInfo]:
    """Triton endpoints for ``urls``, or the in-process model when there are none.

    ``model`` None: each server's (or the repository's) SKOOTS model, see ``choose_model``.

    All servers must serve the same model constants, or the stitched result would mix models;
    batches are sized for the smallest ``max_batch_size`` among them.
    """
    if not urls:
        if tls is not None:
            raise InputError("--ssl and its certificates are for servers: give --url, or drop them to run the model in-process")
        embedded = EmbeddedModel(repository, model)
        return [embedded], embedded.info
    endpoints: list[TritonEndpoint] = []
    try:
        for url in urls:
            endpoints.append(TritonEndpoint(url, model, concurrency=window, timeout=timeout, retries=retries, tls=tls))
        first = endpoints[0]
        for endpoint in endpoints[1:]:
            if endpoint.info.parameters != first.info.parameters:
                raise ModelError(f"{endpoint.name} and {first.name} serve models with different parameters")
    except ClientError:
        for endpoint in endpoints:
            endpoint.close()
        raise
    smallest = min(e.info.max_batch_size for e in endpoints)
    return list(endpoints), dataclasses.replace(first.info, max_batch_size=smallest)


def resolve_parameters(info: ModelInfo, **overrides: Any) -> ModelParameters:
    try:
        return info.parameters.replace(**overrides)
    except ValueError as e:
        raise InputError(str(e)) from e


def summary(volume_path: Path, out: Path, shape: tuple[int, ...], result: SegmentResult, total: float, xp: Any) -> str:
    voxels = int(np.prod(shape))
    stages = ", ".join(f"{k} {v:.2f}s" for k, v in result.seconds.items())
    return (
        f"{volume_path} → {out}\n"
        f"shape (X, Y, Z) {tuple(shape)}, {result.crops} crops, {result.instances} instances\n"
        f"time {total:.2f}s ({stages}; post-processing on {'GPU' if xp is not np else 'CPU'}), "
        f"{voxels / total / 1e6:.2f} Mvoxels/s"
    )


def segment_file(
    volume_path: Path,
    *,
    out: Path,
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
) -> str:
    """Segment ``volume_path`` into ``out``; returns the summary text. Raises ``ClientError``.

    With ``resume`` (or a ``work_dir``) finished crops are kept in a work directory
    (``OUT.work`` by default) as they arrive and taken from it on the next run; it is removed
    once the labels are written, and kept when the run fails.
    """
    started = time.perf_counter()
    if window < 1 or retries < 0 or not timeout > 0 or (batch is not None and batch < 1):
        raise InputError("--window and --batch must be at least 1, --retries at least 0, --timeout positive")
    for url in urls:
        grpc_address(url)  # a --url that cannot be right is refused before the volume is read
    check_output_path(out, overwrite)
    if preview is not None:
        check_preview_path(preview)
    volume = read_volume(volume_path, channel)
    try:
        xp = postprocess.device_array_module(device)
    except ValueError as e:
        raise ClientError(str(e)) from e
    endpoints, info = open_endpoints(urls, model, repository, window=window, timeout=timeout, retries=retries, tls=tls)
    parameters = resolve_parameters(info, crop=crop, overlap=overlap, embedding_iterations=embedding_iterations)
    batch_size = min(batch or info.max_batch_size, info.max_batch_size)
    work = None
    if resume or work_dir is not None:
        made_of = fingerprint(volume_path, volume.shape, volume.dtype, channel, info.name, parameters,
                              reference_borders=reference_borders, probability=save_intermediates)
        try:
            work = WorkDir(work_dir or default_work_dir(out), made_of)
        except ClientError:
            for endpoint in endpoints:
                getattr(endpoint, "close", lambda: None)()
            raise

    def lost(name: str, error: BaseException) -> None:
        print(f"warning: {name} dropped out ({error}); carrying on with the others", file=sys.stderr)

    try:
        result = segment_volume(
            volume,
            parameters,
            endpoints,
            batch_size=batch_size,
            xp=xp,
            reference_borders=reference_borders,
            save_intermediates=save_intermediates,
            progress=ProgressLine(enabled=not quiet),
            on_endpoint_lost=lost,
            work=work,
        )
        labels = result.labels.get() if hasattr(result.labels, "get") else result.labels
        write_labels(out, labels, overwrite=overwrite)
        if save_intermediates:
            write_intermediates(out, result.intermediates, overwrite=overwrite)
    except ClientError as e:
        if work is None or not work.exists:
            raise
        work.close()
        raise type(e)(f"{e} — finished crops are kept in {work.path}; run again with --resume to continue") from e
    finally:
        for endpoint in endpoints:
            close = getattr(endpoint, "close", None)
            if close:
                close()
    if work is not None:
        work.remove()
    text = summary(volume_path, out, volume.shape, result, time.perf_counter() - started, xp)
    resent = sum(getattr(endpoint, "resent", 0) for endpoint in endpoints)
    if resent:
        text += f"\nresent {resent} requests after server faults"
    if work is not None and result.resumed:
        text += f"\nresumed {result.resumed} of {result.crops} crops from {work.path}"
    if preview is not None:
        text += f"\npreview → {write_preview(preview, volume.data, labels)}"
    return text
