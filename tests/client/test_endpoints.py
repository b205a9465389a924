"""What answers crops, opened from URLs or the repository; a blockwise run's client only reads
the model's constants (its workers load the model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from skoots_client.choices import Precision, Runtime
from skoots_client.endpoints import open_endpoints
from skoots_client.errors import InputError
from skoots_client.model_source import EmbeddedModel
from skoots_client.specs import ModelSpec


def test_without_loading_the_constants_are_the_loaded_models(e2e_repository: Path) -> None:
    endpoints, info = open_endpoints(ModelSpec(repository=e2e_repository), load=False)
    assert endpoints == [] and info == EmbeddedModel(e2e_repository).info


def test_without_loading_the_runtime_is_still_checked_first(e2e_repository: Path) -> None:
    with pytest.raises(InputError, match=r"^--precision bf16 runs on OpenVINO only, not torchscript"):
        open_endpoints(ModelSpec(repository=e2e_repository, runtime=Runtime.TORCHSCRIPT, precision=Precision.BF16), load=False)
    with pytest.raises(InputError, match=r"^--threads 0: give at least 1$"):
        open_endpoints(ModelSpec(repository=e2e_repository, threads=0), load=False)
