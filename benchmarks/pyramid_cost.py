"""What the precomputed label pyramid costs: its share of a blockwise run and of an in-memory
write, measured side by side on the same labels in one process.

    python benchmarks/pyramid_cost.py [--shape 384,384,96] [--workers 2]

Blockwise: a run from stored answers (tests' tubes; no model, so the share is an upper bound
for a real run, whose inference this leaves out) to a local ``precomputed://``; the pyramid
stage's seconds against the run's wall time and its other stages'. In memory: `write_store_labels`
of those labels with the pyramid and without it (the same call with no scale above level 0),
best of ``--repeat``; and `mode_downsample` alone, per level-0 voxel. A second in-memory pair on
random labels (every voxel its block's worst case for compressed_segmentation) as large again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT / "tests", ROOT / "tests" / "blockwise"):
    sys.path.insert(0, str(path))

from blockwise_support import PARAMETERS_FOR_TESTS, answers_store, job_for, run_options, tubes  # noqa: E402

from skoots_client.blockwise.pipeline import segment_job  # noqa: E402
from skoots_client.progress import Watch  # noqa: E402
from skoots_client.stores import parse, writer  # noqa: E402
from skoots_client.stores.downsample import mode_downsample  # noqa: E402
from skoots_client.voxel_size import VoxelSize  # noqa: E402

SIZE = VoxelSize((8.0, 8.0, 8.0), "nanometer")  # isotropic: 2x2x2 at every scale, the dearer case per level-0 voxel


def in_memory(folder: Path, labels: np.ndarray, repeat: int) -> tuple[float, float, int]:
    """Best seconds of `write_store_labels` with and without the pyramid, and its scale count."""
    def once(name: str) -> float:
        started = time.perf_counter()
        writer.write_store_labels(parse(f"precomputed://{folder}/{name}"), labels, voxel_size=SIZE, overwrite=True)
        return time.perf_counter() - started

    folder.mkdir(exist_ok=True)
    with_pyramid, without = [], []
    for _ in range(repeat):
        with_pyramid.append(once("with"))
        with mock.patch.object(writer, "scale_factors", lambda created: []):
            without.append(once("without"))
    scales = len(json.loads((folder / "with" / "info").read_text())["scales"])
    return min(with_pyramid), min(without), scales


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="384,384,96", help="volume X,Y,Z")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    voxels = int(np.prod(shape))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        vectors, skeleton = tubes(shape, max(8, voxels // 4000), PARAMETERS_FOR_TESTS.vector_scaling, radius=5.0, seed=2)
        (root / "answers").mkdir()
        answers = answers_store(root / "answers", vectors, skeleton)
        job = run_options(job_for(root, shape, PARAMETERS_FOR_TESTS, (4, 4, 4), answers), parse(f"precomputed://{root}/seg"),
                          fingerprint={"answers": str(answers)}, voxel_size=SIZE)
        job = dataclasses.replace(job, workers=args.workers, threads=1)
        started = time.perf_counter()
        result = segment_job(job, Watch(quiet=True))
        wall = time.perf_counter() - started
        import tensorstore as ts

        labels = np.asarray(ts.open({"driver": "neuroglancer_precomputed", "kvstore": f"file://{root}/seg"}).result()
                            .read().result())[..., 0].transpose(1, 0, 2)
        scales = len(json.loads((root / "seg" / "info").read_text())["scales"])
        pyramid = result.seconds.get("pyramid", 0.0)
        print(f"{shape[0]}x{shape[1]}x{shape[2]} = {voxels / 1e6:.1f} Mvoxels, {int(labels.max())} instances, "
              f"{np.count_nonzero(labels) / voxels:.0%} labelled, {scales} scales, {args.workers} workers")
        stages = ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items())
        print(f"  blockwise (stored answers, no model): wall {wall:.1f} s; stages (s): {stages}")
        print(f"  blockwise pyramid stage: {pyramid:.1f} s = {pyramid / wall:.1%} of the run's wall time "
              f"({result.totals.get('pyramid', 0)} tasks)")
        started = time.perf_counter()
        level = labels
        for _ in range(scales - 1):
            level = mode_downsample(level, (2, 2, 2))
        mode = time.perf_counter() - started
        print(f"  mode_downsample alone, every scale: {mode:.2f} s = {mode / voxels * 1e9:.0f} ns per level-0 voxel")
        for name, data in (("these labels", labels),
                           ("random labels", np.random.default_rng(0).integers(0, 2**20, shape).astype(np.uint32))):
            with_pyramid, without, count = in_memory(root / "memory", data, args.repeat)
            extra = with_pyramid - without
            print(f"  in memory, {name}: write_store_labels with the pyramid {with_pyramid:.2f} s, without {without:.2f} s "
                  f"({count} scales): +{extra:.2f} s = {extra / without:+.1%} of the write")


if __name__ == "__main__":
    main()
