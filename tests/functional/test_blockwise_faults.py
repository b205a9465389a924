"""Blockwise runs stopped by faults on the client's side: Ctrl-C, and workers that die. Each
stop is one ``error:`` line with the ``--resume`` hint and no worker traceback; a worker lost
and replaced mid-run is named in the summary, and the labels do not change."""

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

SHAPE_ZXY = (20, 72, 60)  # 64 crops of the e2e model: 4 blocks of 36x36x20 with --block 40,40,16
ARGS = ("--device", "cpu", "--blockwise", "--block", "40,40,16", "--workers", "2", "--batch", "1")


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory, e2e_repository: Path) -> tuple[Path, np.ndarray]:
    return volume_and_labels(tmp_path_factory.mktemp("faults"), e2e_repository, SHAPE_ZXY, seed=3)


def start(volume: Path, out: Path, repository: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The client in its own process group, as a terminal runs it: Ctrl-C signals the group."""
    return subprocess.Popen([CLIENT, "segment", str(volume), "--out", str(out), "-r", str(repository), *ARGS, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, **(env or {})})


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
def test_workers_killed_past_the_allowed_failures_is_one_line(volume, e2e_repository: Path, tmp_path: Path) -> None:
    path, _ = volume
    out, work = tmp_path / "o.tif", tmp_path / "o.tif.work"
    client = start(path, out, e2e_repository, "-q", env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"})
    for pid in wait_for_workers(client, work):
        os.kill(pid, signal.SIGKILL)  # both: one of them was running an infer task
    stdout, stderr = client.communicate(timeout=120)
    assert client.returncode == 2, stderr
    assert re.fullmatch(r"error: Dask workers kept dying on infer blocks \(.+\) — out of memory\? Give the workers more memory "
                        r"or pass a smaller --block — with --resume a run keeps its finished blocks and a rerun continues from them\n",
                        stderr), stderr
    assert stdout == "" and not work.exists() and not out.exists()


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
