"""skoots serve: a real tritonserver on loopback, ready, and gone without orphans; a busy port,
another server on our port and a server that dies are one line each."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skoots_export import server as server_module
from skoots_export.server import OWNER_FILE, WORKDIR_PREFIX, ServerConfig, TritonServer, remove_stale_workdirs

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


def workdirs_of(pid: int) -> list[Path]:
    """The private folders whose ``owner.pid`` names process ``pid``."""
    import tempfile

    return [p for p in Path(tempfile.gettempdir()).glob(WORKDIR_PREFIX + "*")
            if (p / OWNER_FILE).is_file() and (p / OWNER_FILE).read_text().split()[0] == str(pid)]


def test_killed_parent_leaves_no_server_and_its_folder_goes_at_the_next_start(repository: Path) -> None:
    process = subprocess.Popen([SKOOTS, "serve", str(repository)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_line(process, "grpc ")
    assert len(stub_processes(repository)) >= 2, "server and stub should be running"
    [folder] = workdirs_of(process.pid)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 30
    while stub_processes(repository) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert stub_processes(repository) == []
    assert folder.is_dir(), "a SIGKILL leaves the folder behind"
    assert folder in remove_stale_workdirs()  # what the next start does first
    assert not folder.exists()


def test_only_folders_of_ended_owners_are_removed(tmp_path: Path) -> None:
    ended = subprocess.Popen(["true"])
    ended.wait()

    def folder(name: str, record: str | None) -> Path:
        path = tmp_path / f"{WORKDIR_PREFIX}{name}"
        (path / "backends").mkdir(parents=True)
        if record is not None:
            (path / OWNER_FILE).write_text(record)
        return path

    gone = folder("gone", f"{ended.pid}")
    reused = folder("reused", f"{os.getpid()} 1")  # our pid, another start time: the owner that had it ended
    alive = folder("alive", server_module.owner_record())
    alive_pid_only = folder("alive-pid-only", str(os.getpid()))
    being_made = folder("being-made", None)
    half_written = folder("half-written", "")
    target = folder("target", str(ended.pid))
    link = tmp_path / f"{WORKDIR_PREFIX}link"
    link.symlink_to(target.rename(tmp_path / "elsewhere"))

    assert sorted(remove_stale_workdirs(tmp_path)) == sorted([gone, reused])
    assert not gone.exists() and not reused.exists()
    assert all(p.is_dir() for p in (alive, alive_pid_only, being_made, half_written, tmp_path / "elsewhere"))
    assert link.is_symlink()


def run_serve(repository: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([SKOOTS, "serve", str(repository), *args], capture_output=True, text=True, timeout=timeout)


def assert_one_line(result: subprocess.CompletedProcess, pattern: str, code: int = 2) -> None:
    """Exit ``code``, no banner, one ``error:`` line on stderr matching ``pattern``."""
    import re

    assert result.returncode == code, result.stdout + result.stderr
    assert result.stdout == "", "no banner"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(pattern, lines[0]), f"{pattern!r} not in {lines[0]!r}"


@pytest.mark.parametrize("option,label", [("--grpc-port", "gRPC"), ("--http-port", "HTTP"), ("--metrics-port", "metrics")])
def test_a_port_held_by_a_plain_socket_is_one_line_before_any_banner(repository: Path, option: str, label: str) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = run_serve(repository, option, str(port), timeout=60)
    assert_one_line(result, rf"^error: {label} port {port} on 127\.0\.0\.1 is in use by another process — pick another with {option} \(0 picks a free one\)$")
    assert stub_processes(repository) == []


def test_one_port_given_twice_is_one_line(repository: Path) -> None:
    port = str(server_module.free_port())
    assert_one_line(run_serve(repository, "--grpc-port", port, "--metrics-port", port, timeout=60),
                    rf"^error: --grpc-port and --metrics-port are both {port}; give each its own port \(0 picks a free one\)$")


@pytest.mark.parametrize("option,attribute", [("--grpc-port", "grpc_port"), ("--http-port", "http_port")])
def test_a_port_held_by_another_tritonserver_is_one_line(repository: Path, triton_server, option: str, attribute: str) -> None:
    port = getattr(triton_server, attribute)
    assert_one_line(run_serve(repository, option, str(port), timeout=60), rf"port {port} on 127\.0\.0\.1 is in use by another process — pick another with {option}")
    assert triton_server.poll() is None


def pass_the_port_check(monkeypatch: pytest.MonkeyPatch, port: int, times: int | None = None) -> None:
    """The race no check before the start can close: ``port`` is free when checked and taken
    when the server binds it (here: taken all along, and the check fooled ``times`` times, or always)."""
    real, fooled = server_module.port_in_use, []

    def port_in_use(host: str, candidate: int) -> bool:
        if candidate == port and (times is None or len(fooled) < times):
            fooled.append(candidate)
            return False
        return real(host, candidate)

    monkeypatch.setattr(server_module, "port_in_use", port_in_use)


def test_readiness_is_not_fooled_by_another_server_on_the_port_and_a_port_taken_is_picked_again(
    repository: Path, triton_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another tritonserver answers ready on the gRPC port we picked: that is not our server
    being ready. Ours fails to bind it; the start picks free ports again and succeeds."""
    ours = TritonServer(ServerConfig(repository=repository))
    ours.grpc_port = triton_server.grpc_port  # as if free_port() had picked it just before the other server bound it
    pass_the_port_check(monkeypatch, triton_server.grpc_port, times=1)
    try:
        ours.start(timeout=240)
        assert ours.grpc_port != triton_server.grpc_port
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(ours.grpc_url)
        assert client.get_server_metadata().name == ours.server_id != triton_server.server_id
        client.close()
    finally:
        ours.stop()


def test_a_server_that_dies_while_starting_says_why(repository: Path) -> None:
    (repository / "skoots" / "1" / "model.py").write_text(
        "class TritonPythonModel:\n    def initialize(self, args):\n        raise RuntimeError('weights file is damaged')\n"
    )
    assert_one_line(
        run_serve(repository),
        r"^error: tritonserver exited with code 1 while starting: failed to load 'skoots' version 1: .*RuntimeError: weights file is damaged$",
    )
    assert stub_processes(repository) == []


def test_a_server_that_dies_while_serving_says_so(repository: Path) -> None:
    process = subprocess.Popen([SKOOTS, "serve", str(repository)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_line(process, "segment with")
        [server] = [line.split()[0] for line in stub_processes(repository) if "tritonserver " in line]
        os.kill(int(server), signal.SIGKILL)
        assert process.wait(timeout=60) == 1
        lines = process.stderr.read().splitlines()
    finally:
        if process.poll() is None:
            process.kill()
    assert len(lines) == 1 and lines[0].startswith("error: tritonserver was killed by SIGKILL while serving"), lines


def test_serve_errors_are_one_line(tmp_path: Path) -> None:
    pytest.importorskip("pytriton", reason="the server extra is not installed")
    missing = subprocess.run([SKOOTS, "serve", str(tmp_path / "nothing")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and missing.stderr.startswith("error:") and len(missing.stderr.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    empty = subprocess.run([SKOOTS, "serve", str(tmp_path / "empty")], capture_output=True, text=True, timeout=60)
    assert empty.returncode == 2 and "--backend python" in empty.stderr


# Lines of real tritonserver 2.51 logs (the nvidia-pytriton wheel's), as the failures above wrote them.
_NOISE = 'E1130 09:31:58.632626 4762 server.cc:241] "CudaDriverHelper has not been initialized."'
_TABLE = "| cache_enabled                    | 0 |"


@pytest.mark.parametrize(
    "lines,reason",
    [
        ([_NOISE, _TABLE, "E1130 09:32:05.406406378    4762 chttp2_server.cc:1060]                UNKNOWN:No address added out of total 1 resolved for '127.0.0.1:38621' {...}",
          '''E1130 09:32:05.412387 4762 main.cc:245] "failed to start GRPC service: Unavailable - Socket '127.0.0.1:38621' already in use "'''],
         "failed to start GRPC service: Unavailable - Socket '127.0.0.1:38621' already in use"),
        ([_NOISE, 'I1130 09:33:51.161765 6881 pb_stub.cc:366] "Failed to initialize Python stub: RuntimeError: damaged\\n\\nAt:\\n  model.py(3): initialize\\n"',
          'E1130 09:33:51.242079 6881 backend_model.cc:692] "ERROR: Failed to create instance: RuntimeError: damaged\\n\\nAt:\\n  model.py(3): initialize\\n"',
          'E1130 09:33:51.242260 6881 model_lifecycle.cc:642] "failed to load \'skoots\' version 1: Internal: RuntimeError: damaged\\n\\nAt:\\n  model.py(3): initialize\\n"',
          _TABLE, "error: creating server: Internal - failed to load all models"],
         "failed to load 'skoots' version 1: Internal: RuntimeError: damaged"),
        ([_NOISE, _TABLE, "error: creating server: Invalid argument - --model-repository must be specified"],
         "creating server: Invalid argument - --model-repository must be specified"),
        ([_NOISE, _TABLE, 'I1130 09:54:29.515810 21410 http_server.cc:362] "Started Metrics Service at 127.0.0.1:34879"'], None),
    ],
    ids=["port-taken", "model-load", "exit-error", "no-error"],
)
def test_the_reason_is_the_line_of_the_log_that_says_why(lines: list[str], reason: str | None) -> None:
    assert server_module.log_reason(lines) == reason
