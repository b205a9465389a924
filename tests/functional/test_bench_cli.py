"""``skoots-client bench`` against a real tritonserver on 127.0.0.1 (tiny model, short windows)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skoots_client.bench import GRPC_PREFIX, LoadSettings, bench, message_bytes
from skoots_client.model_source import TritonEndpoint

CLIENT = str(Path(sys.executable).parent / "skoots-client")
SHORT = ["--duration", "0.3", "--warmup", "0.1", "--max-windows", "3", "--quiet"]


def run_bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([CLIENT, "bench", *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, "COLUMNS": "200"})


def test_table_has_a_row_per_setting(triton_server) -> None:
    result = run_bench("--url", triton_server.grpc_url, "--concurrency", "1,2", "--batch", "1,4", *SHORT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    header = lines[2].split()
    assert header[:5] == ["batch", "conc", "proc", "crops/s", "Mvox/s"] and "p99" in header and "infer" in header
    rows = [line.split() for line in lines[3:]]
    assert [(r[0], r[1]) for r in rows] == [("1", "1"), ("1", "2"), ("4", "1"), ("4", "2")]
    assert all(float(r[3]) > 0 for r in rows)
    assert "crop z 8, y 24, x 24" in lines[0]  # the runtime's (24, 24, 8), as napari names the axes


def test_json_reports_every_figure(triton_server) -> None:
    result = run_bench("--url", triton_server.grpc_url, "--concurrency", "2", "--json", *SHORT)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["crop"] == [24, 24, 8] and report["max_batch_size"] == 4
    (setting,) = report["settings"]
    assert setting["batch"] == 4, "the default batch is the model's max_batch_size"
    assert setting["concurrency"] == 2 and setting["in_flight"] == 2 and setting["windows"] == 3
    assert setting["crops_per_s"] > 0 and setting["requests"] >= 3 * 3
    assert setting["mvoxels_per_s"] == pytest.approx(setting["crops_per_s"] * 24 * 24 * 8 / 1e6)
    latency = setting["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p95"] <= latency["p99"]
    assert set(setting["client_ms"]) == {"serialise", "send_receive", "deserialise"}
    assert all(v > 0 for v in setting["client_ms"].values())
    server = setting["server_ms"]
    assert set(server) == {"request", "queue", "compute_input", "compute_infer", "compute_output"}
    assert 0 < server["compute_infer"] <= server["request"]
    # A request's time in the server is part of the client's send+receive.
    assert server["request"] < setting["client_ms"]["send_receive"] * 1.05
    assert 9.0 < setting["wire_bytes_per_voxel"] < 9.1
    assert isinstance(setting["stable"], bool)


# perf_analyzer 2.41's `-f FILE` header in concurrency mode, as it wrote it against this model
# (times in whole µs); in request-rate mode the first column is "Request Rate".
PERF_ANALYZER_HEADER = (
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
    "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency"
)


def test_csv_is_perf_analyzers(triton_server, tmp_path: Path) -> None:
    """--csv FILE: perf_analyzer's header and units, its rows sorted by throughput; the table still
    prints. The figures are the JSON's, in µs."""
    path = tmp_path / "bench.csv"
    result = run_bench("--url", triton_server.grpc_url, "--concurrency", "1,3", "--batch", "2", "--csv", str(path), *SHORT)
    assert result.returncode == 0, result.stderr
    assert "crops/s" in result.stdout, "the table still goes to stdout"
    header, *lines = path.read_text().splitlines()
    assert header == PERF_ANALYZER_HEADER
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert sorted(r["Concurrency"] for r in rows) == ["1", "3"]
    throughputs = [float(r["Inferences/Second"]) for r in rows]
    assert throughputs == sorted(throughputs) and throughputs[0] > 0, "sorted by throughput, as perf_analyzer sorts"
    for row in rows:
        us = {k: int(v) for k, v in row.items() if k not in ("Concurrency", "Inferences/Second")}
        assert all(v >= 0 for v in us.values())
        assert 0 < us["p50 latency"] <= us["p90 latency"] <= us["p95 latency"] <= us["p99 latency"]
        assert us["Server Compute Infer"] > 0
        assert 1000 < us["p50 latency"] < 60_000_000, "microseconds: a tiny crop takes over a millisecond"
    printed = run_bench("--url", triton_server.grpc_url, "--concurrency", "1", "--batch", "2", "--csv", "-", *SHORT)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.splitlines()[0] == PERF_ANALYZER_HEADER and len(printed.stdout.splitlines()) == 2


@pytest.mark.parametrize("distribution", ["constant", "poisson"])
def test_request_rate_sends_at_the_rate(triton_server, tmp_path: Path, distribution: str) -> None:
    """--request-rate 20 on a light load (batch 1, ~10 ms per request): the server answers 20
    requests a second, scheduled whatever the answers; the CSV's first column is the rate."""
    path = tmp_path / "rate.csv"
    result = run_bench("--url", triton_server.grpc_url, "--request-rate", "20", "--request-distribution", distribution,
                       "--batch", "1", "--duration", "2", "--warmup", "0.5", "--max-windows", "3", "--quiet", "--json",
                       "--csv", str(path))
    assert result.returncode == 0, result.stderr
    (setting,) = json.loads(result.stdout)["settings"]
    assert setting["request_rate"] == 20 and setting["batch"] == 1
    # Over ~6 s: constant, within a request or two; Poisson (seeded), within 3.3 standard deviations.
    assert setting["crops_per_s"] == pytest.approx(20, rel=0.1 if distribution == "constant" else 0.3)
    (row,) = csv.DictReader(io.StringIO(path.read_text()))
    assert row["Request Rate"] == "20" and float(row["Inferences/Second"]) == pytest.approx(setting["crops_per_s"], rel=1e-5)


def test_plot_draws_throughput_and_p99(triton_server, tmp_path: Path) -> None:
    import matplotlib.image

    plot = tmp_path / "bench.png"
    result = run_bench("--url", triton_server.grpc_url, "--concurrency", "1,2", "--batch", "1,4", "--plot", str(plot), *SHORT)
    assert result.returncode == 0, result.stderr
    image = matplotlib.image.imread(plot)
    assert image.shape[0] > 300 and image.shape[1] > 300
    assert image[..., :3].std() > 0.05, "the figure has content"


def test_processes_load_the_server_together(triton_server) -> None:
    result = run_bench("--url", triton_server.grpc_url, "--concurrency", "1", "--batch", "1", "--processes", "2", "--json", *SHORT)
    assert result.returncode == 0, result.stderr
    (setting,) = json.loads(result.stdout)["settings"]
    assert setting["processes"] == 2 and setting["in_flight"] == 2
    assert setting["crops_per_s"] > 0 and setting["server_ms"]["compute_infer"] > 0


def test_progress_lines_go_to_stderr(triton_server) -> None:
    result = run_bench("--url", triton_server.grpc_url, "--concurrency", "1", "--batch", "1", "--duration", "0.3", "--warmup", "0", "--max-windows", "3")
    assert result.returncode == 0, result.stderr
    assert "batch 1 concurrency 1x1: window 1:" in result.stderr and "crops/s" in result.stderr
    assert "window" not in result.stdout.splitlines()[-1]


def test_message_sizes_match_what_travels(triton_server) -> None:
    """The computed request and reply sizes equal tritonclient's request and Triton's reply."""
    import tritonclient.grpc as grpcclient
    from tritonclient.grpc._utils import _get_inference_request

    batch = np.zeros((3, 1, 24, 24, 8), np.float16)
    inputs = [grpcclient.InferInput("input__0", list(batch.shape), "FP16").set_data_from_numpy(batch)]
    outputs = [grpcclient.InferRequestedOutput(n) for n in ("vectors__0", "skeleton__1")]
    request = _get_inference_request("skoots", inputs, "", "", outputs, 0, False, False, 0, None, None)
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    try:
        reply = client.infer("skoots", inputs, outputs=outputs).get_response()
    finally:
        client.close()
    assert message_bytes(3, (24, 24, 8)) == (request.ByteSize() + GRPC_PREFIX, reply.ByteSize() + GRPC_PREFIX)


def test_bench_as_a_function_reports_the_best_setting(triton_server) -> None:
    result = bench(triton_server.grpc_url, concurrency=[1, 2], batch=[4], load=LoadSettings(duration=0.3, warmup=0.1, max_windows=3))
    assert result.best in result.measurements
    assert result.best.crops_per_s == max(m.crops_per_s for m in result.measurements)


def test_endpoint_reports_stage_timings(triton_server) -> None:
    endpoint = TritonEndpoint(triton_server.grpc_url, "skoots")
    try:
        timings: dict[str, float] = {}
        vectors, skeleton = endpoint.infer(np.zeros((1, 1, 24, 24, 8), np.float16), timings=timings)
        assert vectors.shape == (1, 3, 24, 24, 8) and skeleton.dtype == np.uint8
        assert set(timings) == {"serialise", "send_receive", "deserialise"} and all(v >= 0 for v in timings.values())
        assert endpoint.inference_statistics()[0]["inference_stats"]["success"]["count"]
    finally:
        endpoint.close()


@pytest.mark.parametrize(
    "args,match",
    [
        (["--url", "127.0.0.1:1"], "no Triton server at 127.0.0.1:1"),
        (["--model", "nope"], "not loaded or not ready"),
        (["--batch", "8"], "exceeds the model's max_batch_size 4"),
        (["--concurrency", "0"], "positive integers"),
        (["--concurrency", "1,x"], "positive integers"),
        (["--duration", "0"], "--duration and --timeout must be positive"),
        (["--max-windows", "2"], "--max-windows at least 3"),
        (["--stability", "0"], "--stability between 0 and 100"),
        (["--processes", "0"], "--processes at least 1"),
        (["--json", "--csv", "-"], "choose one"),
        (["--csv", "b.txt"], "give a .csv file"),
        (["--csv", "b.csv", "--batch", "1,2"], "no batch column"),
        (["--request-rate", "0"], "positive numbers"),
        (["--request-rate", "5", "--request-distribution", "gauss"], "use constant or poisson"),
        (["--request-rate", "5", "--concurrency", "2"], "choose one"),
        (["--request-rate", "5", "--plot", "b.png"], "leave it out with --request-rate"),
        (["--plot", "PLOT/b.png"], "does not exist"),
        (["--plot", "b.gif"], "unknown image type"),
    ],
)
def test_user_errors_are_one_line(triton_server, tmp_path: Path, args: list[str], match: str) -> None:
    args = [a.replace("PLOT", str(tmp_path / "missing")) if "PLOT" in a else (str(tmp_path / a) if a.endswith((".gif", ".txt", ".csv", ".png")) else a) for a in args]
    load = [] if "--request-rate" in args or "--concurrency" in args else ["--concurrency", "1"]
    argv = ([] if "--url" in args else ["--url", triton_server.grpc_url]) + load + ["--duration", "0.2", "--warmup", "0"]
    result = run_bench(*argv, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert match in lines[0]
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []
