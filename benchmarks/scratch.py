"""Blockwise scratch (issue 29): the work directory's peak bytes per volume voxel during a run,
and the run's wall time, today's encoding against this tree's, side by side in one run.

    python benchmarks/scratch.py [--before /tmp/b29/before] [--sizes 600x600x100,1680x1680x110] [--workers 2]

``--before`` is a checkout of the commit before the change (``git worktree add DIR d80e16c``):
its ``client/`` is imported as ``skoots_client`` by putting a link to it first on PYTHONPATH,
in the same virtual environment. Both sides are fed the same answers of a perfect network
(``common.ideal_outputs`` for dense random tubes on a 300x300x50 pattern, repeated
periodically over larger volumes: no inference), with the seed's constants (crop 300x300x20,
overlap 10x10x5, S = 60,60,12, N = 2) and the default blocks. Each run is a process of its own
(two worker processes); a thread walks the work directory every 0.1 s and keeps the largest
total it saw: the peak, not what is left at the end. ``intermediates`` leaves out ``out/``,
the labels being written (an output, counted in the total). The labels of both sides are
checked bitwise equal. Sizes alternate before/after so both see the same machine load.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import common
import numpy as np

PATTERN = (300, 300, 50)
CROP, OVERLAP, SCALING = (300, 300, 20), (10, 10, 5), (60.0, 60.0, 12.0)
TUBES, RADIUS = 900, 9.0  # dense: most of the pattern is object


def shape_of(text: str) -> tuple[int, int, int]:
    return tuple(int(v) for v in text.lower().split("x"))  # type: ignore[return-value]


def dense_answers(folder: Path) -> tuple[Path, float]:
    import zarr

    vectors, skeleton = common.ideal_outputs(PATTERN, TUBES, SCALING, radius=RADIUS, seed=0)
    path = folder / "answers.zarr"
    group = zarr.open_group(str(path), mode="w")
    group.create_array("vectors", data=vectors, chunks=(3, 150, 150, 50))
    group.create_array("skeleton", data=skeleton, chunks=(150, 150, 50))
    return path, float(np.any(vectors != 0, axis=0).mean())


def _sizes(folder: Path) -> tuple[int, int]:
    """Bytes under ``folder``, and those outside its ``out/``."""
    total = inner = 0
    stack = [(folder, False)]
    while stack:
        path, output = stack.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue  # a folder removed while walked
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((Path(entry.path), output or (path == folder and entry.name == "out")))
                else:
                    size = entry.stat(follow_symlinks=False).st_size
                    total += size
                    inner += 0 if output else size
            except OSError:
                continue
    return total, inner


class Sampler(threading.Thread):
    """Walks ``folder`` every ``every`` seconds; ``peak``: the largest (total, intermediates) seen."""

    def __init__(self, folder: Path, every: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.folder, self.every, self.peak, self.samples = folder, every, [0, 0], 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            total, inner = _sizes(self.folder)
            self.peak = [max(self.peak[0], total), max(self.peak[1], inner)]
            self.samples += 1
            self.stopped.wait(self.every)


def child(answers: Path, shape: tuple[int, int, int], folder: Path, workers: int) -> dict:
    """One blockwise run in this process (whichever ``skoots_client`` it imports)."""
    import skoots_client
    from skoots_client import postprocess
    from skoots_client.blockwise.blocks import default_per_block
    from skoots_client.blockwise.job import Job, StoredAnswers
    from skoots_client.blockwise.pipeline import segment_job
    from skoots_client.normalize import Normalization
    from skoots_client.progress import Watch
    from skoots_client.specs import OutputSpec
    from skoots_export.contract.wire import ModelParameters

    parameters = ModelParameters(crop=CROP, overlap=OVERLAP, vector_scaling=SCALING, embedding_iterations=2)
    lh, vh = postprocess.halo_widths(SCALING, 2)
    per_block = default_per_block(shape, CROP, OVERLAP, lh, vh)
    work = folder / "work"
    job = Job(volume=answers, channel=None, axes=None, normalization=Normalization("dtype"), work=work, shape=shape,
              per_block=per_block, reference_borders=False, parameters=parameters, source=StoredAnswers(answers), batch_size=1,
              threads=1, label_halo=lh, vector_halo=vh)
    job = dataclasses.replace(job, output=OutputSpec(out=folder / "labels.zarr", overwrite=True), fingerprint={"bench": str(shape)},
                              workers=workers)
    sampler = Sampler(work)
    sampler.start()
    started = time.perf_counter()
    result = segment_job(job, Watch(quiet=True))
    wall = time.perf_counter() - started
    sampler.stopped.set()
    sampler.join()
    return {"client": str(Path(skoots_client.__file__).parent), "wall": wall, "peak": sampler.peak[0], "intermediates": sampler.peak[1],
            "samples": sampler.samples, "blocks": result.blocks, "block": list(result.block), "instances": result.instances,
            "seconds": {k: round(v, 1) for k, v in result.seconds.items()}}


def run_side(side: str, before: Path, answers: Path, shape, folder: Path, workers: int) -> dict:
    env = dict(os.environ)
    if side == "before":
        link = folder / "before-path"
        link.mkdir(exist_ok=True)
        (link / "skoots_client").unlink(missing_ok=True)
        (link / "skoots_client").symlink_to(before / "client")
        env["PYTHONPATH"] = os.pathsep.join([str(link), env.get("PYTHONPATH", "")])
    here = Path(__file__).resolve().parent
    env["PYTHONPATH"] = os.pathsep.join([env.get("PYTHONPATH", ""), str(here), str(here.parent / "tests")])
    run = folder / side
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir()
    done = subprocess.run([sys.executable, __file__, "--child", str(answers), "x".join(map(str, shape)), str(run), str(workers)],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{side} {shape} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def same_labels(a: Path, b: Path) -> bool:
    import zarr

    x, y = zarr.open_array(str(a), mode="r"), zarr.open_array(str(b), mode="r")
    if x.shape != y.shape or x.dtype != y.dtype:
        return False
    step = max(1, x.shape[0] // 8)
    return all(np.array_equal(x[i:i + step], y[i:i + step]) for i in range(0, x.shape[0], step))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, default=Path("/tmp/b29/before"))
    parser.add_argument("--sizes", default="600x600x100,1680x1680x110")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        answers, shape, folder, workers = args.child
        print(json.dumps(child(Path(answers), shape_of(shape), Path(folder), int(workers))))
        return
    if not (args.before / "client" / "blockwise" / "stages.py").is_file():
        raise SystemExit(f"--before {args.before} is no checkout of the commit before the change (git worktree add DIR d80e16c)")
    with tempfile.TemporaryDirectory(prefix="scratch-bench-") as tmp:
        folder = Path(tmp)
        answers, foreground = dense_answers(folder)
        print(f"dense answers: {TUBES} tubes of radius {RADIUS} on {PATTERN}, foreground {foreground:.0%} of voxels; "
              f"S = {SCALING}, N = 2, crop {CROP}, default blocks, {args.workers} workers")
        print(f"{'volume':>16} {'voxels':>8} {'side':>6} {'blocks':>6} {'peak B/vox':>10} {'interm. B/vox':>13} "
              f"{'peak MB':>8} {'wall s':>7}  stages s")
        for text in args.sizes.split(","):
            shape = shape_of(text)
            voxels = int(np.prod(shape))
            results = {}
            for side in ("before", "after"):
                r = results[side] = run_side(side, args.before, answers, shape, folder, args.workers)
                print(f"{text:>16} {voxels / 1e6:>7.0f}M {side:>6} {r['blocks']:>6} {r['peak'] / voxels:>10.3f} "
                      f"{r['intermediates'] / voxels:>13.3f} {r['peak'] / 1e6:>8.1f} {r['wall']:>7.1f}  {r['seconds']}", flush=True)
            equal = same_labels(folder / "before" / "labels.zarr", folder / "after" / "labels.zarr")
            b, a = results["before"], results["after"]
            print(f"{'':>16} peak {b['peak'] / max(a['peak'], 1):.1f}x smaller, wall {a['wall'] / b['wall']:.2f}x of before; "
                  f"labels bitwise equal: {equal}; {a['instances']} instances; samples {b['samples']}/{a['samples']}", flush=True)
            if not equal:
                raise SystemExit("labels differ")
            shutil.rmtree(folder / "before", ignore_errors=True)
            shutil.rmtree(folder / "after", ignore_errors=True)


if __name__ == "__main__":
    main()
