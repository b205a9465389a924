"""napari's File ▸ Open Sample ▸ SKOOTS demo: the demo's held-out volume, with the demo model.

The first call exports the committed demo checkpoint (as ``./demo.sh`` does: CPU instances, two
crops per request) into the user's cache, once; the image layer names that repository in its
metadata, so the "SKOOTS segmentation" widget runs it without a file dialog.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .synthetic import SyntheticSpec, generate

CHECKPOINT = Path(__file__).resolve().parent / "demo_model.trch"
DEMO_SEED = 7  # held out from training (seeds 1000 and up) and validation (900 and up)
DEMO_SHAPE = (256, 256, 48)  # X, Y, Z: rows, columns, slices
MODEL_METADATA = "skoots_model"  # read by skoots_client.napari_plugin.widget


def demo_repository(cache: Path | None = None) -> Path:
    """The demo model exported into ``cache`` (default: the user's cache directory), once."""
    from skoots_export.exporter import export_checkpoint
    from skoots_export.model_config import Device

    root = cache or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "skoots-triton" / "napari-demo"
    repository = root / "model_repository"
    if any(repository.glob("*/config.pbtxt")):
        return repository
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=root))
    try:
        export_checkpoint(CHECKPOINT, repository=staging / "model_repository", device=Device.cpu, max_batch_size=2)
        os.replace(staging / "model_repository", repository)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return repository


def demo_volume() -> np.ndarray:
    """The demo's held-out synthetic volume, ``uint8`` ``[Z, Y, X]``."""
    volume = generate(DEMO_SEED, SyntheticSpec(shape=DEMO_SHAPE))
    return np.ascontiguousarray(volume.raw.transpose(2, 0, 1))


def demo_sample() -> list[tuple[Any, dict[str, Any], str]]:
    """napari sample data: the demo volume as an image layer that names the demo model."""
    repository = demo_repository()
    return [(demo_volume(), {"name": "SKOOTS demo", "metadata": {MODEL_METADATA: str(repository)}}, "image")]
