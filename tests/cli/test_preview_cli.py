"""``skoots-client segment --preview``: the picture beside the labels, and its path checked first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from matplotlib import image as mpimg

from skoots_client.preview import preview_size

CLIENT = Path(sys.executable).parent / "skoots-client"


def segment(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CLIENT), "segment", *map(str, args)], capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"}
    )


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("preview") / "vol.tif"
    rng = np.random.default_rng(0)
    tifffile.imwrite(path, rng.integers(0, 65535, (10, 30, 26)).astype(np.uint16))  # [Z, X, Y]
    return path


def test_segment_writes_the_preview(e2e_repository: Path, volume: Path, tmp_path: Path) -> None:
    done = segment(volume, "-r", e2e_repository, "--out", tmp_path / "l.tif", "--preview", tmp_path / "p.png", "--device", "cpu", "--quiet")
    assert done.returncode == 0, done.stderr
    assert mpimg.imread(tmp_path / "p.png").shape[:2] == preview_size((30, 26))[::-1]
    assert (tmp_path / "l.tif").is_file()


@pytest.mark.parametrize("name,match", [("p.jpg", "ending in .png"), ("nowhere/p.png", "does not exist")])
def test_a_bad_preview_path_fails_before_any_work(e2e_repository: Path, volume: Path, tmp_path: Path, name: str, match: str) -> None:
    done = segment(volume, "-r", e2e_repository, "--out", tmp_path / "l.tif", "--preview", tmp_path / name, "--device", "cpu")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --preview") and match in lines[0], done.stderr
    assert list(tmp_path.iterdir()) == []
