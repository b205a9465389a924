"""The model list a GUI shows: SKOOTS models of a repository or a server, nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from skoots_client.catalog import skoots_models
from skoots_client.errors import ServerUnavailableError
from skoots_export.server import free_port


def test_a_repository_lists_its_skoots_models_with_their_kind(exported_repository: Path, tmp_path: Path) -> None:
    assert skoots_models(repository=exported_repository) == [("skoots", "libtorch"), ("skoots_python", "python")]
    (tmp_path / "other" / "1").mkdir(parents=True)
    (tmp_path / "other" / "config.pbtxt").write_text('name: "other"\nbackend: "python"\n')
    (tmp_path / "other" / "1" / "model.pt").write_bytes(b"")
    assert skoots_models(repository=tmp_path) == []  # a model that does not speak the contract is left out


def test_no_server_at_the_url_is_one_line() -> None:
    with pytest.raises(ServerUnavailableError, match=r"no Triton server at 127\.0\.0\.1:\d+ .* start one"):
        skoots_models(url=f"127.0.0.1:{free_port()}")
