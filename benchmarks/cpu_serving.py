"""CPU serving side by side: the default network served by Triton's PyTorch backend (the
``skoots`` variant, KIND_CPU) and by the Python-backend model (OpenVINO FP32), in one server,
with the embedded OpenVINO runtime beside them.

    python benchmarks/cpu_serving.py [--crops 3] [--crop 300,300,20] [--concurrency 1,2]

The default cfg (dims 32-64-128-64-32, kernel 7, random weights) is exported with
``--device cpu --max-batch 1``; the PyTorch backend is the one ``skoots build-backend pytorch``
cached (built here if missing). Per model and concurrency C: one warm-up request, then C
threads send one-crop requests in a closed loop until ``--crops`` answers per thread are in;
crops/s is answers over the wall time, latencies are per request. The models take turns, so
noise from other users of the machine hits both alike. The triton OpenVINO backend is not
measured: it does not build against the pip openvino (RESULTS.md, "CPU serving").
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import common  # noqa: F401 - puts tests/ on sys.path
from common import ROOT, machine

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def export_default(folder: Path, crop: tuple[int, ...]) -> Path:
    """The default cfg with random weights, libtorch and Python variants, KIND_CPU, one crop per request."""
    from checkpoints import skoots_cfg, write_checkpoint

    from skoots_export.exporter import export_checkpoint
    from skoots_export.model_config import Device

    checkpoint = write_checkpoint(folder / "default.trch", skoots_cfg())
    repository = folder / "model_repository"
    started = time.perf_counter()
    export_checkpoint(checkpoint, repository=repository, backend="both", device=Device.CPU, max_batch_size=1, crop=crop)
    print(f"exported the default cfg in {time.perf_counter() - started:.0f}s", flush=True)
    return repository


def closed_loop(url: str, model: str, concurrency: int, crops: int) -> tuple[float, list[float]]:
    """``concurrency`` threads, each sending ``crops`` one-crop requests back to back: wall
    seconds and every request's latency."""
    from skoots_client.bench import synthetic_crops
    from skoots_client.model_source import TritonEndpoint

    endpoint = TritonEndpoint(url, model, concurrency=concurrency, timeout=600, retries=0)
    batch = synthetic_crops(1, endpoint.info.parameters.crop)
    endpoint.infer(batch)  # warm-up: the first request pays for the first run's optimisations
    latencies: list[float] = []
    lock = threading.Lock()

    def loop() -> None:
        for _ in range(crops):
            started = time.monotonic()
            endpoint.infer(batch)
            with lock:
                latencies.append(time.monotonic() - started)

    threads = [threading.Thread(target=loop) for _ in range(concurrency)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    endpoint.close()
    return wall, latencies


def embedded_openvino(repository: Path, crops: int) -> list[float]:
    """Seconds per crop of the exported IR run in this process (the server stopped)."""
    from skoots_client.bench import synthetic_crops
    from skoots_export.model_config import config_from_text, parameters_from_config
    from skoots_export.openvino_runtime import OpenVinoHead

    model = repository / "skoots_python"
    crop = parameters_from_config(config_from_text((model / "config.pbtxt").read_text())).crop
    head = OpenVinoHead(str(next(model.glob("*/model.xml"))))
    batch = synthetic_crops(1, crop)
    head(batch)  # compiles for this shape
    seconds = []
    for _ in range(crops):
        started = time.perf_counter()
        head(batch)
        seconds.append(time.perf_counter() - started)
    return seconds


def p99(values: list[float]) -> float:
    from skoots_client.bench import percentile

    return percentile(values, 99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crops", type=int, default=3, help="answers per thread per setting")
    parser.add_argument("--crop", default="300,300,20", help="X,Y,Z crop of the export")
    parser.add_argument("--concurrency", default="1,2", help="requests in flight, comma-separated")
    args = parser.parse_args()
    crop = tuple(int(v) for v in args.crop.split(","))
    levels = [int(v) for v in args.concurrency.split(",")]

    from skoots_export.backend_build import build_pytorch_backend
    from skoots_export.server import ServerConfig, TritonServer

    print(machine(), flush=True)
    backend = build_pytorch_backend(progress=print)
    print(f"PyTorch backend: {backend.backend_dir} ({'cached' if backend.reused else f'built in {backend.seconds:.0f}s'})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        repository = export_default(Path(tmp), crop)
        config = ServerConfig(repository=repository, models=("skoots", "skoots_python"), pytorch_backend=backend.backend_dir)
        rows: dict[tuple[str, int], tuple[float, float, float]] = {}
        with TritonServer(config) as server:
            for level in levels:
                for model in ("skoots", "skoots_python"):  # taking turns
                    wall, latencies = closed_loop(server.grpc_url, model, level, args.crops)
                    rows[(model, level)] = (len(latencies) / wall, statistics.mean(latencies), p99(latencies))
                    print(f"{model:<14} C={level}: {rows[(model, level)][0]:.3f} crops/s, avg {rows[(model, level)][1]:.2f}s, "
                          f"p99 {rows[(model, level)][2]:.2f}s", flush=True)
        embedded = embedded_openvino(repository, args.crops)

    names = {"skoots": "Triton PyTorch backend (libtorch, KIND_CPU)", "skoots_python": "Triton Python backend (OpenVINO FP32)"}
    print(f"\ncrop {crop}, {args.crops} answers per thread per setting")
    print("| served by | C | crops/s | avg latency s | p99 s |")
    print("|---|---|---|---|---|")
    for (model, level), (rate, avg, high) in rows.items():
        print(f"| {names[model]} | {level} | {rate:.3f} | {avg:.2f} | {high:.2f} |")
    print(f"| embedded OpenVINO FP32 (in-process, no server) | 1 | {1 / statistics.median(embedded):.3f} | {statistics.mean(embedded):.2f} | {p99(embedded):.2f} |")
    for level in levels:
        ratio = rows[("skoots_python", level)][0] / rows[("skoots", level)][0]
        print(f"C={level}: Python backend (OpenVINO) / libtorch crops/s = {ratio:.2f}x")


if __name__ == "__main__":
    main()
