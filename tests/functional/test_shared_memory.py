"""``--shared-memory system`` against a real tritonserver on 127.0.0.1: the same labels as over
gRPC, and no region left behind — on the server or in /dev/shm — after a run, a failed run
or Ctrl-C; a server that is not on this machine is refused in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from test_segment_e2e import blobs_volume

import skoots_client
from skoots_client.errors import InputError
from skoots_client.progress import Cancelled

CLIENT = str(Path(sys.executable).parent / "skoots-client")


def ours_in_dev_shm() -> list[str]:
    return sorted(p.name for p in Path("/dev/shm").glob("skoots-*"))


def registered(url: str) -> list[str]:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        status = client.get_system_shared_memory_status(as_json=True)
    finally:
        client.close()
    return sorted(region["name"] for region in status.get("regions", {}).values()) if isinstance(status.get("regions"), dict) \
        else sorted(region["name"] for region in status.get("regions", []))


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("shm") / "blobs.tif"
    tifffile.imwrite(path, blobs_volume((20, 60, 52)))
    return path


def test_shared_memory_gives_the_grpc_labels_bitwise_and_leaves_no_region(triton_server, volume: Path) -> None:
    before = ours_in_dev_shm()
    grpc = skoots_client.segment(volume, url=triton_server.grpc_url, device="cpu", quiet=True)
    seen: list[list[str]] = []

    def progress(stage: str, done: int, total: int) -> None:
        if done:
            seen.append(registered(triton_server.grpc_url))

    shm = skoots_client.segment(volume, url=triton_server.grpc_url, device="cpu", quiet=True, shared_memory="system", progress=progress)
    assert grpc.labels.max() > 5 and np.array_equal(grpc.labels, shm.labels) and grpc.labels.dtype == shm.labels.dtype
    assert any(names for names in seen), "the regions were registered while the run ran"
    assert registered(triton_server.grpc_url) == []
    assert ours_in_dev_shm() == before


def test_a_failed_run_leaves_no_region(triton_server, volume: Path) -> None:
    before = ours_in_dev_shm()
    seen: list[list[str]] = []

    def cancel_after_the_first_answer(stage: str, done: int, total: int) -> bool | None:
        if done == 0:
            return None
        seen.append(ours_in_dev_shm())
        return False

    with pytest.raises(Cancelled):
        skoots_client.segment(volume, url=triton_server.grpc_url, device="cpu", quiet=True, shared_memory="system",
                              progress=cancel_after_the_first_answer)
    assert seen and seen[0] != before, "the run had its regions when it failed"
    assert registered(triton_server.grpc_url) == []
    assert ours_in_dev_shm() == before


def test_ctrl_c_leaves_no_region(triton_server, tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "v.tif", blobs_volume((40, 512, 512)))  # long enough that the signal lands mid-run
    before = ours_in_dev_shm()
    run = subprocess.Popen([CLIENT, "segment", str(tmp_path / "v.tif"), "--url", triton_server.grpc_url, "--shared-memory", "system",
                            "--out", str(tmp_path / "l.tif"), "--device", "cpu", "--batch", "1", "-q"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           # a shell that starts the tests in the background ignores SIGINT, and children inherit that
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while ours_in_dev_shm() == before and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(3)  # past the first answers (numba loads its cached kernels there: a signal inside that load is numba's to survive)
    assert run.poll() is None, f"the run ended before it could be interrupted: {run.communicate()}"
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=60)
    assert run.returncode != 0 and "Traceback" not in err, err
    assert registered(triton_server.grpc_url) == []
    assert ours_in_dev_shm() == before


def test_a_server_not_on_this_machine_is_refused_in_one_line(volume: Path) -> None:
    with pytest.raises(InputError, match="not a loopback address.*drop shared_memory="):
        skoots_client.segment(volume, url="10.1.2.3:8001", device="cpu", quiet=True, shared_memory="system")
    run = subprocess.run([CLIENT, "segment", str(volume), "--url", "grpc://example.org:8001", "--shared-memory", "system"],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert [line for line in run.stderr.splitlines() if line.strip()] == [
        "error: --shared-memory system needs the server on this machine, and example.org:8001 is not a loopback address — "
        "run the client beside the server with --url 127.0.0.1:PORT (or localhost), or drop --shared-memory"
    ]
    with pytest.raises(InputError, match="give url="):
        skoots_client.segment(volume, device="cpu", quiet=True, shared_memory="system")


def test_bench_loads_through_shared_memory_and_leaves_no_region(triton_server) -> None:
    from skoots_client.bench import LoadSettings, bench

    before = ours_in_dev_shm()
    result = bench(triton_server.grpc_url, concurrency=[2], batch=[2], load=LoadSettings(duration=1.0, warmup=0.2, max_windows=3, shared_memory="system"))
    assert result.best.requests > 0
    assert registered(triton_server.grpc_url) == []
    assert ours_in_dev_shm() == before
    run = subprocess.run([CLIENT, "bench", "--url", "10.1.2.3:8001", "--shared-memory", "system"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stderr.startswith("error: --shared-memory system needs the server on this machine") and "Traceback" not in run.stderr
