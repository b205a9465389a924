"""napari's File ▸ Open Sample ▸ SKOOTS demo: the demo's held-out volume, with the demo model.

The first open exports the committed demo checkpoint (as ``./demo.sh`` does: CPU instances, two
crops per request) into the user's cache, once (~40 s on a laptop). The volume opens at once: the
export runs in a napari worker thread with a progress bar, and the image layer carries it as a
``concurrent.futures.Future`` (metadata ``skoots_model_ready``) beside the repository's path
(``skoots_model``), so the "SKOOTS segmentation" widget runs the model without a file dialog,
waiting for the export in its own worker if Run comes first.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from .synthetic import SyntheticSpec, generate

CHECKPOINT = Path(__file__).resolve().parent / "demo_model.trch"
DEMO_SEED = 7  # held out from training (seeds 1000 and up) and validation (900 and up)
DEMO_SHAPE = (256, 256, 48)  # X, Y, Z: rows, columns, slices
MODEL_METADATA = "skoots_model"  # read by skoots_client.napari_plugin.widget
MODEL_READY_METADATA = "skoots_model_ready"  # likewise: a Future done once the model is exported
_EXPORTS: dict[Path, Future] = {}  # repository -> its export, so a second open does not start another
_LOCK = threading.Lock()


def demo_repository(cache: Path | None = None) -> Path:
    """The demo model exported into ``cache`` (default: the user's cache directory), once."""
    from skoots_export.exporter import export_checkpoint
    from skoots_export.model_config import Device

    repository = repository_path(cache)
    root = repository.parent
    if any(repository.glob("*/config.pbtxt")):
        return repository
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=root))
    try:
        export_checkpoint(CHECKPOINT, repository=staging / "model_repository", device=Device.CPU, max_batch_size=2)
        os.replace(staging / "model_repository", repository)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return repository


def repository_path(cache: Path | None = None) -> Path:
    """Where :func:`demo_repository` puts the demo model."""
    root = cache or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "skoots-triton" / "napari-demo"
    return root / "model_repository"


def demo_repository_ready(cache: Path | None = None) -> tuple[Path, Future]:
    """The demo model's repository and a Future done when it is exported: at once when it is in
    the cache, else when an export started now in a napari worker thread (with a progress bar
    and a notification when done) finishes; one export per repository however often it opens."""
    from napari.qt.threading import create_worker
    from napari.utils.notifications import show_error, show_info

    repository = repository_path(cache)
    with _LOCK:
        future = _EXPORTS.get(repository)
        if future is not None and not (future.done() and future.exception() is not None):
            return repository, future
        future = Future()
        if any(repository.glob("*/config.pbtxt")):
            future.set_result(repository)
            return repository, future
        _EXPORTS[repository] = future

    def export() -> Path:
        try:
            future.set_result(demo_repository(cache))
        except BaseException as e:
            future.set_exception(e)
            raise
        return repository

    show_info("SKOOTS demo: exporting the demo model into the cache, once (about a minute); Run waits for it")
    worker = create_worker(export, _progress={"desc": "SKOOTS demo: exporting the model"}, _start_thread=False)
    worker.returned.connect(lambda path: show_info(f"SKOOTS demo: the model is ready ({path})"))
    worker.errored.connect(lambda e: show_error(f"SKOOTS demo: exporting the model failed: {e}"))
    worker.start()
    return repository, future


def demo_volume() -> np.ndarray:
    """The demo's held-out synthetic volume, ``uint8`` ``[Z, Y, X]``."""
    volume = generate(DEMO_SEED, SyntheticSpec(shape=DEMO_SHAPE))
    return np.ascontiguousarray(volume.raw.transpose(2, 0, 1))


def demo_sample() -> list[tuple[Any, dict[str, Any], str]]:
    """napari sample data: the demo volume as an image layer that names the demo model, at once;
    the model's first export runs meanwhile in a worker thread (:func:`demo_repository_ready`)."""
    repository, ready = demo_repository_ready()
    metadata = {MODEL_METADATA: str(repository), MODEL_READY_METADATA: ready}
    return [(demo_volume(), {"name": "SKOOTS demo", "metadata": metadata}, "image")]
