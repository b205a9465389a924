"""(d) Peak memory per voxel of ``skoots-client segment`` (in-memory mode) against the volume size.

    python benchmarks/peak_memory.py [--sizes 40,512,1024 160,1024,1024 320,1024,1024]
                                     [--mode embedded url] [--device cpu|gpu] [--overlap 0,0,0]

For each size a uint16 blobs TIFF ``[Z, X, Y]`` (uncompressed, so it is memory-mapped; blobs
of 512x512 tiled in X and Y) is segmented by the real CLI in a child process, with the model in-process (``embedded``: the
process also holds torch and the network) and/or against a local tritonserver (``url``: the
client alone). The child's peak resident set (``wait4`` rusage: every page it touched,
memory-mapped input included) is divided by the voxel count; a least-squares line through the
sizes splits it into a fixed cost (MB: Python, libraries, the network, crops in flight) and
the marginal cost per voxel, which is what the per-voxel peak tends to on large volumes.

With ``--device gpu`` the post-processing runs on the GPU and the child's peak GPU memory is
sampled with ``nvidia-smi`` every 0.1 s (a sample can miss a short peak).

The model is the tests' lively checkpoint (tiny network) with the seed's constants, vector
scaling 4,4,2: memory does not depend on the network's size beyond the fixed cost.
``segment --overlap`` (default here 0,0,0) cuts the crops the network must see to one per
output voxel, which saves inference time on a CPU and changes no full-size array.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import common
import numpy as np


def gpu_peak_sampler(pid_holder: list[int]) -> tuple[threading.Event, list[int]]:
    """Poll nvidia-smi for the memory of the process in ``pid_holder``; returns (stop, [peak MiB])."""
    stop, peak = threading.Event(), [0]

    def poll() -> None:
        while not stop.wait(0.1):
            if not pid_holder:
                continue
            try:
                text = subprocess.run(
                    ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                    capture_output=True, text=True, timeout=5,
                ).stdout
            except (OSError, subprocess.TimeoutExpired):
                return
            for line in text.splitlines():
                pid, used = (v.strip() for v in line.split(","))
                if pid.isdigit() and int(pid) == pid_holder[0]:
                    peak[0] = max(peak[0], int(used))

    threading.Thread(target=poll, daemon=True).start()
    return stop, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["40,512,1024", "160,1024,1024", "320,1024,1024"], help="volumes Z,X,Y (X and Y multiples of 512)")
    parser.add_argument("--overlap", default="0,0,0", help="segment --overlap X,Y,Z")
    parser.add_argument("--mode", nargs="+", default=["embedded", "url"], choices=["embedded", "url"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    args = parser.parse_args()
    sizes = [common.triple(s) for s in args.sizes]

    import tifffile

    from skoots_export.server import ServerConfig, TritonServer

    client = str(Path(sys.executable).parent / "skoots-client")
    rows: dict[str, list[tuple[int, int, float, int]]] = {mode: [] for mode in args.mode}
    with tempfile.TemporaryDirectory() as tmp:
        repository = common.export_lively(Path(tmp) / "model", vector_scaling=(4.0, 4.0, 2.0))
        server = TritonServer(ServerConfig(repository=repository)).start(timeout=300) if "url" in args.mode else None
        try:
            for shape in sizes:
                volume = Path(tmp) / "v.tif"
                z, x, y = shape
                tifffile.imwrite(volume, np.tile(common.blobs((z, 512, 512)), (1, x // 512, y // 512)))
                voxels = int(np.prod(shape))
                for mode in args.mode:
                    argv = [client, "segment", str(volume), "--out", str(Path(tmp) / "labels.tif"), "--overwrite", "--device", args.device, "--overlap", args.overlap, "--quiet"]
                    argv += ["--url", server.grpc_url] if mode == "url" else ["-r", str(repository)]
                    pid: list[int] = []
                    stop, gpu_peak = gpu_peak_sampler(pid) if args.device == "gpu" and shutil.which("nvidia-smi") else (None, [0])
                    run = common.run_child(argv, on_start=pid.append)
                    if stop:
                        stop.set()
                    seconds, peak = run.seconds, run.peak_rss
                    rows[mode].append((voxels, peak, seconds, gpu_peak[0] * 2**20))
                    print(f"{mode:8} {shape} {voxels / 1e6:7.1f} Mvox  peak {peak / 2**20:8.1f} MiB  {peak / voxels:6.2f} B/voxel  {seconds:6.1f}s", flush=True)
                volume.unlink()
        finally:
            if server:
                server.stop()

    print(f"\nmachine: {common.machine()}; post-processing on {args.device}")
    print(f"{'mode':9} {'Z,X,Y':>14} {'Mvoxels':>8} {'peak MiB':>9} {'B/voxel':>8}" + (f" {'GPU MiB':>8} {'GPU B/vox':>9}" if args.device == "gpu" else ""))
    for mode, measured in rows.items():
        for shape, (voxels, peak, _, gpu) in zip(sizes, measured):
            line = f"{mode:9} {','.join(map(str, shape)):>14} {voxels / 1e6:8.1f} {peak / 2**20:9.1f} {peak / voxels:8.2f}"
            if args.device == "gpu":
                line += f" {gpu / 2**20:8.1f} {gpu / voxels:9.2f}"
            print(line)
        if len(measured) > 1:
            v = np.array([m[0] for m in measured], float)
            p = np.array([m[1] for m in measured], float)
            slope, intercept = np.polyfit(v, p, 1)
            print(f"{mode:9} fit: {intercept / 2**20:.0f} MiB fixed + {slope:.2f} B per voxel")


if __name__ == "__main__":
    main()
