"""What ``--meshes`` and ``--skeletons`` cost (issue 30): their share of a blockwise run and the
bytes they write per instance, measured side by side in one run.

    python benchmarks/neuroglancer_costs.py [--size 2240x2240x100] [--workers 2] [--repeat 1]

Every run is fed the same answers of a perfect network (``common.ideal_outputs`` for dense
random tubes on a 300x300x50 pattern, repeated periodically over the volume: no inference),
with the seed's constants (crop 300x300x20, overlap 10x10x5, S = 60,60,12, N = 2) and the
default blocks, written blockwise to a local ``precomputed://`` output (its label pyramid
included) on ``--workers`` worker processes. Runs alternate: labels only, ``--meshes``,
``--skeletons``, both; the labels of every run are checked bitwise equal to the first.

With no inference, post-processing is all of these runs: a share here is the worst case. A
CPU run with a network spends ~4-9 s per seed-size crop on inference (cpu_runtimes.py), and
the script prints the share in such a run too, from the volume's crop count and
``--seconds-per-crop`` (default 4: OpenVINO, the CPU default).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path

import common
import numpy as np
from blockwise_scaling import job_for
from scratch import PATTERN, RADIUS, TUBES, dense_answers, shape_of

RUNS = {"labels only": {}, "--meshes": {"meshes": True}, "--skeletons": {"skeletons": True},
        "--meshes --skeletons": {"meshes": True, "skeletons": True}}


def folder_bytes(path: Path) -> tuple[int, int]:
    """(bytes, files) under ``path``."""
    total = files = 0
    for root, _, names in os.walk(path):
        for name in names:
            total += os.path.getsize(os.path.join(root, name))
            files += 1
    return total, files


def run(folder: Path, answers: Path, shape, workers: int, **options) -> tuple[float, object, Path]:
    from skoots_client.blockwise.pipeline import segment_job
    from skoots_client.progress import Watch
    from skoots_client.specs import OutputSpec
    from skoots_client.stores import parse

    out = folder / "out"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(folder / "work", ignore_errors=True)
    job = dataclasses.replace(job_for(folder, answers, shape, None, workers),
                              output=OutputSpec(out=parse(f"precomputed://{out}"), overwrite=True, **options),
                              fingerprint={"bench": str(shape)}, workers=workers)
    started = time.perf_counter()
    result = segment_job(job, Watch(quiet=True))
    return time.perf_counter() - started, result, out


def labels_of(out: Path) -> np.ndarray:
    import tensorstore as ts

    return ts.open({"driver": "neuroglancer_precomputed", "kvstore": f"file://{out}"}).result().read().result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=shape_of, default=(2240, 2240, 100), help="runtime X x Y x Z voxels")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seconds-per-crop", type=float, default=4.0)
    args = parser.parse_args()
    print(common.machine())
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        folder = Path(tmp)
        answers, foreground = dense_answers(folder)
        print(f"dense answers: {TUBES} tubes of radius {RADIUS} on {PATTERN}, foreground {foreground:.0%}; volume {args.size}, "
              f"{np.prod(args.size) / 1e9:.2f} Gvoxels, {args.workers} workers")
        best: dict[str, tuple[float, dict[str, float], int, dict[str, tuple[int, int]]]] = {}
        reference = None
        crops = 0
        for _ in range(args.repeat):
            for name, options in RUNS.items():
                seconds, result, out = run(folder, answers, args.size, args.workers, **options)
                labels = labels_of(out)
                if reference is None:
                    reference = labels
                assert np.array_equal(labels, reference), f"{name}: labels differ from the labels-only run"
                written = {kind: folder_bytes(out / kind) for kind in ("mesh", "skeletons") if (out / kind).is_dir()}
                crops = result.crops
                if name not in best or seconds < best[name][0]:
                    best[name] = (seconds, dict(result.seconds), result.instances, written)
                print(f"  {name:22s} {seconds:7.1f} s  stages: " + ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items()))
        base = best["labels only"][0]
        inference = crops * args.seconds_per_crop / max(args.workers, 1)
        print(f"\nbest of {args.repeat}; {crops} seed crops: ~{inference:.0f} s of inference on {args.workers} workers "
              f"at {args.seconds_per_crop:g} s per crop")
        print(f"{'run':22s} {'seconds':>8s} {'extra':>7s} {'share (no inference)':>21s} {'share (with inference)':>23s}  bytes per instance")
        for name, (seconds, _, instances, written) in best.items():
            extra = seconds - base
            per = ", ".join(f"{kind} {b / max(instances, 1):,.0f} B ({files / max(instances, 1):.1f} files)"
                            for kind, (b, files) in written.items())
            print(f"{name:22s} {seconds:8.1f} {extra:+7.1f} {extra / seconds:20.0%} {extra / (seconds + inference):22.0%}  {per}")
        print(f"instances: {best['labels only'][2]}")


if __name__ == "__main__":
    main()
