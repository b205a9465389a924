"""Open what answers crops: Triton servers at some URLs, or the repository's model in-process."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from .errors import ClientError, InputError, ModelError
from .model_info import ModelInfo
from .model_source import EmbeddedModel, TritonEndpoint, embedded_model
from .runtimes import plan_runtime
from .specs import ModelSpec

__all__ = ["open_endpoints", "close_all", "read_model"]


def open_endpoints(spec: ModelSpec, *, load: bool = True) -> tuple[list[Any], ModelInfo]:
    """Triton endpoints for the spec's ``urls``, or the in-process model when there are none (on
    its ``runtime`` with ``threads`` and ``precision``: see `EmbeddedModel`).

    ``model`` None: each server's (or the repository's) SKOOTS model, see ``choose_model``.

    All servers must serve the same model constants, or the stitched result would mix models;
    batches are sized for the smallest ``max_batch_size`` among them.

    ``load`` False (a blockwise run, whose workers load the model): the in-process model is
    checked and its constants read, but not loaded; no endpoints are returned for it.
    """
    urls, model, repository, tls = spec.urls, spec.model, spec.repository, spec.tls
    runtime, threads, precision = spec.runtime, spec.threads, spec.precision
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
            endpoints.append(TritonEndpoint(url, model, concurrency=spec.window, timeout=spec.timeout, retries=spec.retries,
                                            retry_for=spec.retry_for, tls=tls, shared_memory=spec.shared_memory))
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


def read_model(spec: ModelSpec) -> tuple[ModelInfo, str | None]:
    """The model's info (its constants, its batch limit), read without keeping anything open or
    loading the model: from the servers' configs (connected, read, closed) or the repository's.
    With servers, also the summary's line on what serves it."""
    from .summary import served_by

    endpoints, info = open_endpoints(spec, load=False)
    try:
        return info, served_by(info, endpoints) if spec.urls else None
    finally:
        close_all(endpoints)
