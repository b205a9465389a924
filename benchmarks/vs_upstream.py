"""The goal figure: a whole CPU run of the default cfg, ours against the upstream pipeline, side by side.

    python benchmarks/vs_upstream.py [--shape 24,640,640] [--rounds 1] [--tile auto] [--reference]

One volume (the tests' blobs, uint16 TIFF), one checkpoint of the default cfg (UNeXT
32-64-128-64-32, kernel 7; random weights with lively heads), two whole runs, each in its own
child process, timed from start to the labels written:

* **upstream**: upstream's network (bism 0.0.6's UNeXT built by skoots 0.0.5's
  ``cfg_to_bism_model``, eager FP32 torch, the way upstream's ``eval`` feeds it ``x / 2**16``),
  then the seed's steps 4-10 with upstream's own functions (``tests/upstream_seed.py``: per-crop
  dilations, stitching, ``efficient_flood_fill``, ``vector_to_embedding``,
  ``index_skeleton_by_embed``), reading the TIFF and writing the labels. Upstream's ``eval``
  itself cannot run on a CPU (it calls ``.cuda()``) and compiles with inductor for CUDA; eager
  is its CPU equivalent.
* **ours**: ``skoots-client segment VOLUME --repository R`` in-process (the default runtime:
  OpenVINO FP32 on a CPU) with ``--tile`` as given (``auto`` by default) and, with
  ``--reference``, also at the model's crop with ``--reference-borders`` (the bitwise reference
  mode; labels are then checked equal to upstream's up to renumbering).

The export (one-off per model) is timed on its own line, not in the ratio. Rounds alternate the
sides so the machine's load hits both. Random weights answer most strongly at crop borders, so
a tile changes their labels: the tile's fidelity is judged on trained models
(``benchmarks/tile_fidelity.py``); here only time and memory count.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import common
import numpy as np

DEFAULT_SHAPE = "24,640,640"


def upstream_child(checkpoint: Path, volume: Path, out: Path) -> None:
    """Run the upstream pipeline once: read the TIFF, infer every crop, post-process, write."""
    import tifffile
    import torch
    from skoots.lib.utils import cfg_to_bism_model
    from upstream_seed import seed_protocol

    from skoots_export.contract.wire import ModelParameters

    raw = torch.load(checkpoint, weights_only=False, map_location="cpu")
    network = cfg_to_bism_model(raw["cfg"])
    network.load_state_dict(raw["model_state_dict"])
    network.train()  # as upstream's eval; drop path is 0, so this is inference

    def seed_step_4(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The seed's step 4 on upstream's output: vectors and skeleton where probability > 0.5."""
        out = network(x.float())
        mask = out[:, [-1]].gt(0.5)
        return (out[:, 0:3] * mask).half(), (out[:, [-2]] * mask).gt(0.8).float(), out[:, [-1]]

    p = ModelParameters()  # the seed's constants: crop 300x300x20, overlap 10x10x5, scaling 60,60,12
    image = tifffile.imread(volume)
    labels = seed_protocol(image, seed_step_4, p.crop, p.overlap, raw["cfg"].SKOOTS.VECTOR_SCALING, p.embedding_iterations)
    tifffile.imwrite(out, labels.transpose(2, 0, 1).astype(np.uint32))  # [X, Y, Z] -> [Z, X, Y]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default=DEFAULT_SHAPE, help=f"volume Z,X,Y (default {DEFAULT_SHAPE})")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds of both sides")
    parser.add_argument("--tile", default="auto", help="our --tile: auto, Z,Y,X, or 'crop' for the model's crop")
    parser.add_argument("--reference", action="store_true", help="also run ours in reference mode and check it equals upstream")
    parser.add_argument("--model", choices=("default", "mid"), default="default",
                        help="default: the default cfg (the goal); mid: a small UNeXT, for a quick check")
    parser.add_argument("--upstream-child", nargs=3, metavar=("CHECKPOINT", "VOLUME", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream_child:
        upstream_child(*(Path(a) for a in args.upstream_child))
        return

    import tifffile
    from checkpoints import skoots_cfg, write_checkpoint

    from skoots_client.evaluate import adjusted_rand_index, contingency_table

    z, x, y = common.triple(args.shape)
    work = Path(tempfile.mkdtemp(prefix="vs-upstream-"))
    cfg = skoots_cfg() if args.model == "default" else skoots_cfg(**common.MID)
    checkpoint = write_checkpoint(work / "model.trch", cfg, seed=5, make_lively=True)
    volume = work / "volume.tif"
    tifffile.imwrite(volume, common.blobs((z, x, y)))
    bin_dir = Path(sys.executable).parent
    export = common.run_child([str(bin_dir / "skoots"), "export", str(checkpoint), "--repository", str(work / "repo"), "--backend", "python", "--device", "cpu"])

    def ours(tile: str | None, reference: bool = False) -> common.ChildRun:
        argv = [str(bin_dir / "skoots-client"), "segment", str(volume), "--repository", str(work / "repo"), "--out", str(work / "ours.tif"), "--overwrite"]
        argv += ["--tile", tile] if tile and tile != "crop" else []
        argv += ["--reference-borders"] if reference else []
        return common.run_child(argv)

    def upstream() -> common.ChildRun:
        return common.run_child([sys.executable, __file__, "--upstream-child", str(checkpoint), str(volume), str(work / "upstream.tif")])

    print(f"volume {(z, x, y)} (Z, X, Y) = {z * x * y / 1e6:.1f} Mvoxels, {args.model} cfg; machine: {common.machine()}")
    print(f"export (one-off, not in the ratio): {export.seconds:.1f} s")
    print(f"{'round':>5}  {'side':40} {'seconds':>8} {'peak RSS MiB':>13} {'CPU s':>8} {'upstream / ours':>16}")
    ratios, theirs = [], None
    for r in range(1, args.rounds + 1):
        sides = [("upstream", upstream), ("ours", lambda: ours(args.tile))]
        runs = dict(sides[::-1] if r % 2 == 0 else sides)  # alternate who goes first
        runs = {name: run() for name, run in runs.items()}
        theirs, mine = runs["upstream"], runs["ours"]
        ratios.append(theirs.seconds / mine.seconds)
        row(r, "upstream (bism eager + seed steps 4-10)", theirs)
        row(r, f"ours (--tile {args.tile})", mine, theirs)
    if args.reference:
        reference = ours("crop", reference=True)
        row(0, "ours (model crop, --reference-borders)", reference, theirs)
        table = contingency_table(tifffile.imread(work / "ours.tif"), tifffile.imread(work / "upstream.tif"))
        print(f"reference mode vs upstream: ARI {adjusted_rand_index(table):.6f} (our fixes to the reference: docs/SEMANTICS.md)")
    print(f"whole run, upstream / ours: {' '.join(f'{v:.2f}x' for v in ratios)} (mean {np.mean(ratios):.2f}x)")


def row(round_: int, name: str, run: common.ChildRun, against: common.ChildRun | None = None) -> None:
    ratio = f"{against.seconds / run.seconds:16.2f}" if against is not None else ""
    tile = next((line.strip() for line in run.stdout.splitlines() if line.startswith("tile ")), "")  # our summary's tile line
    print(f"{round_ or '':>5}  {name:40} {run.seconds:8.1f} {run.peak_rss / 2**20:13.0f} {run.cpu_seconds:8.1f} {ratio}"
          + (f"   ({tile})" if tile else ""), flush=True)

if __name__ == "__main__":
    main()
