"""Without the neuroglancer extra, --meshes, --skeletons and view say which extra to install, in
one line with exit 2, before any work and with nothing written (the package is hidden from a
real ``skoots-client`` process by a module of its name that fails to import)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from skoots_client.stores import parse, write_store_labels

CLIENT = Path(sys.executable).parent / "skoots-client"


def _without(module: str, tmp_path: Path, *args: str | Path) -> subprocess.CompletedProcess:
    hidden = tmp_path / "hidden"
    hidden.mkdir(exist_ok=True)
    (hidden / f"{module}.py").write_text(f"raise ImportError('{module} hidden by the test')\n")
    path = os.pathsep.join([str(hidden), os.environ.get("PYTHONPATH", "")])
    return subprocess.run([str(CLIENT), *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": path, "COLUMNS": "200"})


def _one_line(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module", autouse=True)
def _console_script() -> None:
    if not CLIENT.is_file():
        pytest.skip(f"no console script at {CLIENT}: install the project (pip install -e .)")


@pytest.mark.parametrize(("module", "option"), [("zmesh", "--meshes"), ("kimimaro", "--skeletons")])
def test_segment_without_the_package_names_the_extra(tmp_path: Path, module: str, option: str) -> None:
    volume = tmp_path / "v.tif"
    tifffile.imwrite(volume, np.zeros((4, 16, 16), np.uint8))
    out = tmp_path / "seg"
    done = _without(module, tmp_path, "segment", volume, "--out", f"precomputed://{out}", option, "-r", tmp_path / "no-repository")
    _one_line(done, f"{option} needs {module}", "neuroglancer extra")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["hidden", "v.tif"]


def test_view_without_neuroglancer_names_the_extra(tmp_path: Path) -> None:
    labels = np.zeros((8, 8, 4), np.uint32)
    labels[2:5, 2:5, 1:3] = 1
    write_store_labels(parse(f"precomputed://{tmp_path}/seg"), labels)
    done = _without("neuroglancer", tmp_path, "view", f"{tmp_path}/seg", "--screenshot", tmp_path / "v.png")
    _one_line(done, "skoots-client view needs neuroglancer", "neuroglancer extra")
    assert not (tmp_path / "v.png").exists()
