"""Blockwise segmentation (issue 11): (a) flat worker memory, (b) overhead against the in-memory
mode, (c) 1 vs 2 workers and the client CPU per crop, (d) Mvoxels/s per stage — one run.

    python benchmarks/blockwise_scaling.py [--sizes 1680x1680x100,2240x2240x100,3360x3360x100,4480x4480x100]
                                           [--block X,Y,Z|default] [--overhead-size 2240x2240x100] [--repeat 2] [--skip-scaling]

Every run is fed the same answers of a perfect network (``common.ideal_outputs`` for random
tubes on a 300x300x50 pattern, repeated periodically over larger volumes: no inference), with
the seed's constants (crop 300x300x20, overlap 10x10x5, S = 60,60,12, N = 2), and the default
blocks (a worker's ~1.5 GB budget) unless ``--block`` says otherwise.

(a) blockwise on 2 worker processes at each size, each size in a process of its own: the
    largest worker's peak RSS, the sum of the workers' peaks, and the peak of the segment
    process itself; target: the largest worker within 15% from the smallest size to the
    largest. The smallest default size already has interior blocks (3 x 3), so it holds a
    block's full halos as the largest does.
(b) the same answers through the in-memory post-processing (materialise the answers, which is
    what stitching does, label, assign, renumber, write .zarr) and through blockwise, whole
    wall time including starting the cluster, same 2 cores, on a volume both can do here
    (0.5 Gvoxels: ~7 GB in memory); the best of ``--repeat`` alternating runs of each;
    target ≤ 1.25. Labels are checked bitwise equal first.
(c) the same blockwise run on 1 and on 2 workers: every stage is post-processing here (infer
    reads the stored answers and labels its block); target ≥ 1.6x; and the CPU time one worker
    spends per seed-size crop in the infer stage (normalise, dispatch, dilate, place, label,
    keep sparse) with an endpoint that answers instantly.
(d) Mvoxels/s of each stage, from (a)'s largest run.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import common
import numpy as np

PATTERN = (300, 300, 50)
CROP, OVERLAP, SCALING = (300, 300, 20), (10, 10, 5), (60.0, 60.0, 12.0)


def shape_of(text: str) -> tuple[int, int, int]:
    return tuple(int(v) for v in text.lower().split("x"))  # type: ignore[return-value]


def pattern_answers(folder: Path) -> Path:
    import zarr

    vectors, skeleton = common.ideal_outputs(PATTERN, 90, SCALING, radius=6.0, seed=0)
    path = folder / "answers.zarr"
    group = zarr.open_group(str(path), mode="w")
    group.create_array("vectors", data=vectors, chunks=(3, 150, 150, 50))
    group.create_array("skeleton", data=skeleton, chunks=(150, 150, 50))
    return path


def job_for(folder: Path, answers: Path, shape, block, workers: int):
    from skoots_client import postprocess
    from skoots_client.blockwise.blocks import default_per_block, per_block_from_voxels
    from skoots_client.blockwise.job import Job, StoredAnswers
    from skoots_client.normalize import Normalization
    from skoots_export.contract.wire import ModelParameters

    parameters = ModelParameters(crop=CROP, overlap=OVERLAP, vector_scaling=SCALING, embedding_iterations=2)
    lh, vh = postprocess.halo_widths(SCALING, 2)
    per_block = per_block_from_voxels(block, CROP, OVERLAP, shape) if block else default_per_block(shape, CROP, OVERLAP, lh, vh)
    return Job(volume=answers, channel=None, axes=None, normalization=Normalization("dtype"), work=folder / "work", shape=shape, per_block=per_block, reference_borders=False,
               parameters=parameters, source=StoredAnswers(answers), batch_size=1, threads=1, label_halo=lh,
               vector_halo=vh)


def blockwise(folder: Path, answers: Path, shape, block, workers: int, out_name: str = "labels.zarr"):
    from skoots_client.blockwise.pipeline import segment_job
    from skoots_client.progress import Watch
    from skoots_client.specs import OutputSpec

    out = folder / out_name
    job = dataclasses.replace(job_for(folder, answers, shape, block, workers), output=OutputSpec(out=out, overwrite=True),
                              fingerprint={"bench": str(shape)}, workers=workers)
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    result = segment_job(job, Watch(quiet=True))
    return time.perf_counter() - started, result, job, out


def in_memory(folder: Path, answers: Path, shape) -> tuple[float, Path]:
    from skoots_client import postprocess
    from skoots_client.blockwise.stages import stored_answers
    from skoots_client.label_write import write_labels

    out = folder / "in_memory.zarr"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    skeleton, vectors = stored_answers(answers, tuple((0, n) for n in shape), shape)
    skeleton_labels, _ = postprocess.label_skeleton(skeleton)
    del skeleton
    labels = postprocess.assign_instances(vectors, skeleton_labels, SCALING, 2)
    del vectors, skeleton_labels
    labels, _ = postprocess.renumber_labels(labels)
    write_labels(out, labels, overwrite=True)
    return time.perf_counter() - started, out


def end_to_end(folder: Path, shape_zxy=(40, 320, 320)) -> tuple[float, float, int]:
    """(b') wall seconds of ``segment`` in memory and ``--blockwise`` (2 workers), both with the
    tests' lively model in-process (crop 24x24x8: 4000 crops), on the same volume; labels
    checked equal. Not an overhead figure: each worker's fixed cost (imports, model) is in it."""
    import tifffile
    from conftest import E2E_EXPORT

    import skoots_client

    repository = common.export_lively(folder / "model", **E2E_EXPORT)
    tifffile.imwrite(folder / "v.tif", common.blobs(shape_zxy, seed=3))
    started = time.perf_counter()
    skoots_client.segment(folder / "v.tif", out=folder / "mem.tif", repository=repository, device="cpu", quiet=True)
    memory = time.perf_counter() - started
    started = time.perf_counter()
    skoots_client.segment(folder / "v.tif", out=folder / "blk.tif", repository=repository, device="cpu", quiet=True, blockwise=True,
                          block=(40, 160, 160), workers=2)
    blocks = time.perf_counter() - started
    a, b = tifffile.imread(folder / "mem.tif"), tifffile.imread(folder / "blk.tif")
    assert a.dtype == b.dtype and np.array_equal(a, b), "blockwise labels differ from in-memory"
    return memory, blocks, int(a.max())


def crop_cpu(folder: Path, answers: Path, crops: int = 16) -> float:
    """CPU seconds per seed-size crop of the infer stage, its endpoint answering instantly."""
    import zarr

    from skoots_client.blockwise import stages, worker
    from skoots_client.blockwise.store import BlockStore
    from skoots_client.specs import ModelSpec

    shape = (280 * 4 + 20, 280 * 2 + 20, 20)  # 4 x 2 x 1 crops: one block of 8 crops
    job = job_for(folder, answers, shape, (2000, 2000, 20), 1)
    job = dataclasses.replace(job, source=ModelSpec(model="skoots", repository=folder), work=folder / "crop-work")
    store = BlockStore(job.work, {"bench": "crops"})
    store.create()
    vectors, skeleton = zarr.open_group(str(answers))["vectors"][:, :300, :300, :20], zarr.open_group(str(answers))["skeleton"][:300, :300, :20]

    class Instant:
        name, concurrency = "instant", 2

        def infer(self, batch, probability=False):
            n = len(batch)
            return np.broadcast_to(vectors, (n, *vectors.shape)), np.broadcast_to(skeleton, (n, 1, *skeleton.shape))

    from skoots_client.volume import Volume

    worker.STATE.endpoints[job.source] = [Instant()]
    worker.STATE.opened[("volume", job.volume, job.channel, job.axes)] = Volume(np.zeros(shape, np.uint16), job.volume)
    index = job.grid.blocks[0].index
    stages.infer_block(job, index)  # warm up (numba)
    started = time.process_time()
    rounds = max(1, crops // len(job.grid.blocks[0].crops))
    for _ in range(rounds):
        stages.infer_block(job, index)
    store.remove()
    return (time.process_time() - started) / (rounds * len(job.grid.blocks[0].crops))


def one_size(text: str, block) -> None:
    """(a) for one size, in this process: print one JSON line of figures."""
    import json

    from skoots_client.blockwise.worker import peak_rss

    folder = Path(tempfile.mkdtemp(prefix="blockwise-bench-"))
    try:
        answers = pattern_answers(folder)
        shape = shape_of(text)
        seconds, result, job, _ = blockwise(folder, answers, shape, block, 2)
        print(json.dumps({"seconds": seconds, "blocks": result.blocks, "block": job.per_block, "largest": result.peak_rss,
                          "workers": sum(result.peaks.values()), "client": peak_rss(), "stages": result.seconds}))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def flat_memory(block, sizes: list[str]) -> None:
    """(a) at each size, each in a child process, then (d) from the largest."""
    import json
    import sys

    print("\n(a) flat memory: blockwise, 2 workers, each size in a process of its own")
    print(f"{'volume':>15} {'Gvoxels':>8} {'blocks':>7} {'seconds':>8} {'largest worker MiB':>19} {'all workers MiB':>16} {'segment process MiB':>20}")
    rows = []
    for text in sizes:
        argv = [sys.executable, __file__, "--child", text, "--block", ",".join(map(str, block)) if block else "default"]
        row = json.loads(common.run_child(argv).stdout.strip().splitlines()[-1])
        rows.append((shape_of(text), row))
        print(f"{text:>15} {np.prod(shape_of(text)) / 1e9:8.3f} {row['blocks']:7d} {row['seconds']:8.1f} {row['largest'] / 2**20:19.0f} "
              f"{row['workers'] / 2**20:16.0f} {row['client'] / 2**20:20.0f}", flush=True)
    first, last = rows[0][1]["largest"], rows[-1][1]["largest"]
    print(f"largest worker: {last / first:.3f}x from the smallest size to the largest (target within 1.15); "
          f"in memory the largest would need ~{14 * np.prod(rows[-1][0]) / 2**30:.0f} GiB")
    shape, row = rows[-1]
    voxels = int(np.prod(shape))
    print(f"\n(d) Mvoxels/s per stage at {shape}, 2 workers: "
          + ", ".join(f"{k} {voxels / v / 1e6:.1f}" for k, v in row["stages"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1680x1680x100,2240x2240x100,3360x3360x100,4480x4480x100",
                        help="volumes X x Y x Z for (a); '' to skip (a)")
    parser.add_argument("--block", default="default", help="block X,Y,Z (voxels), or 'default': the memory budget's")
    parser.add_argument("--overhead-size", default="2240x2240x100", help="volume for (b) and (c): 0.5 Gvoxels, ~7 GB in memory")
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs of each mode for (b); the best of each counts")
    parser.add_argument("--skip-scaling", action="store_true", help="only (a) and (d)")
    parser.add_argument("--end-to-end", action="store_true", help="also (b') through the tests' tiny model in-process")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    block = None if args.block == "default" else tuple(int(v) for v in args.block.split(","))
    if args.child:
        return one_size(args.child, block)
    print(common.machine())
    print(f"answers: a perfect network's for 90 tubes on a {PATTERN} pattern, repeated; block {block or 'default'}")
    if args.sizes:  # first: the children fork from this process while it is small
        flat_memory(block, args.sizes.split(","))
    folder = Path(tempfile.mkdtemp(prefix="blockwise-bench-"))
    try:
        answers = pattern_answers(folder)
        if not args.skip_scaling:
            shape = shape_of(args.overhead_size)
            in_memory(folder, answers, (300, 300, 50))  # warm: the in-memory side is timed with its kernels loaded
            runs = []  # the best of --repeat alternating runs of each mode: the machine is shared
            for _ in range(args.repeat):
                runs.append((in_memory(folder, answers, shape), blockwise(folder, answers, shape, block, 2)))
            mem_seconds, mem_out = min((r[0] for r in runs), key=lambda r: r[0])
            seconds, result, job, out = min((r[1] for r in runs), key=lambda r: r[0])
            from skoots_client.volume_read import read_labels

            assert np.array_equal(read_labels(out), read_labels(mem_out)), "blockwise labels differ from in-memory"
            print(f"\n(b) overhead, {shape} = {np.prod(shape) / 1e6:.0f} Mvoxels, {result.instances} instances, "
                  f"{result.blocks} blocks of {job.per_block} crops, labels equal")
            print(f"    in-memory {mem_seconds:.2f}s, blockwise (2 workers, cluster start included) {seconds:.2f}s: "
                  f"ratio {seconds / mem_seconds:.2f} (target <= 1.25); best of {args.repeat}, all: "
                  + ", ".join(f"{m[0]:.1f}/{b[0]:.1f}s" for m, b in runs))
            one_seconds, one_result, _, _ = blockwise(folder, answers, shape, block, 1)
            one, two = sum(one_result.seconds.values()), sum(result.seconds.values())
            print(f"(c) all stages: 1 worker {one:.2f}s, 2 workers {two:.2f}s: {one / two:.2f}x (target >= 1.6); "
                  f"whole runs {one_seconds:.2f}s and {seconds:.2f}s: {one_seconds / seconds:.2f}x")
            print("    per stage, 1 / 2 workers: " + ", ".join(
                f"{k} {one_result.seconds[k]:.2f}/{result.seconds[k]:.2f}s" for k in result.seconds))
            print(f"    infer stage CPU per seed-size crop (instant endpoint): {crop_cpu(folder, answers) * 1e3:.0f} ms")
        if args.end_to_end:
            memory, blocks, instances = end_to_end(folder)
            print(f"(b') end to end, tiny model in-process, (40, 320, 320) ZXY, {instances} instances, labels equal: "
                  f"in-memory {memory:.1f}s, blockwise (2 workers) {blocks:.1f}s: ratio {blocks / memory:.2f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
