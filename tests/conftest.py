from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from checkpoints import TINY, skoots_cfg, write_checkpoint  # noqa: E402


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SKOOTS checkpoint in the upstream format with a tiny network."""
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.trch", skoots_cfg(**TINY))


@pytest.fixture(scope="session")
def exported_repository(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    """Both variants of the tiny checkpoint, CPU instances, crop 24x24x8."""
    from skoots_export.exporter import export_checkpoint
    from skoots_export.model_config import Device

    repository = tmp_path_factory.mktemp("repo") / "model_repository"
    export_checkpoint(
        tiny_checkpoint,
        repository=repository,
        backend="both",
        device=Device.cpu,
        max_batch_size=4,
        crop=(24, 24, 8),
        overlap=(4, 4, 2),
    )
    return repository
