"""The demo: export the committed model, segment a held-out synthetic volume, score it, preview it.

Every step runs the project's real command lines (echoed, so they can be copied): ``skoots
export``, ``skoots-client segment --preview`` (in-process, no server) and ``skoots-client
evaluate``. ``./demo.sh`` installs the project into ``.venv`` first and then runs this.

``python -m examples.demo [--out demo_output] [--seed 7] [--shape 256,256,48]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``examples`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.synthetic import SyntheticSpec, generate, shape_option, write_volume

CHECKPOINT = Path(__file__).resolve().parent / "demo_model.trch"
DEMO_SEED = 7  # held out: training uses seeds 1000 and up, validation 900 and up
DEMO_SHAPE = (256, 256, 48)
# How the demo model is served here: both variants (skoots serve's server has only the Python
# backend), CPU instances, two crops per request. Its constants (crop, overlap, dilations) come
# from the checkpoint's own model card (examples/train.py MODEL_CARD), so there are none here.
EXPORT_OPTIONS = ("--device", "cpu", "--max-batch", "2")
TARGETS = {"F1 at IoU 0.5": 0.85, "adjusted Rand index": 0.9}


def _script(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def run(*command: str | Path, capture: bool = False) -> str:
    """Run a command line, echoed first; raise ``SystemExit`` with its status if it fails."""
    args = [str(a) for a in command]
    shown = [Path(args[0]).name, *args[1:]]
    print(f"$ {shlex.join(shown)}", flush=True)
    done = subprocess.run(args, text=True, capture_output=capture)
    if done.returncode != 0:
        if capture:
            sys.stderr.write(done.stderr)
        raise SystemExit(done.returncode)
    return done.stdout if capture else ""


def headline(scores: dict) -> dict[str, float]:
    """The two target figures of the demo from ``evaluate --json`` output."""
    at_50 = next(m for m in scores["matches"] if m["threshold"] == 0.5)
    return {"F1 at IoU 0.5": at_50["f1"], "adjusted Rand index": scores["adjusted_rand_index"]}


def main(argv: Sequence[str] | None = None) -> int:
    from skoots_client.volume import describe_shape
    from skoots_export.contract.triples import TRIPLE_HELP

    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="folder for every file the demo writes")
    parser.add_argument("--seed", type=int, default=DEMO_SEED, help="seed of the held-out volume (not 900+ or 1000+: those trained the model)")
    parser.add_argument("--shape", type=shape_option, default=DEMO_SHAPE, help="voxels of the volume: " + TRIPLE_HELP)
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT, help="SKOOTS checkpoint to export")
    args = parser.parse_args(argv)
    if args.seed >= 900:
        parser.error(f"--seed {args.seed}: seeds from 900 up are the model's training and validation data; pick a held-out one below 900")
    started = time.perf_counter()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    repository = out / "model_repository"
    volume_path = out / "demo_volume.tif"
    labels = out / "demo_volume_segmented.tif"
    preview = out / "demo_preview.png"
    scores_path = out / "scores.json"

    print("1. export the demo model", flush=True)
    run(_script("skoots"), "export", args.checkpoint, "-r", repository, *EXPORT_OPTIONS, capture=True)

    print(f"2. generate a held-out synthetic volume (seed {args.seed}) and its ground truth", flush=True)
    print(f"$ python -m examples.synthetic {volume_path} --seed {args.seed} --shape {','.join(map(str, args.shape))}", flush=True)
    volume = generate(args.seed, dataclasses.replace(SyntheticSpec(), shape=args.shape))
    _, truth = write_volume(volume_path, volume)

    print("3. segment it in-process (no server) and write a preview", flush=True)
    run(_script("skoots-client"), "segment", volume_path, "-r", repository, "--out", labels, "--overwrite", "--preview", preview)
    segmented_at = time.perf_counter()

    print("4. score the segmentation against the ground truth", flush=True)
    table = run(_script("skoots-client"), "evaluate", labels, truth, capture=True)
    scores = json.loads(run(_script("skoots-client"), "evaluate", labels, truth, "--json", capture=True))
    scores_path.write_text(json.dumps(scores, indent=2) + "\n")
    print(table, end="")

    figures = headline(scores)
    met = all(figures[k] >= v for k, v in TARGETS.items())
    print(
        f"\nDone in {segmented_at - started:.0f}s to the labels, {time.perf_counter() - started:.0f}s in all.\n"
        f"  model repository  {repository}/\n"
        f"  raw volume        {volume_path}   ({describe_shape(volume.raw.shape)}, {volume.raw.dtype}, {len(volume.objects)} objects)\n"
        f"  ground truth      {truth}\n"
        f"  segmentation      {labels}\n"
        f"  preview           {preview}\n"
        f"  scores            {scores_path}\n"
        + "".join(f"  {k:<19} {figures[k]:.3f} (target >= {v})\n" for k, v in TARGETS.items())
        + ("  targets met\n" if met else "  TARGETS NOT MET\n"),
        flush=True,
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
