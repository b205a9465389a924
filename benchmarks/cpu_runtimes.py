"""CPU inference runtimes side by side: per crop of the default network, and whole embedded runs.

    python benchmarks/cpu_runtimes.py [--crop 300,300,20] [--repeats 3] [--demo-shape 256,256,48]

1. Per crop: the default cfg (dims 32-64-128-64-32, kernel 7, random weights), the same crops
   through torch eager, eager with ``channels_last_3d``, TorchScript (what ``model.pt`` runs),
   TorchScript with ``channels_last_3d``, OpenVINO FP32 and, where the CPU has BF16, OpenVINO
   BF16. Runtimes take turns crop by crop (the machine may be shared: noise hits all alike);
   medians, the ratio to TorchScript, and each runtime's distance from TorchScript's answer.
2. End to end: ``segment`` in-process (export's files, a fresh model per run, as the CLI
   loads it) with ``--runtime torchscript`` and ``--runtime openvino`` (and BF16), on a
   one-crop volume of the default network and on the demo volume with the demo model; ARI of
   each runtime's labels against TorchScript's, and the demo's scores against its ground truth.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import common  # noqa: F401 - puts tests/ on sys.path
import numpy as np
import torch
from common import ROOT, machine

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the demo's `examples` package


def median_seconds(runs: dict[str, list[float]], name: str) -> float:
    return statistics.median(runs[name])


def per_crop(crop: tuple[int, int, int], repeats: int, folder: Path) -> None:
    from checkpoints import random_state_dict, skoots_cfg

    from skoots_export.architecture import build_network
    from skoots_export.contract.openvino_runtime import OpenVinoHead, cpu_supports_bf16
    from skoots_export.head import InferenceHead
    from skoots_export.openvino_ir import convert_head, save_ir
    from skoots_export.torchscript import script_head

    cfg = skoots_cfg()
    network = build_network(cfg.MODEL).eval()
    network.load_state_dict(random_state_dict(cfg))
    head = InferenceHead(network).eval()
    last = torch.channels_last_3d
    started = time.perf_counter()
    save_ir(convert_head(head, minimum_size=8), folder / "model.xml")
    print(f"default cfg converted to OpenVINO in {time.perf_counter() - started:.1f}s", flush=True)
    scripted = script_head(head)
    head_cl = InferenceHead(build_network(cfg.MODEL).eval()).eval()
    head_cl.network.load_state_dict(network.state_dict())
    head_cl.network.to(memory_format=last)
    scripted_cl = script_head(head_cl)

    def torch_runner(module: torch.nn.Module, channels_last: bool) -> Callable[[torch.Tensor], tuple]:
        def run(x: torch.Tensor) -> tuple:
            with torch.inference_mode():
                return tuple(o.numpy() for o in module(x.contiguous(memory_format=last) if channels_last else x))
        return run

    runners: dict[str, Callable[[torch.Tensor], tuple]] = {
        "torch eager": torch_runner(head, False),
        "torch eager channels_last_3d": torch_runner(head_cl, True),
        "TorchScript (model.pt)": torch_runner(scripted, False),
        "TorchScript channels_last_3d": torch_runner(scripted_cl, True),
    }
    fp32 = OpenVinoHead(str(folder / "model.xml"), precision="fp32")
    runners["OpenVINO FP32"] = lambda x: fp32(x.numpy())
    if cpu_supports_bf16():
        bf16 = OpenVinoHead(str(folder / "model.xml"), precision="bf16")
        runners["OpenVINO BF16"] = lambda x: bf16(x.numpy())
    generator = torch.Generator().manual_seed(0)
    crops = [torch.rand((1, 1, *crop), generator=generator).half() for _ in range(repeats + 1)]
    times: dict[str, list[float]] = {name: [] for name in runners}
    answers: dict[str, list[tuple]] = {name: [] for name in runners}
    for index, x in enumerate(crops):  # crop 0 warms every runtime up (profiling executor, compilation)
        for name, run in runners.items():
            started = time.perf_counter()
            answer = run(x)
            if index:
                times[name].append(time.perf_counter() - started)
            answers[name].append(answer)
        print(f"  crop {index} done{' (warm-up)' if index == 0 else ''}", flush=True)
    base = "TorchScript (model.pt)"
    print(f"\nper {'x'.join(map(str, crop))} crop, default cfg, median of {repeats} (runtimes interleaved):")
    print(f"{'runtime':<30} {'s/crop':>8} {'vs TorchScript':>15} {'mask differs':>13} {'max |Δ| vectors':>16} {'skeleton differs':>17}")
    for name in runners:
        fidelity = np.array([distance(a, b) for a, b in zip(answers[name], answers[base])])
        mask, vectors, skeleton = fidelity[:, 0].mean(), fidelity[:, 1].max(), fidelity[:, 2].mean()
        ratio = median_seconds(times, base) / median_seconds(times, name)
        print(f"{name:<30} {median_seconds(times, name):>8.2f} {ratio:>14.2f}x {mask:>13.1e} {vectors:>16.1e} {skeleton:>17.1e}", flush=True)


def distance(answer: tuple, reference: tuple) -> tuple[float, float, float]:
    """Fractions of voxels whose object mask (prob > threshold: vectors not all 0) and skeleton
    differ, and the largest vector difference where both masks agree (a voxel whose mask flips
    at the threshold changes its vector by up to 1)."""
    a, b = answer[0].astype(np.float32), reference[0].astype(np.float32)
    mask_a, mask_b = (a != 0).any(axis=1), (b != 0).any(axis=1)
    same = (mask_a == mask_b)[:, None]
    return float((mask_a != mask_b).mean()), float((np.abs(a - b) * same).max()), float((answer[1] != reference[1]).mean())


def end_to_end(label: str, repository: Path, volume: Path, truth: Path | None, repeats: int, folder: Path) -> None:
    import tifffile

    import skoots_client
    from skoots_client.evaluate import evaluate
    from skoots_export.contract.openvino_runtime import cpu_supports_bf16

    settings = [("torchscript", "fp32"), ("openvino", "fp32")] + ([("openvino", "bf16")] if cpu_supports_bf16() else [])
    times: dict[str, list[float]] = {f"{r} {p}": [] for r, p in settings}
    for _ in range(repeats):
        for runtime, precision in settings:
            out = folder / f"{runtime}-{precision}.tif"
            started = time.perf_counter()
            skoots_client.segment(volume, out=out, repository=repository, overwrite=True, quiet=True, device="cpu",
                                  runtime=runtime, precision=precision)
            times[f"{runtime} {precision}"].append(time.perf_counter() - started)
    reference = tifffile.imread(folder / "torchscript-fp32.tif")
    print(f"\n{label}: whole embedded segment, median of {repeats} (runtimes interleaved):")
    print(f"{'runtime':<20} {'seconds':>8} {'vs TorchScript':>15} {'ARI vs TorchScript':>19}" + (f" {'F1@0.5':>7} {'ARI vs truth':>13}" if truth else ""))
    base = statistics.median(times["torchscript fp32"])
    for runtime, precision in settings:
        labels = tifffile.imread(folder / f"{runtime}-{precision}.tif")
        seconds = statistics.median(times[f"{runtime} {precision}"])
        row = f"{runtime + ' ' + precision:<20} {seconds:>8.2f} {base / seconds:>14.2f}x {evaluate(labels, reference).adjusted_rand_index:>19.6f}"
        if truth is not None:
            scores = evaluate(labels, tifffile.imread(truth))
            row += f" {scores.matches[0].f1:>7.3f} {scores.adjusted_rand_index:>13.3f}"
        print(row, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crop", default="300,300,20", help="X,Y,Z of a crop of the default network")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--demo-shape", default="256,256,48", help="X,Y,Z of the demo volume")
    parser.add_argument("--skip-crops", action="store_true", help="only the end-to-end runs")
    args = parser.parse_args()
    crop = tuple(int(v) for v in args.crop.split(","))
    print(machine())
    import dataclasses

    import tifffile
    from checkpoints import skoots_cfg, write_checkpoint
    from test_segment_e2e import blobs_volume

    from examples.demo import CHECKPOINT, DEMO_SEED, EXPORT_OPTIONS
    from examples.synthetic import SyntheticSpec, generate, write_volume
    from skoots_export.exporter import export_checkpoint
    from skoots_export.model_config import Device

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if not args.skip_crops:
            per_crop(crop, args.repeats, folder)
        # The default network on a one-crop volume: inference is nearly all of the run.
        checkpoint = write_checkpoint(folder / "default.trch", skoots_cfg(), make_lively=True)
        export_checkpoint(checkpoint, repository=folder / "default_repo", backend="libtorch", device=Device.CPU, crop=crop)
        tifffile.imwrite(folder / "one_crop.tif", blobs_volume((crop[2], crop[0], crop[1]), seed=1))
        end_to_end(f"default cfg, one {'x'.join(map(str, crop))} crop", folder / "default_repo", folder / "one_crop.tif", None, args.repeats, folder)
        # The demo, as ./demo.sh exports and segments it: the constants come from the checkpoint's
        # model card, the options are serving choices.
        options = dict(zip(EXPORT_OPTIONS[::2], EXPORT_OPTIONS[1::2]))
        export_checkpoint(CHECKPOINT, repository=folder / "demo_repo", backend="libtorch", device=Device.CPU,
                          max_batch_size=int(options["--max-batch"]))
        shape = tuple(int(v) for v in args.demo_shape.split(","))
        _, truth = write_volume(folder / "demo.tif", generate(DEMO_SEED, dataclasses.replace(SyntheticSpec(), shape=shape)))
        end_to_end(f"demo model, demo volume {args.demo_shape} (seed {DEMO_SEED})", folder / "demo_repo", folder / "demo.tif", truth, args.repeats, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
