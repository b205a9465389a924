"""A blockwise worker's peak memory with the default block, the model in-process: what
``segment --blockwise`` without ``--block`` costs a worker, against the block estimate
(``client/blockwise/blocks.py``) and the ``--block`` help's claim.

    python benchmarks/worker_memory.py [--shape 100,560,560] [--workers 1] [--crop 300,300,20] [--overlap 10,10,5]

A uint16 blobs TIFF ``[Z, X, Y]`` (blobs of 512x512 tiled in X and Y, as benchmarks/peak_memory.py)
is segmented by the real CLI, ``--blockwise`` on a LocalCluster of ``--workers`` processes,
the tests' lively checkpoint (tiny network) in-process in every worker with the seed's
constants (crop 300x300x20, overlap 10x10x5, vector scaling 60,60,12, 2 iterations), so the
blocks and halos are the seed model's. The largest worker's peak RSS (``VmHWM``, what the
summary prints) is compared with the block estimate, and split into what a worker holds with
the model loaded before any block (a run on a one-crop volume) and what the block adds.
A larger network adds its weights and one batch of activations to the fixed part.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import common
import numpy as np

SCALING, ITERATIONS = (60.0, 60.0, 12.0), 2


def segment(client: str, volume: Path, out: Path, repository: Path, workers: int, crop: str, overlap: str) -> tuple[int, str, float]:
    """The largest worker's peak (bytes), the blockwise summary line and the wall seconds."""
    argv = [client, "segment", str(volume), "--blockwise", "--workers", str(workers), "--threads-per-worker", "1",
            "-r", str(repository), "--crop", crop, "--overlap", overlap, "--out", str(out), "--overwrite"]
    run = common.run_child(argv)
    line = next(text for text in run.stdout.splitlines() if text.startswith("blockwise:"))
    peak = re.search(r"largest worker peak (\d+) MiB", line)
    return int(peak.group(1)) << 20 if peak else 0, line, run.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="100,560,560", help="volume Z,X,Y (X and Y multiples of 512 or below it)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--crop", default="300,300,20")
    parser.add_argument("--overlap", default="10,10,5")
    args = parser.parse_args()
    shape = common.triple(args.shape)

    import tifffile

    from skoots_client import postprocess
    from skoots_client.blockwise.blocks import DEFAULT_WORKER_BUDGET, BlockGrid, block_peak_bytes, default_per_block

    client = str(Path(sys.executable).parent / "skoots-client")
    crop, overlap = common.triple(args.crop), common.triple(args.overlap)
    z, x, y = shape
    xyz = (x, y, z)
    label_halo, vector_halo = postprocess.halo_widths(SCALING, ITERATIONS)
    per_block = default_per_block(xyz, crop, overlap, label_halo, vector_halo)
    grid = BlockGrid(xyz, crop, overlap, per_block)
    largest = max(grid.blocks, key=lambda b: b.voxels)
    extent = [hi - lo for lo, hi in largest.region]
    estimate = block_peak_bytes(extent, label_halo, vector_halo)
    with tempfile.TemporaryDirectory() as tmp:
        repository = common.export_lively(Path(tmp) / "model", vector_scaling=SCALING, embedding_iterations=ITERATIONS)
        small = Path(tmp) / "small.tif"
        tifffile.imwrite(small, common.blobs((crop[2], crop[0], crop[1])))
        fixed, _, _ = segment(client, small, Path(tmp) / "small.zarr", repository, 1, args.crop, args.overlap)
        volume = Path(tmp) / "v.tif"
        tile = common.blobs((z, min(x, 512), min(y, 512)))
        tifffile.imwrite(volume, np.tile(tile, (1, -(-x // 512), -(-y // 512)))[:, :x, :y])
        peak, line, seconds = segment(client, volume, Path(tmp) / "labels.zarr", repository, args.workers, args.crop, args.overlap)
    print(f"machine: {common.machine()}")
    print(f"volume z {z}, y {x}, x {y} ({np.prod(shape) / 1e6:.0f} Mvoxels), crop {args.crop}, overlap {args.overlap}, "
          f"vector scaling {SCALING}, tiny network in-process, {args.workers} workers")
    print(f"default block: {per_block} crops per axis, largest block z {extent[2]}, y {extent[0]}, x {extent[1]} "
          f"({np.prod(extent) / 1e6:.1f} Mvoxels), {len(grid.blocks)} blocks")
    print(f"block estimate (blocks.py): {estimate / 2**20:.0f} MiB of a {DEFAULT_WORKER_BUDGET / 2**20:.0f} MiB budget")
    print(f"worker with the model loaded, one-crop volume: {fixed / 2**20:.0f} MiB")
    print(f"largest worker peak: {peak / 2**20:.0f} MiB ({(peak - fixed) / 2**20:.0f} MiB above the fixed part); {seconds:.0f} s")
    print(line)


if __name__ == "__main__":
    main()
