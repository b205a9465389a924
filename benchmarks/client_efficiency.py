"""(b) Client efficiency: end-to-end ``segment`` throughput ÷ the server's saturated throughput.

    python benchmarks/client_efficiency.py [--shape 64,1024,1024] [--crop 300,300,20] [--overlap 10,10,5]
                                           [--rounds 2] [--duration 5]

One tritonserver on 127.0.0.1 serves one model; in each round, on the same server,

1. ``bench`` loads it with synthetic crops at batch ``max_batch_size`` and 1, 2 and 4
   requests in flight; its best throughput (crops/s) is the server's saturated rate;
2. ``skoots-client segment VOLUME --url ...`` runs end to end in a child process (start-up,
   reading, tiling, inference, stitching, post-processing, writing the TIFF); its rate is the
   crops of the volume ÷ the child's wall time.

It also prints how busy the server was during each (its compute time for the requests ÷ the
wall time: close to 1 when the clients keep it fed) and their ratio, which other jobs on the
machine do not move: they slow the server's compute during both runs alike, whereas the
crops/s ratio compares two runs at different moments of a load that changes. And the CPU
seconds the segment process used.

The ratio segment ÷ bench says how much of the server's capacity a whole segmentation turns
into results: 1.0 means the client adds nothing, neither per crop (serialising, dilating,
stitching: work that must overlap with inference) nor at the ends (start-up, labelling,
assignment, writing). On this machine client and server share the CPU cores, so every
client cycle is taken from the server: the ratio is a stricter test here than on a GPU
server. Rounds alternate bench and segment so that both see the same background load.

The model is the tests' lively checkpoint (tiny network: a 300x300x20 crop costs ~0.75 s
on two quiet cores) with the seed's constants except vector scaling (4,4,2). The default
volume, 64x1024x1024 = 96 seed crops, keeps ``segment`` busy for over a minute, so the
run's fixed ends (start-up ~2 s, post-processing and writing ~1 s) weigh what they would
on a real volume rather than dominating a few seconds of inference.

``--cpu`` measures instead what issue 28 targets: **ms of client CPU per crop**. On the same
server, each round runs ``skoots_client.segment(VOLUME, url=...)`` in a child process
(client_cpu_child.py) once per variant — this checkout over gRPC, this checkout with
``shared_memory="system"``, and with ``--compare-to CHECKOUT`` that checkout's code (run by
its ``.venv/bin/python``) — interleaved, so all see the same background load. It prints the
child's CPU seconds over the infer stage (normalise, send, decode, dilate, stitch) ÷ crops;
over the infer stage after its first answered batch (without one-time costs such as loading
numba's kernels, which a real volume spreads over thousands of crops: the per-crop cost issue
28 targets) ÷ those crops; and over the whole run (start-up, reading, post-processing) ÷
crops; and checks that every variant's labels are the same.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import common
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="64,1024,1024", help="volume Z,X,Y")
    parser.add_argument("--crop", default="300,300,20", help="the model's crop X,Y,Z")
    parser.add_argument("--overlap", default="10,10,5", help="the model's overlap X,Y,Z")
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5.0, help="bench's window seconds")
    parser.add_argument("--cpu", action="store_true", help="measure client CPU ms per crop instead (see above)")
    parser.add_argument("--compare-to", type=Path, help="with --cpu: also run this checkout's code (its .venv/bin/python)")
    args = parser.parse_args()
    if args.cpu:
        return cpu_per_crop(args)
    z, x, y = common.triple(args.shape)
    crop, overlap = common.triple(args.crop), common.triple(args.overlap)

    import tifffile

    from skoots_client.bench import LoadSettings, bench, server_delta
    from skoots_client.model_source import TritonEndpoint
    from skoots_client.tiling import crop_grid
    from skoots_export.server import ServerConfig, TritonServer

    client = str(Path(sys.executable).parent / "skoots-client")
    crops = len(crop_grid((x, y, z), crop, overlap))
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        repository = common.export_lively(Path(tmp) / "model", crop=crop, overlap=overlap, vector_scaling=(4.0, 4.0, 2.0), max_batch_size=args.max_batch)
        tifffile.imwrite(Path(tmp) / "v.tif", common.blobs((z, x, y)))
        with TritonServer(ServerConfig(repository=repository)).start(timeout=300) as server:
            argv = [client, "segment", str(Path(tmp) / "v.tif"), "--url", server.grpc_url, "--out", str(Path(tmp) / "labels.tif"), "--overwrite", "--device", "cpu"]
            stats = TritonEndpoint(server.grpc_url, "skoots")
            # Warm the server up at the shape and batch both sides send (TorchScript optimises per shape).
            bench(server.grpc_url, concurrency=[1], batch=[args.max_batch], load=LoadSettings(duration=args.duration, warmup=0, max_windows=3))
            for index in range(args.rounds):
                best = bench(server.grpc_url, concurrency=[1, 2, 4], batch=[args.max_batch], load=LoadSettings(duration=args.duration, warmup=args.duration)).best
                before = stats.inference_statistics()
                run = common.run_child(argv)
                delta = server_delta(before, stats.inference_statistics())
                busy = sum(delta[s][1] for s in ("compute_input", "compute_infer", "compute_output")) / 1e9
                stages = re.search(r"\((infer\+stitch.*?); post-processing", run.stdout)
                rounds.append(Round(best, crops / run.seconds, run.seconds, busy, run.cpu_seconds, stages.group(1) if stages else ""))
                print(
                    f"round {index + 1}: bench best {best.crops_per_s:.3f} crops/s (batch {best.batch}, {best.in_flight} in flight, "
                    f"{'stable' if best.stable else 'unstable'}); segment {crops} crops in {run.seconds:.1f}s = {crops / run.seconds:.3f} crops/s; "
                    f"ratio {rounds[-1].ratio:.3f}",
                    flush=True,
                )
            stats.close()

    print(f"\nvolume {(z, x, y)} (Z, X, Y), {crops} crops of {crop}, overlap {overlap}, batch {args.max_batch}; machine: {common.machine()}")
    print(f"{'round':>5} {'bench crops/s':>14} {'segment crops/s':>16} {'ratio':>6} {'busy: bench':>12} {'segment':>8} {'ratio':>6} {'client CPU s':>13}  segment stages")
    for i, r in enumerate(rounds, 1):
        print(f"{i:5d} {r.bench.crops_per_s:14.3f} {r.segment:16.3f} {r.ratio:6.3f} {r.bench_busy:12.3f} {r.segment_busy:8.3f} "
              f"{r.busy_ratio:6.3f} {r.cpu:13.2f}  {r.stages}")
    ratios, busy = [r.ratio for r in rounds], [r.busy_ratio for r in rounds]
    print(f"client efficiency, crops/s segment / bench: mean {np.mean(ratios):.3f} (rounds {min(ratios):.3f}-{max(ratios):.3f})")
    print(f"load-normalised, server busy fraction segment / bench: mean {np.mean(busy):.3f} (rounds {min(busy):.3f}-{max(busy):.3f})")


def cpu_per_crop(args: argparse.Namespace) -> None:
    """The --cpu rows: client CPU ms per crop, infer stage and whole run, per variant."""
    import json

    import tifffile

    from skoots_client.bench import LoadSettings, bench
    from skoots_export.server import ServerConfig, TritonServer

    z, x, y = common.triple(args.shape)
    crop, overlap = common.triple(args.crop), common.triple(args.overlap)
    child = str(Path(__file__).with_name("client_cpu_child.py"))
    variants = {"this, gRPC": [sys.executable], "this, shm": [sys.executable]}
    if args.compare_to:
        variants = {f"{args.compare_to}, gRPC": [str(args.compare_to / ".venv" / "bin" / "python")], **variants}
    figures: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        repository = common.export_lively(Path(tmp) / "model", crop=crop, overlap=overlap, vector_scaling=(4.0, 4.0, 2.0), max_batch_size=args.max_batch)
        volume = Path(tmp) / "v.tif"
        tifffile.imwrite(volume, common.blobs((z, x, y)))
        with TritonServer(ServerConfig(repository=repository)).start(timeout=300) as server:
            bench(server.grpc_url, concurrency=[1], batch=[args.max_batch], load=LoadSettings(duration=args.duration, warmup=0, max_windows=3))
            for index in range(args.rounds):
                for name, python in variants.items():
                    argv = [*python, child, str(volume), server.grpc_url] + (["--shared-memory", "system"] if name.endswith("shm") else [])
                    run = common.run_child(argv)
                    figures[name].append(json.loads(run.stdout.strip().splitlines()[-1]))
                    f = figures[name][-1]
                    print(f"round {index + 1} {name}: infer {f['infer_cpu'] / f['crops'] * 1e3:.1f} ms CPU/crop "
                          f"({f['infer_cpu']:.2f} s CPU in {f['infer_wall']:.1f} s), after the first batch {_steady(f):.1f}, "
                          f"whole run {f['run_cpu'] / f['crops'] * 1e3:.1f} ms/crop", flush=True)
    answers = {(f["instances"], f["labels_sum"]) for runs in figures.values() for f in runs}
    print(f"\nvolume {(z, x, y)} (Z, X, Y), {figures[next(iter(figures))][0]['crops']} crops of {crop}, overlap {overlap}, batch {args.max_batch}, "
          f"{args.rounds} rounds interleaved; machine: {common.machine()}")
    print(f"labels the same in every run: {'yes' if len(answers) == 1 else 'NO: ' + str(answers)}")
    columns = (("infer stage", lambda f: f["infer_cpu"] / f["crops"] * 1e3), ("after 1st batch", _steady),
               ("whole run", lambda f: f["run_cpu"] / f["crops"] * 1e3))
    print(f"client CPU ms per crop (best of the rounds; rounds in brackets)\n{'variant':<28}" + "".join(f"{title:>28}" for title, _ in columns))
    for name, runs in figures.items():
        cells = []
        for _, value in columns:
            values = [value(f) for f in runs]
            cells.append(f"{min(values):.1f} ({'/'.join(f'{v:.1f}' for v in values)})")
        print(f"{name:<28}" + "".join(f"{cell:>28}" for cell in cells))
    print("(best of the rounds; client CPU is the child process's, all threads)")


def _steady(f: dict[str, float]) -> float:
    """ms of client CPU per crop after the first answered batch (one-time costs behind)."""
    return f["steady_cpu"] / max(1, f["steady_crops"]) * 1e3


@dataclass(frozen=True)
class Round:
    bench: Any  # the best bench Measurement
    segment: float  # crops/s end to end
    seconds: float
    busy: float  # seconds the server computed for segment's requests
    cpu: float  # the segment process's CPU seconds
    stages: str

    @property
    def ratio(self) -> float:
        return self.segment / self.bench.crops_per_s

    @property
    def segment_busy(self) -> float:
        return self.busy / self.seconds

    @property
    def bench_busy(self) -> float:
        """The server's compute time per second of bench's counted windows."""
        m = self.bench
        per_request = sum(m.server_ms[s] for s in ("compute_input", "compute_infer", "compute_output")) / 1e3
        return per_request * m.requests / m.seconds

    @property
    def busy_ratio(self) -> float:
        return self.segment_busy / self.bench_busy


if __name__ == "__main__":
    main()
