"""Blockwise runs stopped by faults: Ctrl-C, workers that die, a corrupt input chunk. Ctrl-C is
one ``error:`` line with the ``--resume`` hint and no worker traceback; blocks that fail are one
line each (name, region, error) after the other blocks finished, which ``--resume`` keeps; a
worker lost and replaced mid-run is named in the summary, and the labels do not change."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from test_segment_e2e import CLIENT, volume_and_labels

from skoots_client.blockwise.store import BlockStore
from skoots_client.volume_read import read_labels

SHAPE_ZXY = (20, 72, 60)  # 64 crops of the e2e model: 4 blocks of 36x36x20 with --block 40,40,16
ARGS = ("--device", "cpu", "--blockwise", "--block", "40,40,16", "--workers", "2", "--batch", "1")


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory, e2e_repository: Path) -> tuple[Path, np.ndarray]:
    return volume_and_labels(tmp_path_factory.mktemp("faults"), e2e_repository, SHAPE_ZXY, seed=3)


@pytest.fixture(scope="module")
def tall_volume(tmp_path_factory: pytest.TempPathFactory, e2e_repository: Path) -> tuple[Path, np.ndarray]:
    """Tall enough that the client's intensity sample skips some chunks: z 80, y 36, x 36."""
    return volume_and_labels(tmp_path_factory.mktemp("tall"), e2e_repository, (80, 36, 36), seed=4)


def start(volume: Path, out: Path, repository: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The client in its own process group, as a terminal runs it: Ctrl-C signals the group. With
    SIGINT's default action: a shell that starts the suite in the background ignores SIGINT, and
    children inherit that (the run would then finish instead of stopping)."""
    return subprocess.Popen([CLIENT, "segment", str(volume), "--out", str(out), "-r", str(repository), *ARGS, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, **(env or {})}, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def workers_of(client: subprocess.Popen) -> list[int]:
    """The Dask worker processes the client's local cluster spawned."""
    import psutil

    found = []
    for child in psutil.Process(client.pid).children(recursive=True):
        try:
            command = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "spawn_main" in command and "resource_tracker" not in command:
            found.append(child.pid)
    return found


def wait_for_workers(client: subprocess.Popen, work: Path) -> list[int]:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert client.poll() is None, client.communicate()
        pids = workers_of(client)
        if len(pids) == 2 and work.is_dir():
            time.sleep(2)  # the infer tasks are submitted and running
            return workers_of(client)
        time.sleep(0.05)
    raise AssertionError("the workers never started")


@pytest.mark.slow
def test_ctrl_c_is_one_line_with_the_resume_hint_and_no_worker_traceback(volume, e2e_repository: Path, tmp_path: Path) -> None:
    path, _ = volume
    out, work = tmp_path / "o.tif", tmp_path / "o.tif.work"
    client = start(path, out, e2e_repository, "--resume", "-q")
    wait_for_workers(client, work)
    os.killpg(client.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the client and its workers
    stdout, stderr = client.communicate(timeout=120)
    assert client.returncode == 130, stderr
    assert stderr == f"error: interrupted — finished blocks are kept in {work}; run again with --resume to continue\n"
    assert stdout == "" and work.is_dir() and not out.exists()


@pytest.mark.slow
def test_workers_killed_past_the_allowed_failures_name_their_blocks(volume, e2e_repository: Path, tmp_path: Path) -> None:
    path, _ = volume
    out, work = tmp_path / "o.tif", tmp_path / "o.tif.work"
    client = start(path, out, e2e_repository, "-q", env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"})
    for pid in wait_for_workers(client, work):
        os.kill(pid, signal.SIGKILL)  # both: one of them was running an infer task
    stdout, stderr = client.communicate(timeout=120)
    assert client.returncode == 2, stderr
    lines = stderr.splitlines()
    assert re.fullmatch(rf"error: \d of 4 infer blocks failed; the finished blocks are kept in {re.escape(str(work))}:", lines[0]), stderr
    killed = [line for line in lines[1:-2] if line.startswith("  infer block ")]
    assert killed and len(killed) == len(lines) - 3, stderr
    for line in killed:
        assert re.fullmatch(r"  infer block \d\.\d\.\d \(z \d+:\d+, y \d+:\d+, x \d+:\d+\): KilledWorker: the workers running it "
                            r"died 1 time \(out of memory\?\) — pass a smaller --block or give the workers more memory", line), line
    assert lines[-1].startswith("fix the cause, then run the same command again with --resume"), stderr
    assert stdout == "" and work.is_dir() and not out.exists()  # kept for --resume, without it: blocks failed


def zarr_copy(tif: Path, folder: Path) -> Path:
    """The volume as a Zarr v3 array of 2 x 16 x 16 chunks (zstd)."""
    import zarr

    path = folder / "v.zarr"
    zarr.create_array(str(path), data=tifffile.imread(tif), chunks=(2, 16, 16))
    return path


@pytest.mark.slow
def test_a_corrupt_chunk_fails_its_block_only_and_resume_redoes_just_that(tall_volume, e2e_repository: Path, tmp_path: Path) -> None:
    tif, expected = tall_volume
    path = zarr_copy(tif, tmp_path)
    # z 40:42, y 0:16, x 0:16: between the windows the client samples (z 21:37, 43:59), read by the workers only
    chunk = path / "c" / "20" / "0" / "0"
    good = chunk.read_bytes()
    chunk.write_bytes(b"\xff" * len(good))  # bytes overwritten, the file still there: not --fill-missing's business
    out, work = tmp_path / "o.zarr", tmp_path / "o.zarr.work"
    failed = subprocess.run([CLIENT, "segment", str(path), "--out", str(out), "-r", str(e2e_repository), *ARGS, "-q"],
                            capture_output=True, text=True, timeout=300)
    assert failed.returncode == 2 and failed.stdout == "", failed.stderr
    assert failed.stderr.splitlines() == [
        f"error: 1 of 5 infer blocks failed; the finished blocks are kept in {work}:",
        f"  infer block 0.0.2 (z 34:50, y 0:36, x 0:36): InputError: {path}: cannot read data (Error reading local file "
        f'"{chunk}": ZSTD_decompressStream() failed: Unknown frame descriptor; at byte 0; at uncompressed byte 0)',
        "blocks done / failed / remaining: infer 4 / 1 / 0, label 0 / 0 / 5, assign 0 / 0 / 5, write 0 / 0 / 5",
        "fix the cause, then run the same command again with --resume: it redoes only the failed and unfinished blocks",
    ], failed.stderr
    assert sorted(BlockStore(work).done("infer")) == ["0.0.0", "0.0.1", "0.0.3", "0.0.4"]  # never 0.0.2
    chunk.write_bytes(good)
    resumed = subprocess.run([CLIENT, "segment", str(path), "--out", str(out), "-r", str(e2e_repository), *ARGS, "--resume"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert re.search(r"^resumed 4 infer blocks from the work directory$", resumed.stdout, re.MULTILINE), resumed.stdout
    assert re.search(r"^blockwise: 5 blocks .*; infer \d", resumed.stdout, re.MULTILINE), resumed.stdout  # one inferred: a time
    assert "blocks done / failed / remaining: infer 5 / 0 / 0, label 5 / 0 / 0, assign 5 / 0 / 0, write 5 / 0 / 0" in resumed.stdout
    assert np.array_equal(read_labels(out), expected) and not work.exists()


@pytest.mark.slow
def test_a_worker_lost_mid_run_is_in_the_summary_and_changes_nothing(volume, e2e_repository: Path, tmp_path: Path) -> None:
    path, expected = volume
    out, work = tmp_path / "o.tif", tmp_path / "o.tif.work"
    client = start(path, out, e2e_repository)
    os.kill(wait_for_workers(client, work)[0], signal.SIGKILL)  # the scheduler runs its tasks again elsewhere
    stdout, stderr = client.communicate(timeout=600)
    assert client.returncode == 0, stderr
    assert np.array_equal(tifffile.imread(out), expected)
    assert re.search(r"^lost 1 worker; \d+ tasks? ran again on the others$", stdout, re.MULTILINE), stdout
    assert re.search(r"^blockwise: 4 blocks of at most z 20, y 36, x 36 voxels on 2 workers", stdout, re.MULTILINE), stdout
    assert "Traceback" not in stderr
