"""skoots serve: a real tritonserver on loopback, ready, and gone without orphans."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SKOOTS = str(Path(sys.executable).parent / "skoots")


def stub_processes(repository: Path) -> list[str]:
    """Server and stub processes whose command line names ``repository``."""
    out = subprocess.run(["pgrep", "-af", "triton"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(repository) in line and "pgrep" not in line]


def wait_for_line(process: subprocess.Popen, prefix: str, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith(prefix):
            return line
        if not line and process.poll() is not None:
            raise AssertionError(f"serve exited {process.returncode}: {process.stderr.read() if process.stderr else ''}")
    raise AssertionError(f"no '{prefix}' line within {timeout}s")


@pytest.fixture()
def repository(tmp_path: Path, e2e_repository: Path) -> Path:
    """A private copy, so the processes serving it can be told apart from other servers."""
    pytest.importorskip("pytriton", reason="the server extra is not installed")
    copy = tmp_path / "served_repository"
    shutil.copytree(e2e_repository, copy)
    return copy


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_serve_binds_loopback_and_stops_without_orphans(repository: Path, how: int) -> None:
    process = subprocess.Popen([SKOOTS, "serve", str(repository)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = wait_for_line(process, "grpc ")
        assert line.split()[1].startswith("127.0.0.1:")
        assert any("triton_python_backend_stub" in p for p in stub_processes(repository))
        process.send_signal(how)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    time.sleep(0.5)
    assert stub_processes(repository) == []


def test_killed_parent_leaves_no_server(repository: Path) -> None:
    process = subprocess.Popen([SKOOTS, "serve", str(repository)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_line(process, "grpc ")
    assert len(stub_processes(repository)) >= 2, "server and stub should be running"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 30
    while stub_processes(repository) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert stub_processes(repository) == []


def test_serve_errors_are_one_line(tmp_path: Path) -> None:
    pytest.importorskip("pytriton", reason="the server extra is not installed")
    missing = subprocess.run([SKOOTS, "serve", str(tmp_path / "nothing")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and missing.stderr.startswith("error:") and len(missing.stderr.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    empty = subprocess.run([SKOOTS, "serve", str(tmp_path / "empty")], capture_output=True, text=True, timeout=60)
    assert empty.returncode == 2 and "--backend python" in empty.stderr
