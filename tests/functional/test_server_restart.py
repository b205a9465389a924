"""Server faults mid-run against real tritonservers: killed and restarted, stalled past the
request deadline, one of several killed for good. The client retries with backoff, resends only
the crops not answered — counted by the servers' own statistics — and the labels equal an
undisturbed run's."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import served_inferences, settled_inferences, start_server
from test_resume import CROP, OVERLAP
from test_segment_e2e import CLIENT, volume_and_labels

from skoots_client.tiling import crop_grid
from skoots_export.server import ServerConfig, TritonServer

SHAPE_ZXY = (20, 72, 60)
CROPS = len(crop_grid(SHAPE_ZXY[1:] + SHAPE_ZXY[:1], CROP, OVERLAP))  # 64
WINDOW = 2  # requests in flight per server, one crop each (--batch 1)


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory, e2e_repository: Path) -> tuple[Path, np.ndarray]:
    return volume_and_labels(tmp_path_factory.mktemp("faults"), e2e_repository, SHAPE_ZXY, seed=2)


class Server:
    """A tritonserver this module may kill, stall and start again on the same ports."""

    def __init__(self, repository: Path) -> None:
        self.process = start_server(repository)
        self.config = ServerConfig(repository=repository, grpc_port=self.process.grpc_port,
                                   http_port=self.process.http_port, metrics_port=self.process.metrics_port)
        self.url = self.process.grpc_url
        self.warmup = served_inferences(self.url)  # the model's warm-up requests count too

    def signal(self, sig: int) -> None:
        os.killpg(self.process.pid, sig)  # the server and its Python-backend stub

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.process.stop()

    def restart(self) -> None:
        self.process = TritonServer(self.config, self.process.binary).start()

    def stop(self) -> None:
        self.signal(signal.SIGCONT) if self.process.poll() is None else None
        self.process.stop()


@pytest.fixture(scope="module")
def server(e2e_repository: Path):
    server = Server(e2e_repository)
    yield server
    server.stop()


def start_client(volume: Path, out: Path, *args: str) -> subprocess.Popen:
    quiet = [] if "--summary" in args else ["-q"]
    args = tuple(a for a in args if a != "--summary")
    return subprocess.Popen(
        [CLIENT, "segment", str(volume), "--out", str(out), "--device", "cpu", *quiet, "--batch", "1", "--window", str(WINDOW), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for_answers(url: str, count: int, client: subprocess.Popen) -> int:
    while (answered := served_inferences(url)) < count:
        assert client.poll() is None, client.communicate()
        time.sleep(0.02)
    return answered


@pytest.mark.slow
def test_a_server_killed_and_restarted_mid_run_changes_nothing(server: Server, volume, tmp_path: Path) -> None:
    path, expected = volume
    before = settled_inferences(server.url)
    client = start_client(path, tmp_path / "o.tif", "--url", server.url)  # the default --retry-for outlasts a restart
    answered = wait_for_answers(server.url, before + CROPS // 4, client) - before
    server.kill()
    server.restart()  # a fresh process: its statistics start at zero
    _, stderr = client.communicate(timeout=600)
    assert client.returncode == 0, stderr
    assert stderr == ""
    assert np.array_equal(tifffile.imread(tmp_path / "o.tif"), expected)
    resent = settled_inferences(server.url) - server.warmup
    # The restarted server saw the crops the first one had not answered, and at most the
    # WINDOW whose answers the kill cut off on their way back — no crop answered is sent again.
    assert 0 < resent <= CROPS - answered + WINDOW, (resent, answered)


class StallingLink:
    """A TCP relay in front of a server that can hold every byte for a while: to the client the
    server stops answering — the requests stay open past their deadline — and then carries on.
    (Stopping the server itself with SIGSTOP does not test the client: the wheel's tritonserver
    then dies in its Python backend, SIGSEGV with a boost lock_exception, which is a crash.)"""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.flowing = threading.Event()
        self.flowing.set()
        self.sockets: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self.listener.accept()
            except OSError:
                return
            far = socket.create_connection(self.target)
            self.sockets += [near, far]
            for a, b in ((near, far), (far, near)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                self.flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.flowing.set()
        for s in [self.listener, *self.sockets]:
            s.close()


@pytest.mark.slow
def test_a_server_that_stops_answering_past_the_deadline_is_retried_and_changes_nothing(server: Server, volume, tmp_path: Path) -> None:
    path, expected = volume
    retries = 6
    link = StallingLink(server.url)
    before = settled_inferences(server.url)
    try:
        client = start_client(path, tmp_path / "o.tif", "--url", link.url, "--timeout", "2", "--retries", str(retries), "--summary")
        wait_for_answers(server.url, before + CROPS // 4, client)
        link.flowing.clear()  # nothing gets through: requests in flight pass their 2 s deadline
        time.sleep(6)
        link.flowing.set()
        stdout, stderr = client.communicate(timeout=600)
    finally:
        link.close()
    assert client.returncode == 0, stderr
    assert stderr == ""
    assert np.array_equal(tifffile.imread(tmp_path / "o.tif"), expected)
    resent = int(re.search(r"^resent (\d+) requests after server faults$", stdout, re.MULTILINE).group(1))
    assert resent >= WINDOW, "the requests held past their deadline were sent again"
    executed = settled_inferences(server.url) - before
    # Requests held by the link reach the server late and may be computed although the client
    # gave up on them: beyond one computation per crop, only requests sent again (one crop each).
    assert CROPS <= executed <= CROPS + resent, (executed, resent)


@pytest.mark.slow
def test_with_several_servers_the_run_carries_on_when_one_dies(triton_server, e2e_repository: Path, volume, tmp_path: Path) -> None:
    path, expected = volume
    doomed = Server(e2e_repository)
    healthy_before = settled_inferences(triton_server.grpc_url)
    try:
        client = start_client(path, tmp_path / "o.tif", "--url", doomed.url, "--url", triton_server.grpc_url, "--retries", "1")
        answered = wait_for_answers(doomed.url, doomed.warmup + 6, client) - doomed.warmup
        doomed.kill()
        _, stderr = client.communicate(timeout=600)
    finally:
        doomed.stop()
    assert client.returncode == 0, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: {doomed.url}/skoots dropped out (") and lines[0].endswith(
        "); carrying on with the others"), stderr
    assert np.array_equal(tifffile.imread(tmp_path / "o.tif"), expected)
    healthy = settled_inferences(triton_server.grpc_url) - healthy_before
    # ``answered`` was read just before the kill: up to WINDOW more may have been answered since.
    assert CROPS - answered - WINDOW <= healthy <= CROPS - answered + WINDOW, (healthy, answered)


@pytest.mark.slow
def test_when_retries_run_out_the_run_fails_in_one_line_and_keeps_its_work(server: Server, volume, tmp_path: Path) -> None:
    from test_resume import marks

    path, expected = volume
    out, work = tmp_path / "labels.tif", tmp_path / "labels.tif.work"
    args = ("--url", server.url, "--retries", "1", "--resume")
    client = start_client(path, out, *args)
    while len(marks(work)) < 10 and client.poll() is None:
        time.sleep(0.01)
    server.kill()  # for good, as far as this client knows
    killed = time.monotonic()
    _, stderr = client.communicate(timeout=120)
    assert client.returncode == 2, stderr
    assert time.monotonic() - killed < 20, "one retry after 0.5 s (±50 %), not minutes"
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert re.fullmatch(rf"error: {re.escape(server.url)}/skoots: UNAVAILABLE after 2 attempts in \d+\.\ds — check the server, or raise "
                        rf"--timeout/--retry-for — finished crops are kept in {re.escape(str(work))}; run again with --resume to continue", lines[0])
    assert len(marks(work)) >= 10 and not out.exists()

    server.restart()
    resumed = start_client(path, out, *args)
    _, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr
    assert np.array_equal(tifffile.imread(out), expected)
    assert not work.exists()


@pytest.mark.slow
def test_blockwise_a_server_down_past_the_retry_budget_is_one_line_and_resume_gives_the_undisturbed_labels(
    server: Server, volume, tmp_path: Path
) -> None:
    """Issue 26: the server SIGKILLed for longer than --retry-for, in a blockwise run on a local
    cluster. The task's error comes back from the worker as the one-line error it is (it used to
    come back as a bare Exception with a traceback: its gRPC cause cannot be unpickled)."""
    path, expected = volume
    out, work = tmp_path / "labels.tif", tmp_path / "labels.tif.work"
    args = ("--url", server.url, "--retry-for", "2", "--resume", "--blockwise", "--block", "40,40,16", "--workers", "1")
    before = settled_inferences(server.url)
    client = start_client(path, out, *args)
    wait_for_answers(server.url, before + 10, client)
    server.kill()  # and kept down past the 2 s budget
    killed = time.monotonic()
    _, stderr = client.communicate(timeout=300)
    assert client.returncode == 2, stderr
    assert time.monotonic() - killed < 60, "two seconds of retries, then the run stops"
    assert re.fullmatch(rf"error: {re.escape(server.url)}/skoots: UNAVAILABLE after \d+ attempts in [2-9]\.\ds — check the server, "
                        rf"or raise --timeout/--retry-for — finished blocks are kept in {re.escape(str(work))}; run again with "
                        r"--resume to continue\n", stderr), stderr
    assert work.is_dir() and not out.exists()

    server.restart()
    resumed = start_client(path, out, *args, "--summary")
    stdout, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr
    assert np.array_equal(tifffile.imread(out), expected)
    assert not work.exists()
    assert f"model skoots (python backend) on {server.url}" in stdout.splitlines()
    assert re.search(r"^blockwise: 4 blocks of at most z 20, y 36, x 36 voxels on 1 workers", stdout, re.MULTILINE), stdout
