"""What ``segment --resume`` costs per crop: saving to the work directory against stitching in
memory, side by side, at the seed's crop size.

    python benchmarks/workdir_throughput.py [--shape 860,860,40] [--dir /fast/disk]

Synthetic answers shaped like the network's (sparse skeleton, masked vectors in [-1, 1]) are
stitched into memory (what every run does) and saved through ``WorkDir`` (write, fsync, mark);
then restored. Prints seconds per crop, MB/s of crop data and the ratio save / stitch. A GPU
server answers a 300x300x20 crop in tens of milliseconds: if saving is slower, ``--resume``
bounds throughput there.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from skoots_client.tiling import crop_grid
from skoots_client.workdir import Piece, WorkDir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="860,860,40", help="volume X,Y,Z")
    parser.add_argument("--dir", default=None, help="folder for the work directory (default: a temporary one)")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    grid = crop_grid(shape, (300, 300, 20), (10, 10, 5))
    rng = np.random.default_rng(0)
    by_size: dict[tuple[int, ...], Piece] = {}  # one answer per owned-region size: making them is not timed
    for crop in grid:
        size = tuple(hi - lo for lo, hi in crop.owned)
        if size not in by_size:
            mask = rng.random(size) > 0.4
            by_size[size] = Piece((rng.random(size) > 0.97).astype(np.uint8), (rng.uniform(-1, 1, (3, *size)) * mask).astype(np.float16))
    answer = {crop.index: by_size[tuple(hi - lo for lo, hi in crop.owned)] for crop in grid}
    megabytes = sum(p.skeleton.nbytes + p.vectors.nbytes for p in answer.values()) / 1e6

    skeleton = np.zeros(shape, np.uint8)
    vectors = np.zeros((3, *shape), np.float16)
    start = time.perf_counter()
    for crop in grid:
        skeleton[crop.source] = answer[crop.index].skeleton
        vectors[(slice(None), *crop.source)] = answer[crop.index].vectors
    stitch = time.perf_counter() - start

    folder = Path(tempfile.mkdtemp(dir=args.dir))
    try:
        work = WorkDir(folder / "labels.tif.work", {"benchmark": list(shape)})
        list(work.restore(grid))
        start = time.perf_counter()
        for i in range(0, len(grid), 2):  # batches of 2 crops
            work.save(grid[i : i + 2], [answer[c.index] for c in grid[i : i + 2]])
        work.close()
        save = time.perf_counter() - start
        on_disk = sum(p.stat().st_size for p in (folder / "labels.tif.work").rglob("*") if p.is_file()) / 1e6
        again = WorkDir(folder / "labels.tif.work", {"benchmark": list(shape)})
        start = time.perf_counter()
        restored = sum(1 for _ in again.restore(grid))
        restore = time.perf_counter() - start
        again.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert restored == len(grid)
    n = len(grid)
    print(f"{n} crops of 300x300x20 (owned regions), {megabytes:.0f} MB of answers, {on_disk:.0f} MB on disk")
    print(f"{'step':<22}{'s/crop':>10}{'MB/s':>10}")
    for name, seconds in (("stitch in memory", stitch), ("save to work dir", save), ("restore from it", restore)):
        print(f"{name:<22}{seconds / n:>10.4f}{megabytes / seconds:>10.0f}")
    print(f"save / stitch = {save / stitch:.1f}x")


if __name__ == "__main__":
    main()
