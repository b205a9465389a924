"""(a) Post-processing (docs/SEMANTICS.md steps 5-10) of ours against upstream skoots' functions, side by side.

    python benchmarks/postprocess_vs_upstream.py [--shape 50,500,500] [--tubes 600] [--repeat 2]

Both sides post-process the *same* per-crop network answers, with the seed's constants (crop
300x300x20, overlap 10x10x5, vector scaling 60,60,12, dilations 1 x 3x3x3 + 3 x 3x3x1, N = 2):
the answers of a perfect network for random tubes (``common.ideal_outputs``), cut into the
crops of upstream's cropper.

* upstream: the seed's loop with skoots 0.0.5's ``binary_dilation`` / ``binary_dilation_2d``
  per crop, stitching, ``efficient_flood_fill``, ``vector_to_embedding`` and
  ``index_skeleton_by_embed`` in 500x500x50 blocks (``tests/upstream_seed.py``, the replay the
  parity test uses);
* ours: ``segment_volume`` with ``--reference-borders`` fed the stored answers by a replaying
  endpoint — per-crop dilation and stitching as answers arrive, labelling, fused embedding +
  assignment, renumbering — on the CPU, and on the GPU too where CuPy sees one. Our time also
  includes cutting and normalising the input crops that the replay then ignores.

The labels are checked equal up to renumbering over the whole volume (with
``--reference-borders`` the reference is defined everywhere on a volume that fits one
500x500x50 block) before any time is printed. Best of ``--repeat`` runs per side.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
from pathlib import Path

import common
import numpy as np


class Replay:
    """An endpoint that answers each batch with stored outputs, in the order it is asked."""

    name, concurrency = "replay", 1

    def __init__(self, answers: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.answers, self.next = answers, 0

    def infer(self, batch: np.ndarray, probability: bool = False) -> tuple[np.ndarray, np.ndarray]:
        answer = self.answers[self.next]
        self.next += 1
        return answer


def best_of(repeat: int, fn):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="50,500,500", help="volume Z,X,Y (at most 50,500,500: one reference block)")
    parser.add_argument("--tubes", type=int, default=600, help="random tubes (instances) in the volume")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    z, x, y = common.triple(args.shape)
    shape = (x, y, z)

    import torch
    from reference_pipeline import same_partition
    from upstream_seed import allow_upstream_import_without_openai_triton, seed_postprocess

    from skoots_client import postprocess
    from skoots_client.in_memory import segment_volume
    from skoots_client.tiling import crop_grid
    from skoots_client.volume import Volume
    from skoots_export.contract.wire import ModelParameters

    allow_upstream_import_without_openai_triton()
    from skoots.lib.cropper import crops

    p = ModelParameters()  # the seed's constants
    vectors, skeleton = common.ideal_outputs(shape, args.tubes, p.vector_scaling)
    size = [min(c, n) for c, n in zip(p.crop, shape)]

    def answer(origin) -> tuple[np.ndarray, np.ndarray]:
        window = tuple(slice(o, o + c) for o, c in zip(origin, size))
        return vectors[(slice(None), *window)][None].copy(), skeleton[window][None, None].copy()

    origins = [tuple(int(v) for v in o) for _, o in crops(torch.zeros((1, *shape), dtype=torch.int8), list(p.crop), list(p.overlap))]
    upstream_answers = [(o, *(torch.from_numpy(a) for a in answer(o))) for o in origins]
    grid = crop_grid(shape, p.crop, p.overlap, reference_borders=True)
    assert sorted(set(origins)) == sorted(c.start for c in grid), "our grid and upstream's cropper disagree"
    our_answers = [answer(c.start) for c in grid]
    volume = Volume(np.zeros(shape, np.uint16), Path("synthetic"))

    def upstream() -> np.ndarray:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its progress bars
            return seed_postprocess(upstream_answers, shape, p.crop, p.overlap, p.vector_scaling, p.embedding_iterations)

    backends = [("numpy", np)]
    try:
        backends.append(("cupy", postprocess.device_array_module("gpu")))
    except ValueError:
        pass
    for _, xp in backends:  # compile kernels outside the timing
        segment_volume(Volume(np.zeros((16, 16, 8), np.uint16), Path("w")), p, [Replay([answer((0, 0, 0))])], batch_size=1, xp=xp)

    upstream_s, theirs = best_of(args.repeat, upstream)
    rows = []
    for name, xp in backends:
        seconds, result = best_of(args.repeat, lambda xp=xp: segment_volume(volume, p, [Replay(our_answers)], batch_size=1, xp=xp,
                                                                           reference_borders=True))
        labels = result.labels.get() if hasattr(result.labels, "get") else result.labels
        if not same_partition(labels, theirs):
            raise SystemExit(f"error: our labels ({name}) differ from upstream's; no timings reported")
        rows.append((name, seconds, result))

    voxels = int(np.prod(shape))
    print(f"volume {(z, x, y)} (Z, X, Y) = {voxels / 1e6:.1f} Mvoxels; {len(grid)} crops of {p.crop} (upstream's cropper: {len(origins)})")
    print(f"machine: {common.machine()}")
    print(f"labels equal up to renumbering over the whole volume: {rows[0][2].instances} instances")
    print(f"{'steps 5-10':22} {'seconds':>9} {'Mvox/s':>8} {'speed-up':>9}")
    print(f"{'upstream skoots 0.0.5':22} {upstream_s:9.3f} {voxels / upstream_s / 1e6:8.2f} {1.0:9.1f}")
    for name, seconds, result in rows:
        stages = ", ".join(f"{k} {v:.3f}" for k, v in result.seconds.items())
        print(f"{'ours, ' + name:22} {seconds:9.3f} {voxels / seconds / 1e6:8.2f} {upstream_s / seconds:9.1f}   ({stages})")


if __name__ == "__main__":
    main()
