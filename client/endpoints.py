"""Open what answers crops: Triton servers at some URLs, or the repository's model in-process."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

from .errors import ClientError, InputError, ModelError
from .model_source import EmbeddedModel, ModelInfo, Tls, TritonEndpoint, embedded_model
from .runtimes import plan_runtime


def open_endpoints(
    urls: Sequence[str], model: str | None, repository: Path, *, window: int, timeout: float, retries: int | None,
    retry_for: float = 60.0, tls: Tls | None = None,
    runtime: str = "auto", threads: int | None = None, precision: str = "fp32", load: bool = True,
) -> tuple[list[Any], ModelInfo]:
    """Triton endpoints for ``urls``, or the in-process model when there are none (on
    ``runtime`` with ``threads`` and ``precision``: see `EmbeddedModel`).

    ``model`` None: each server's (or the repository's) SKOOTS model, see ``choose_model``.

    All servers must serve the same model constants, or the stitched result would mix models;
    batches are sized for the smallest ``max_batch_size`` among them.

    ``load`` False (a blockwise run, whose workers load the model): the in-process model is
    checked and its constants read, but not loaded; no endpoints are returned for it.
    """
    if not urls:
        if tls is not None:
            raise InputError("--ssl and its certificates are for servers: give --url, or drop them to run the model in-process")
        if not load:
            info, version_dir = embedded_model(repository, model)
            plan_runtime(version_dir, runtime, threads=threads, precision=precision)
            return [], info
        embedded = EmbeddedModel(repository, model, runtime=runtime, threads=threads, precision=precision)
        return [embedded], embedded.info
    endpoints: list[TritonEndpoint] = []
    try:
        for url in urls:
            endpoints.append(TritonEndpoint(url, model, concurrency=window, timeout=timeout, retries=retries,
                                            retry_for=retry_for, tls=tls))
        first = endpoints[0]
        for endpoint in endpoints[1:]:
            if endpoint.info.parameters != first.info.parameters:
                raise ModelError(f"{endpoint.name} and {first.name} serve models with different parameters")
    except ClientError:
        close_all(endpoints)
        raise
    smallest = min(e.info.max_batch_size for e in endpoints)
    return list(endpoints), dataclasses.replace(first.info, max_batch_size=smallest)


def close_all(endpoints: Sequence[Any]) -> None:
    for endpoint in endpoints:
        close = getattr(endpoint, "close", None)
        if close:
            close()
