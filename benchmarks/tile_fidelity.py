"""Inference tile vs the model's crop: fidelity, network work, time and memory (issue 28).

    python benchmarks/tile_fidelity.py [--seeds 7 8] [--shape 48,384,384] [--default-shape 40,320,320]
                                       [--threads 1] [--repeats 1] [--models demo seed default]

A model's crop is what it was trained on and what ``--reference-borders`` tiles with; a larger
*tile* (same overlap) only changes what the network sees near the old crop borders. Whether
that changes the labels is judged here on trained models against ground truth:

* ``demo``: examples/demo_model.trch (card crop 136x136x48, overlap 8x8x4);
* ``seed``: examples/seed_regime_model.trch, the same network trained in the seed's z regime
  (card crop 136x136x20, overlap 8x8x5; examples/train.py's docstring re-makes it);
* ``default``: the default cfg (real-size UNeXT, random "lively" weights) with the seed's crop
  300x300x20 and overlap 10x10x5, on one 320x320x40 volume (tiles 300x300x20, 300x300x40 and
  the whole 320x320x40) — speed and memory only: random weights answer most strongly at crop
  borders, so its fidelity columns are printed but marked "untrained, not judged".

Each model segments held-out synthetic volumes (examples/synthetic.py; seeds other than the
training 1000+ and validation 900+) with its crop, with the crop's z doubled (where z already
covers the volume: x and y doubled), with one tile covering the whole volume, and with
``--tile auto`` (the tile it picks under this machine's memory is printed). Runs are interleaved
(crop, tile, whole, auto, crop, ...) so load on the shared machine hits all alike. Each run is ``skoots_client.segment``
in-process (no server, TorchScript on the CPU) in a child process, whose wall time (imports
and model load included, as a command-line run) and peak RSS (``wait4``) are reported, with:
network input voxels per output voxel (from ``client/tiling.py``'s ``crop_grid``), instances,
ARI of the labels against the model-crop run's, and F1@0.5 and ARI against the truth.

Decision rule (issue 28): ``--tile auto`` may become the default only if, on every trained
model and seed, each larger tile's labels have ARI >= 0.999 against the model-crop run and the
same F1@0.5 against the truth to the printed precision (3 decimals).

Tiles are printed X x Y x Z (the model card's order); ``--shape`` is Z,Y,X like the files.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import common
import numpy as np
from common import ROOT, machine

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the demo's `examples` package

Triple = tuple[int, int, int]
ARI_NEEDED = 0.999
UNJUDGED = "untrained, not judged"


def tile_keyword(tile_zyx: Triple | str) -> dict[str, Triple | str]:
    """The ``segment`` keyword that sets the inference tile: ``(z, y, x)`` (the API's order) or "auto"."""
    return {"tile": tile_zyx}


def inputs_per_output(shape_xyz: Triple, tile_xyz: Triple, overlap_xyz: Triple) -> float:
    """Network input voxels per output voxel: every crop's voxels over the volume's."""
    from skoots_client.tile_choice import input_per_output

    return input_per_output(shape_xyz, tile_xyz, overlap_xyz)


def tiles(crop_xyz: Triple, shape_xyz: Triple) -> list[tuple[str, Triple | None]]:
    """The model crop, a doubled tile (z doubled; x and y where z already covers the volume), the whole
    volume, and ``auto`` (None: the tile ``--tile auto`` picks, known once it ran)."""
    crop = tuple(min(c, n) for c, n in zip(crop_xyz, shape_xyz))
    if crop[2] < shape_xyz[2]:
        doubled = (crop[0], crop[1], min(2 * crop[2], shape_xyz[2]))
    else:
        doubled = (min(2 * crop[0], shape_xyz[0]), min(2 * crop[1], shape_xyz[1]), crop[2])
    found = [("model crop", crop), ("doubled", doubled), ("whole", tuple(shape_xyz))]
    kept: list[tuple[str, Triple | None]] = []
    for name, tile in found:  # a small volume can make two of them the same tile
        if all(tile != t for _, t in kept):
            kept.append((name, tile))  # type: ignore[arg-type]
    return [*kept, ("auto", None)]  # --tile auto: its tile is what the run reports


def xyz(triple: Sequence[int]) -> str:
    return "x".join(map(str, triple))


@dataclasses.dataclass(frozen=True)
class Model:
    name: str
    repository: Path
    crop: Triple  # X, Y, Z
    overlap: Triple
    trained: bool


@dataclasses.dataclass
class Row:
    model: str
    seed: int
    tile_name: str
    tile: Triple | None  # None: auto, until its run says which tile it picked
    inputs: float
    seconds: list[float]
    segment_seconds: list[float]
    peak_rss: int
    instances: int
    labels: Path


def export(checkpoint: Path, repository: Path, name: str, trained: bool, **overrides) -> Model:
    from skoots_export.exporter import export_checkpoint
    from skoots_export.model_config import Device

    result = export_checkpoint(checkpoint, repository=repository, backend="libtorch", device=Device.CPU, max_batch_size=2, **overrides)
    parameters = result.parameters
    return Model(name, repository, tuple(parameters.crop), tuple(parameters.overlap), trained)  # type: ignore[arg-type]


def run_once(model: Model, volume: Path, tile_xyz: Triple | None, out: Path, threads: int | None) -> tuple[float, float, int, int, Triple]:
    """One child segment (``tile_xyz`` None: ``--tile auto``): (wall seconds, segment() seconds,
    peak RSS bytes, instances, the tile the run used)."""
    tile = "auto" if tile_xyz is None else tile_xyz[::-1]
    order = {"repository": str(model.repository), "volume": str(volume), "out": str(out), "tile_zyx": tile, "threads": threads}
    run = common.run_child([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(order)])
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    return run.seconds, answer["seconds"], run.peak_rss, answer["instances"], tuple(answer["tile_xyz"])  # type: ignore[return-value]


def child(order: dict) -> None:
    """The measured process: one in-process ``segment``; prints its own time and instance count."""
    import skoots_client

    started = time.perf_counter()
    result = skoots_client.segment(
        order["volume"], out=order["out"], repository=order["repository"], overwrite=True, quiet=True, device="cpu",
        runtime="torchscript", threads=order["threads"], **tile_keyword(order["tile_zyx"] if order["tile_zyx"] == "auto" else tuple(order["tile_zyx"])),
    )
    used = re.search(r"tile z (\d+), y (\d+), x (\d+)", result.summary)  # the summary's tile line
    if used is None:
        raise SystemExit(f"error: the run's summary names no tile:\n{result.summary}")
    print(json.dumps({"seconds": time.perf_counter() - started, "instances": result.instances,
                      "tile_xyz": [int(v) for v in used.groups()[::-1]]}))


def measure(model: Model, volumes: dict[int, tuple[Path, Path]], shape_xyz: Triple, repeats: int, threads: int | None, folder: Path) -> list[Row]:
    rows: list[Row] = []
    for seed, (raw, _) in volumes.items():
        grid = tiles(model.crop, shape_xyz)
        seed_rows = [
            Row(model.name, seed, name, tile, inputs_per_output(shape_xyz, tile, model.overlap) if tile else 0.0, [], [], 0, 0,
                folder / f"{model.name}-{seed}-{xyz(tile) if tile else 'auto'}.tif")
            for name, tile in grid
        ]
        for _ in range(repeats):
            for row in seed_rows:  # interleaved: crop, tile, whole, auto, crop, ...
                seconds, inside, peak, instances, used = run_once(model, raw, row.tile if row.tile_name != "auto" else None, row.labels, threads)
                if row.tile_name == "auto":
                    row.tile, row.inputs = used, inputs_per_output(shape_xyz, used, model.overlap)
                row.seconds.append(seconds)
                row.segment_seconds.append(inside)
                row.peak_rss, row.instances = max(row.peak_rss, peak), instances
                print(f"  {model.name} seed {seed} {xyz(row.tile):>11}: {seconds:6.1f}s {peak / 2**20:7.0f} MiB", flush=True)
        rows += seed_rows
    return rows


def report(rows: list[Row], models: dict[str, Model], volumes: dict[str, dict[int, tuple[Path, Path]]]) -> list[str]:
    """Print the table; returns the decision rule's failures (empty: it holds)."""
    import tifffile

    from skoots_client.evaluate import evaluate

    print(f"\n{'model':8} {'seed':>4} {'tile XxYxZ':>12} {'in/out vox':>10} {'wall s':>7} {'segment s':>9} {'peak MiB':>8} "
          f"{'instances':>9} {'ARI vs crop':>11} {'F1@0.5':>7} {'ARI truth':>9}")
    failures: list[str] = []
    reference: dict[tuple[str, int], tuple[np.ndarray, str]] = {}
    for row in rows:
        labels = tifffile.imread(row.labels)
        truth = tifffile.imread(volumes[row.model][row.seed][1])
        scores = evaluate(labels, truth)
        f1 = f"{next(m.f1 for m in scores.matches if m.threshold == 0.5):.3f}"
        key = (row.model, row.seed)
        if row.tile_name == "model crop":
            reference[key] = (labels, f1)
            ari_crop = 1.0
        else:
            ari_crop = evaluate(labels, reference[key][0]).adjusted_rand_index
        line = (f"{row.model:8} {row.seed:>4} {xyz(row.tile):>12} {row.inputs:>10.2f} {statistics.median(row.seconds):>7.1f} "
                f"{statistics.median(row.segment_seconds):>9.1f} {row.peak_rss / 2**20:>8.0f} {scores.pred_instances:>9} "
                f"{ari_crop:>11.4f} {f1:>7} {scores.adjusted_rand_index:>9.3f}")
        if row.tile_name == "auto":
            line += "  (--tile auto)"
        if scores.pred_instances != row.instances:  # the labels read back are not what the run counted
            line += f"  (segment counted {row.instances})"
        if not models[row.model].trained:
            line += f"  ({UNJUDGED})"
        elif row.tile_name != "model crop":
            if ari_crop < ARI_NEEDED:
                failures.append(f"{row.model} seed {row.seed} tile {xyz(row.tile)}: ARI vs crop {ari_crop:.4f} < {ARI_NEEDED} (short by {ARI_NEEDED - ari_crop:.4f})")
            if f1 != reference[key][1]:
                failures.append(f"{row.model} seed {row.seed} tile {xyz(row.tile)}: F1@0.5 {f1} vs {reference[key][1]} with the model crop")
        print(line, flush=True)
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs="+", default=["demo", "seed", "default"], choices=["demo", "seed", "default"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[7, 8], help="held-out synthetic volumes (not 900+, 1000+)")
    parser.add_argument("--shape", default="48,384,384", help="Z,Y,X of the trained models' volumes")
    parser.add_argument("--default-shape", default="40,320,320", help="Z,Y,X of the default cfg's volume (first seed only)")
    parser.add_argument("--demo-model", type=Path, default=ROOT / "examples" / "demo_model.trch")
    parser.add_argument("--seed-model", type=Path, default=ROOT / "examples" / "seed_regime_model.trch")
    parser.add_argument("--default-cfg", default=None, help=argparse.SUPPRESS)  # tests: a tiny cfg as JSON in place of the real-size one
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per run (the machine is shared)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each tile (medians of wall time)")
    args = parser.parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return 0
    if any(s >= 900 for s in args.seeds):
        parser.error("--seeds 900 and up trained or validated the models: pick held-out seeds")

    from checkpoints import skoots_cfg, write_checkpoint

    from examples.synthetic import SyntheticSpec, generate, write_volume

    print(machine())
    shapes = {"demo": common.triple(args.shape)[::-1], "seed": common.triple(args.shape)[::-1], "default": common.triple(args.default_shape)[::-1]}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        models: dict[str, Model] = {}
        for name in args.models:
            repository = folder / f"{name}_repo"
            if name == "demo":
                models[name] = export(args.demo_model, repository, name, True)
            elif name == "seed":
                models[name] = export(args.seed_model, repository, name, True)
            else:
                cfg = skoots_cfg(**json.loads(args.default_cfg)) if args.default_cfg else skoots_cfg()
                checkpoint = write_checkpoint(folder / "default.trch", cfg, make_lively=True)
                models[name] = export(checkpoint, repository, name, False, crop=(300, 300, 20), overlap=(10, 10, 5))
            print(f"{name}: crop {xyz(models[name].crop)}, overlap {xyz(models[name].overlap)}", flush=True)
        volumes: dict[str, dict[int, tuple[Path, Path]]] = {}
        made: dict[tuple[Triple, int], tuple[Path, Path]] = {}
        for name in args.models:
            seeds = args.seeds if models[name].trained else args.seeds[:1]
            for seed in seeds:
                key = (shapes[name], seed)
                if key not in made:
                    volume = generate(seed, dataclasses.replace(SyntheticSpec(), shape=shapes[name]))
                    made[key] = write_volume(folder / f"v-{xyz(shapes[name])}-{seed}.tif", volume)
                    print(f"volume seed {seed} {xyz(shapes[name])} (X,Y,Z): {int(volume.labels.max())} objects", flush=True)
                volumes.setdefault(name, {})[seed] = made[key]
        rows: list[Row] = []
        for name in args.models:
            rows += measure(models[name], volumes[name], shapes[name], args.repeats, args.threads, folder)
        failures = report(rows, models, volumes)
    trained = [n for n in args.models if models[n].trained]
    if not trained:
        print("\ndecision: no trained model measured; nothing decided")
    elif failures:
        print("\ndecision: --tile auto must NOT become the default:\n  " + "\n  ".join(failures))
    else:
        print(f"\ndecision: on {', '.join(trained)} every larger tile has ARI >= {ARI_NEEDED} against the model crop "
              "and the same F1@0.5: --tile auto may become the default")
    return 0


if __name__ == "__main__":
    sys.exit(main())
