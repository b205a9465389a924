"""Time post-processing steps 6-10 on NumPy and, where there is a GPU, CuPy, side by side.

    python benchmarks/postprocess_timing.py [--shape 512,512,64]

Prints one row per step with seconds per backend and the NumPy/CuPy ratio. The volume is a
synthetic segmentation-like field (sparse skeleton, vectors in [-1, 1]); the outputs of the
two backends are checked equal before any time is reported.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from skoots_client import postprocess as pp


def synthetic(shape: tuple[int, int, int], seed: int = 0):
    rng = np.random.default_rng(seed)
    skeleton = (rng.random(shape) > 0.995).astype(np.uint8)
    vectors = rng.uniform(-1, 1, (3, *shape)).astype(np.float16)
    crop = (rng.random((300, 300, 20)) > 0.99).astype(np.uint8)
    return crop, skeleton, vectors


def timed(fn, xp, repeat: int = 3):
    best, out = float("inf"), None
    for _ in range(repeat):
        if xp is not np:
            xp.cuda.Device().synchronize()
        start = time.perf_counter()
        out = fn()
        if xp is not np:
            xp.cuda.Device().synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


def run(xp, crop, skeleton, vectors):
    to = (lambda a: xp.asarray(a)) if xp is not np else (lambda a: a)
    crop_d, skeleton_d, vectors_d = to(crop), to(skeleton), to(vectors)
    rows = {}
    rows["dilate one 300x300x20 crop"] = timed(lambda: pp.dilate_skeleton(crop_d, (4, 4, 1)), xp)
    dilated = pp.dilate_skeleton(skeleton_d, (1, 1, 0))
    rows["label (6-connected)"] = timed(lambda: pp.label_skeleton(dilated), xp)
    labels, _ = pp.label_skeleton(dilated)
    rows["embed + assign, N=2"] = timed(lambda: pp.assign_instances(vectors_d, labels, (60.0, 60.0, 12.0), 2), xp)
    assigned = pp.assign_instances(vectors_d, labels, (60.0, 60.0, 12.0), 2)
    rows["renumber"] = timed(lambda: pp.renumber_labels(assigned.copy()), xp)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="512,512,64")
    shape = tuple(int(v) for v in parser.parse_args().shape.split(","))
    crop, skeleton, vectors = synthetic(shape)
    pp.assign_instances(vectors[:, :4, :4, :4].copy(), np.zeros((4, 4, 4), np.uint32), (1, 1, 1), 2)  # compile
    cpu = run(np, crop, skeleton, vectors)
    gpu = None
    try:
        xp = pp.device_array_module("gpu")
        run(xp, crop, skeleton, vectors)  # warm-up: kernels compile on first use
        gpu = run(xp, crop, skeleton, vectors)
        for name in cpu:
            a, b = cpu[name][1], gpu[name][1]
            a, b = (a[0], b[0]) if isinstance(a, tuple) else (a, b)
            assert np.array_equal(np.asarray(a != 0), (b != 0).get()), f"{name}: CuPy differs from NumPy"
    except ValueError as e:
        print(f"(no GPU: {e})")
    voxels = int(np.prod(shape))
    print(f"volume {shape} = {voxels / 1e6:.1f} Mvoxels")
    print(f"{'step':32} {'numpy s':>9} {'cupy s':>9} {'ratio':>7}")
    for name, (seconds, _) in cpu.items():
        g = gpu[name][0] if gpu else float("nan")
        print(f"{name:32} {seconds:9.4f} {g:9.4f} {seconds / g if gpu else float('nan'):7.1f}")


if __name__ == "__main__":
    main()
