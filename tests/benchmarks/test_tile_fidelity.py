"""benchmarks/tile_fidelity.py runs end to end on a tiny volume, so it cannot rot; its
network-work figure is the crop grid's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from checkpoints import TINY, skoots_cfg, write_checkpoint

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from tile_fidelity import inputs_per_output, tiles  # noqa: E402


def test_network_work_and_tiles_follow_the_crop_grid() -> None:
    # the figure: the seed's crop on 600x600x40 sends 27 crops of 300x300x20 for 14.4 Mvoxels
    assert round(inputs_per_output((600, 600, 40), (300, 300, 20), (10, 10, 5)), 2) == 3.38
    assert inputs_per_output((600, 600, 40), (600, 600, 40), (10, 10, 5)) == 1.0
    assert tiles((136, 136, 20), (384, 384, 48)) == [
        ("model crop", (136, 136, 20)), ("doubled", (136, 136, 40)), ("whole", (384, 384, 48)), ("auto", None)
    ]
    # z already whole: x and y double instead; a tile is never larger than the volume
    assert tiles((136, 136, 48), (384, 384, 48))[1] == ("doubled", (272, 272, 48))
    assert tiles((300, 300, 20), (48, 48, 24)) == [("model crop", (48, 48, 20)), ("doubled", (48, 48, 24)), ("auto", None)]


@pytest.mark.slow  # six child processes that each import torch: minutes on a loaded machine
def test_the_script_prints_a_row_per_tile_and_a_decision(tmp_path: Path) -> None:
    checkpoint = write_checkpoint(tmp_path / "tiny.trch", skoots_cfg(**TINY), make_lively=True)
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "tile_fidelity.py"), "--models", "seed", "default", "--seed-model", str(checkpoint),
         "--seeds", "3", "--shape", "24,48,48", "--default-shape", "24,48,48", "--default-cfg", json.dumps(TINY)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    table = done.stdout.split("ARI truth\n")[1].split("\n\n")[0].splitlines()
    assert [line.split()[:3] for line in table] == [
        ["seed", "3", "48x48x20"], ["seed", "3", "48x48x24"], ["seed", "3", "48x48x24"],
        ["default", "3", "48x48x20"], ["default", "3", "48x48x24"], ["default", "3", "48x48x24"],
    ]  # model crop, doubled (= whole here), auto (= whole: the tiny model has room)
    assert sum("(--tile auto)" in line for line in table) == 2
    assert [line.split()[3] for line in table] == ["1.67", "1.00", "1.00"] * 2  # input voxels per output voxel
    assert all(line.endswith("(untrained, not judged)") for line in table[3:])
    assert "(untrained" not in table[0] and float(table[0].split()[8]) == 1.0  # ARI of the model crop against itself
    assert "\ndecision: " in done.stdout
