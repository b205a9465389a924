"""``segment --url`` and ``bench --url`` without ``--model`` on a real tritonserver serving two
SKOOTS exports: neither is guessed, both are named in the one-line error."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import serving

from skoots_export.contract.wire import config_from_text, config_to_text

CLIENT = str(Path(sys.executable).parent / "skoots-client")


@pytest.fixture(scope="module")
def two_exports(tmp_path_factory: pytest.TempPathFactory, e2e_repository: Path):
    """The lively Python-backend model twice, as ``mito`` and ``mito_wide`` (another overlap)."""
    root = tmp_path_factory.mktemp("two") / "repository"
    for name, overlap in (("mito", None), ("mito_wide", "6,6,2")):
        shutil.copytree(e2e_repository / "skoots", root / name)
        config = config_from_text((root / name / "config.pbtxt").read_text())
        config.name = name
        if overlap:
            config.parameters["overlap"].string_value = overlap
        (root / name / "config.pbtxt").write_text(config_to_text(config))
    yield from serving(root)


@pytest.mark.parametrize("command", ["segment", "bench"])
def test_two_exports_on_one_server_are_listed_not_guessed(command: str, two_exports, tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "v.tif", np.zeros((8, 24, 24), np.uint8))
    args = ["segment", str(tmp_path / "v.tif"), "--out", str(tmp_path / "o.tif")] if command == "segment" else ["bench", "--duration", "1"]
    result = subprocess.run([CLIENT, *args, "--url", two_exports.grpc_url], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == (
        f"error: several SKOOTS models ready on {two_exports.grpc_url}: mito (python), mito_wide (python) — choose one with --model\n"
    )
    assert not (tmp_path / "o.tif").exists()
