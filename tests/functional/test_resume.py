"""Crash-resume: a client killed with SIGKILL, at any moment or in the middle of a write, and
started again with ``--resume`` finishes with the labels of an undisturbed run, inferring again
only what it had not saved."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import settled_inferences
from test_segment_e2e import CLIENT, blobs_volume

import skoots_client
from skoots_client.tiling import crop_grid
from skoots_client.workdir import MANIFEST, Piece, parse_record

CROP, OVERLAP = (24, 24, 8), (4, 4, 2)
WINDOW, BATCH = 2, 1
# Crops a SIGKILL can cost (answered or asked for, not yet saved), in batches: WINDOW requests at
# the server, WINDOW answers queued for the consumer, 1 being stitched, and up to 5 with the
# work directory's writer (its queue of 2 and a group it drains from a full queue, 3).
IN_FLIGHT = (2 * WINDOW + 6) * BATCH


def grid_of(volume: Path):
    z, x, y = tifffile.TiffFile(volume).series[0].shape
    return crop_grid((x, y, z), CROP, OVERLAP)


def make_volume(tmp_path_factory: pytest.TempPathFactory, e2e_repository: Path, shape_zxy) -> tuple[Path, np.ndarray]:
    """A volume and its labels from an undisturbed run (embedded: bitwise equal to the served
    one, see test_segment_e2e)."""
    folder = tmp_path_factory.mktemp("resume")
    tifffile.imwrite(folder / "v.tif", blobs_volume(shape_zxy, seed=5))
    skoots_client.segment(folder / "v.tif", out=folder / "expected.tif", repository=e2e_repository, device="cpu", quiet=True,
                          tile="crop")  # many crops to kill a run among
    labels = tifffile.imread(folder / "expected.tif")
    assert labels.max() > 5
    return folder / "v.tif", labels


@pytest.fixture(scope="module")
def large(tmp_path_factory, e2e_repository):
    return make_volume(tmp_path_factory, e2e_repository, (20, 72, 60))  # 64 crops


@pytest.fixture(scope="module")
def small(tmp_path_factory, e2e_repository):
    return make_volume(tmp_path_factory, e2e_repository, (16, 60, 52))  # 36 crops


def marks(work: Path) -> dict[int, int]:
    """Valid manifest records: crop index → CRC of its data."""
    path = work / MANIFEST
    return dict(r for r in map(parse_record, path.read_bytes().splitlines()) if r) if path.exists() else {}


def assert_every_mark_is_backed_by_its_data(work: Path, volume: Path) -> None:
    """The manifest never marks a crop whose chunks are not fully written."""
    import zarr

    grid = grid_of(volume)
    skeleton, vectors = (zarr.open_array(str(work / name), mode="r") for name in ("skeleton", "vectors"))
    for index, crc in marks(work).items():
        owned = tuple(slice(0, hi - lo) for lo, hi in grid[index].owned)
        piece = Piece(skeleton[(index, *owned)], vectors[(index, slice(None), *owned)])
        assert piece.checksum() == crc, f"crop {index} is marked done but its data is not what was saved"


def segment_argv(volume: Path, out: Path, *extra: str) -> list[str]:
    return [CLIENT, "segment", str(volume), "--out", str(out), "--device", "cpu", "--resume", "-q", "--tile", "crop", *extra]


@pytest.mark.slow
def test_sigkill_at_any_moment_then_resume_gives_the_undisturbed_labels(triton_server, large, tmp_path: Path) -> None:
    volume, expected = large
    crops = len(grid_of(volume))
    url = triton_server.grpc_url
    out, work = tmp_path / "labels.tif", tmp_path / "labels.tif.work"
    argv = segment_argv(volume, out, "--url", url, "--window", str(WINDOW), "--batch", str(BATCH))
    rng = random.Random(6)
    # Kill while starting (before the work directory exists), then once the manifest holds about
    # 15%, 45% and 75% of the crops plus a random few milliseconds: wherever the client is then.
    schedule = [None, 0.15, 0.45, 0.75]
    saved = 0
    for when in schedule:
        before = settled_inferences(url)
        client = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if when is None:
            time.sleep(rng.uniform(0.05, 0.4))
        else:
            while len(marks(work)) < when * crops and client.poll() is None:
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.05))
        assert client.poll() is None, client.communicate()
        client.send_signal(signal.SIGKILL)
        client.communicate()
        inferred = settled_inferences(url) - before
        now = len(marks(work))
        assert now >= saved, "marks are never lost"
        # + WINDOW: stragglers of the previous kill the settling missed may land in this count.
        assert inferred - (now - saved) <= IN_FLIGHT + WINDOW * BATCH, f"lost {inferred - (now - saved)} answered crops to one kill"
        if work.exists():
            assert_every_mark_is_backed_by_its_data(work, volume)
        saved = now
    assert 0 < saved < crops

    before = settled_inferences(url)
    finish = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert finish.returncode == 0, finish.stderr
    # Exactly the crops not marked, plus any straggler the last kill left at the server.
    assert crops - saved <= settled_inferences(url) - before <= crops - saved + WINDOW * BATCH, "only crops not marked were inferred again"
    assert np.array_equal(tifffile.imread(out), expected)
    assert not work.exists(), "the work directory is removed once the labels are written"


# Run the client with one write torn in half by a SIGKILL: the Kth chunk file Zarr writes, or the
# Kth manifest record. (Zarr itself renames chunks into place; this tears one in place, as a
# store without atomic writes would, to show the manifest does not rely on it.)
TEAR = r"""
import os, re, signal, sys
what, k = sys.argv[1], int(sys.argv[2])
calls = [0]

def die_halfway(path, data):
    with open(path, "wb") as f:
        f.write(bytes(data)[: len(data) // 2])
        f.flush()
        os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)

if what == "chunk":
    import zarr.storage._local as local
    put = local._put
    def torn_put(path, value, exclusive=False):
        if re.fullmatch(r"c(\.\d+)+", path.name) and path.parent.name == "vectors":
            calls[0] += 1
            if calls[0] == k:
                die_halfway(path, value.as_buffer_like())
        return put(path, value, exclusive=exclusive)
    local._put = torn_put
else:
    write = os.write
    def torn_write(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("manifest.log"):
            calls[0] += 1
            if calls[0] == k:
                written = write(fd, bytes(data)[: len(data) // 2 + 1])
                os.fsync(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        return write(fd, data)
    os.write = torn_write

from skoots_client.cli import main
sys.argv = ["skoots-client", *sys.argv[3:]]
main()
"""


@pytest.mark.parametrize("what,k", [("chunk", 7), ("record", 3)])
def test_a_kill_in_the_middle_of_a_write_never_marks_a_torn_crop(what: str, k: int, e2e_repository: Path, small, tmp_path: Path) -> None:
    volume, expected = small
    out, work = tmp_path / "labels.tif", tmp_path / "labels.tif.work"
    argv = segment_argv(volume, out, "-r", str(e2e_repository), "--batch", "2")
    killed = subprocess.run([sys.executable, "-c", TEAR, what, str(k), *argv[1:]], capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not out.exists() and work.is_dir()
    assert_every_mark_is_backed_by_its_data(work, volume)
    if what == "record":
        assert not (work / MANIFEST).read_bytes().endswith(b"\n"), "the last record is torn"
    before = marks(work)
    if what == "record":  # issue 17: a plain re-run said nothing of the crops kept beside it
        warnings: list[str] = []
        skoots_client.segment(volume, out=out, repository=e2e_repository, device="cpu", quiet=True, warn=warnings.append, tile="crop")
        assert warnings == [f"{work} is a work directory left by an earlier run; this run (without resume=True) neither uses "
                            "nor removes it: pass resume=True to continue from its finished crops, or remove it"]
        assert marks(work) == before and np.array_equal(tifffile.imread(out), expected)
        out.unlink()

    resumed = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert np.array_equal(tifffile.imread(out), expected)
    assert not work.exists()
    assert len(before) < len(grid_of(volume))
