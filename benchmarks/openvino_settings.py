"""OpenVINO's CPU settings measured: LATENCY vs THROUGHPUT hints with several crops in flight,
and INT8 (NNCF accuracy-controlled quantisation) of the trained demo model against FP32.

    python benchmarks/openvino_settings.py hints [--crop 300,300,20] [--crops 4] [--rounds 2]
    python benchmarks/openvino_settings.py int8 [--repeats 2] [--demo-shape 256,256,48] [--max-drop 0.002]

``hints``: the default cfg (real-size network, random weights) at ``--crop`` and the demo model
at its own crop, each compiled with FP32 (``INFERENCE_PRECISION_HINT f32``) and

* ``LATENCY sync``: one infer request, crops one after another (what the embedded runtime does);
* ``THROUGHPUT async``: the plugin's streams (its choice for this CPU) and an
  ``AsyncInferQueue`` of its optimal number of requests, ``--crops`` crops in flight;
* ``THROUGHPUT 1 stream``: the same queue with ``NUM_STREAMS 1`` (all threads on one request).

Settings take turns round by round (the machine is shared); medians of s/crop and the ratio to
``LATENCY sync``; the resolved streams / threads / requests / precision are read back.

``int8``: the demo model exported as ``./demo.sh`` does; its IR quantised by
``nncf.quantize_with_accuracy_control`` (calibration: a few crops of training-seed volumes;
validation: agreement of object mask and skeleton with the FP32 IR on validation-seed crops, at
most ``--max-drop`` lost); then ``segment`` in-process on the held-out demo volume with the FP32
IR and the INT8 IR in turn: seconds, ARI of INT8's labels against FP32's, F1@0.5 and ARI
against the truth.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401 - puts tests/ on sys.path
import numpy as np
from common import ROOT, machine, triple

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the demo's `examples` package

OUTPUT_NAMES = ("vectors__0", "skeleton__1", "probability__2")


def export_demo(folder: Path) -> Path:
    """The demo model's repository, as ./demo.sh exports it; returns its version directory."""
    from examples.demo import CHECKPOINT, EXPORT_OPTIONS
    from skoots_export.exporter import export_checkpoint
    from skoots_export.model_config import Device

    options = dict(zip(EXPORT_OPTIONS[::2], EXPORT_OPTIONS[1::2]))
    export_checkpoint(CHECKPOINT, repository=folder / "demo_repo", backend="libtorch", device=Device.CPU,
                      max_batch_size=int(options["--max-batch"]))
    return folder / "demo_repo" / "skoots" / "1"


def demo_crop(version_dir: Path) -> tuple[int, int, int]:
    text = (version_dir.parent / "config.pbtxt").read_text()
    after = text[text.index('key: "crop"'):]
    return triple(after[after.index('string_value: "') + len('string_value: "'):].split('"')[0])


def export_default_ir(folder: Path) -> Path:
    from checkpoints import random_state_dict, skoots_cfg

    from skoots_export.architecture import build_network
    from skoots_export.head import InferenceHead
    from skoots_export.openvino_ir import convert_head, save_ir

    cfg = skoots_cfg()
    network = build_network(cfg.MODEL).eval()
    network.load_state_dict(random_state_dict(cfg))
    save_ir(convert_head(InferenceHead(network).eval(), minimum_size=8), folder / "default.xml")
    return folder / "default.xml"


SETTINGS = {
    "LATENCY sync": {"PERFORMANCE_HINT": "LATENCY"},
    "THROUGHPUT async": {"PERFORMANCE_HINT": "THROUGHPUT"},
    "THROUGHPUT 1 stream": {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": 1},
}


def hints(label: str, xml: Path, crop: tuple[int, int, int], count: int, rounds: int) -> None:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(xml))
    model.reshape({model.input(0): ov.PartialShape([1, 1, *crop])})
    compiled = {name: core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", **config})
                for name, config in SETTINGS.items()}
    rng = np.random.default_rng(0)
    crops = [rng.random((1, 1, *crop), dtype=np.float32).astype(np.float16) for _ in range(count)]

    def run_sync(model: ov.CompiledModel) -> None:
        request = model.create_infer_request()
        for crop_ in crops:
            request.infer({0: crop_})
            [request.get_tensor(n).data.copy() for n in OUTPUT_NAMES]

    def run_async(model: ov.CompiledModel) -> None:
        # No Python callback: a stream thread waiting for the GIL deadlocks the compiled model's
        # destructor (seen here); outputs are copied as requests come free instead.
        queue = ov.AsyncInferQueue(model, model.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        started = set()
        for crop_ in crops:
            idle = queue.get_idle_request_id()  # waits for one
            if idle in started:
                [queue[idle].get_tensor(n).data.copy() for n in OUTPUT_NAMES]
            started.add(idle)
            queue.start_async({0: crop_})
        queue.wait_all()
        for idle in started:
            [queue[idle].get_tensor(n).data.copy() for n in OUTPUT_NAMES]

    runners = {name: run_sync if name == "LATENCY sync" else run_async for name in SETTINGS}
    for name, c in compiled.items():
        runners[name](c)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for _ in range(rounds):
        for name, c in compiled.items():
            started = time.perf_counter()
            runners[name](c)
            times[name].append((time.perf_counter() - started) / count)
    print(f"\n{label}, crop {'x'.join(map(str, crop))}, {count} crops in flight per round, median of {rounds} rounds (settings interleaved):")
    print(f"{'setting':<22} {'streams':>7} {'threads':>7} {'requests':>8} {'precision':>9} {'s/crop':>8} {'vs LATENCY':>10}")
    base = statistics.median(times["LATENCY sync"])
    for name, c in compiled.items():
        seconds = statistics.median(times[name])
        print(f"{name:<22} {str(c.get_property('NUM_STREAMS')):>7} {c.get_property('INFERENCE_NUM_THREADS'):>7} "
              f"{c.get_property('OPTIMAL_NUMBER_OF_INFER_REQUESTS'):>8} {str(c.get_property('INFERENCE_PRECISION_HINT')):>9} "
              f"{seconds:>8.3f} {base / seconds:>9.2f}x", flush=True)


def crops_of(seeds: range, crop: tuple[int, int, int]) -> list[np.ndarray]:
    """One network input (FP16 ``[1, 1, X, Y, Z]``, normalised as segment does) per seed."""
    from examples.synthetic import SyntheticSpec, generate
    from skoots_client.normalize import normalize_crop

    spec = dataclasses.replace(SyntheticSpec(), shape=crop)
    return [normalize_crop(generate(seed, spec).raw)[None, None] for seed in seeds]


def agreement(answer: list[np.ndarray], reference: list[np.ndarray]) -> float:
    """Mean of the object mask's and the skeleton's IoU against the reference outputs."""
    def iou(a: np.ndarray, b: np.ndarray) -> float:
        union = np.logical_or(a, b).sum()
        return float(np.logical_and(a, b).sum() / union) if union else 1.0
    mask = iou((answer[0] != 0).any(axis=1), (reference[0] != 0).any(axis=1))
    return (mask + iou(answer[1] != 0, reference[1] != 0)) / 2


def quantise(xml: Path, crop: tuple[int, int, int], calibration: int, validation: int, max_drop: float, out: Path) -> float:
    import nncf
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(xml))
    reference_model = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    calibrate = crops_of(range(1000, 1000 + calibration), crop)  # training seeds
    validate = crops_of(range(900, 900 + validation), crop)  # validation seeds
    reference = [[reference_model(x)[i] for i in range(3)] for x in validate]

    def validation_fn(compiled: ov.CompiledModel, data) -> float:
        scores = []
        for index, x in data:  # the validation items are (index, crop): the crop's FP32 answer by index
            outputs = compiled(x)
            scores.append(agreement([outputs[i] for i in range(3)], reference[index]))
        return float(np.mean(scores))

    started = time.perf_counter()
    if max_drop < 0:  # no accuracy control: every layer NNCF can quantise, quantised
        quantised = nncf.quantize(model, nncf.Dataset(calibrate), subset_size=calibration, preset=nncf.QuantizationPreset.MIXED)
        print(f"plain INT8: agreement with FP32 on the validation crops {validation_fn(core.compile_model(quantised, 'CPU'), enumerate(validate)):.4f}")
    else:
        quantised = nncf.quantize_with_accuracy_control(
            model, nncf.Dataset(calibrate), nncf.Dataset(list(enumerate(validate)), lambda item: item[1]), validation_fn,
            max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE, subset_size=calibration,
            preset=nncf.QuantizationPreset.MIXED)
    seconds = time.perf_counter() - started
    ov.save_model(quantised, str(out), compress_to_fp16=False)
    return seconds


def int8(repeats: int, demo_shape: tuple[int, int, int], calibration: int, validation: int, max_drop: float, folder: Path) -> None:
    import tifffile

    import skoots_client
    from examples.demo import DEMO_SEED
    from examples.synthetic import SyntheticSpec, generate, write_volume
    from skoots_client.evaluate import evaluate

    version = export_demo(folder)
    crop = demo_crop(version)
    int8_repo = folder / "int8_repo"
    shutil.copytree(folder / "demo_repo", int8_repo)
    for name in ("model.xml", "model.bin"):
        (int8_repo / "skoots" / "1" / name).unlink()
    seconds = quantise(version / "model.xml", crop, calibration, validation, max_drop, int8_repo / "skoots" / "1" / "model.xml")
    print(f"demo model quantised with accuracy control in {seconds:.1f}s ({calibration} calibration, {validation} validation crops "
          f"of {'x'.join(map(str, crop))}, max drop {max_drop})", flush=True)
    _, truth = write_volume(folder / "demo.tif", generate(DEMO_SEED, dataclasses.replace(SyntheticSpec(), shape=demo_shape)))
    repositories = {"openvino fp32": folder / "demo_repo", "openvino int8": int8_repo}
    times: dict[str, list[float]] = {name: [] for name in repositories}
    for _ in range(repeats):
        for name, repository in repositories.items():
            started = time.perf_counter()
            skoots_client.segment(folder / "demo.tif", out=folder / f"{name}.tif", repository=repository, overwrite=True,
                                  quiet=True, device="cpu", runtime="openvino")
            times[name].append(time.perf_counter() - started)
    reference = tifffile.imread(folder / "openvino fp32.tif")
    truth_labels = tifffile.imread(truth)
    print(f"\ndemo model, demo volume {'x'.join(map(str, demo_shape))} (seed {DEMO_SEED}): whole embedded segment, "
          f"median of {repeats} (interleaved):")
    print(f"{'IR':<14} {'seconds':>8} {'vs FP32':>8} {'ARI vs FP32':>12} {'F1@0.5':>7} {'ARI vs truth':>13}")
    base = statistics.median(times["openvino fp32"])
    for name in repositories:
        labels = tifffile.imread(folder / f"{name}.tif")
        scores = evaluate(labels, truth_labels)
        print(f"{name:<14} {statistics.median(times[name]):>8.2f} {base / statistics.median(times[name]):>7.2f}x "
              f"{evaluate(labels, reference).adjusted_rand_index:>12.6f} {scores.matches[0].f1:>7.3f} "
              f"{scores.adjusted_rand_index:>13.3f}", flush=True)
    hints("demo model INT8 IR", int8_repo / "skoots" / "1" / "model.xml", crop, 4, repeats)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=("hints", "int8"))
    parser.add_argument("--crop", default="300,300,20", help="X,Y,Z of a crop of the default network")
    parser.add_argument("--crops", type=int, default=4, help="crops in flight per setting and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-default", action="store_true", help="hints: the demo model only")
    parser.add_argument("--repeats", type=int, default=2, help="int8: whole runs per IR")
    parser.add_argument("--demo-shape", default="256,256,48", help="X,Y,Z of the held-out demo volume")
    parser.add_argument("--calibration", type=int, default=4, help="int8: calibration crops")
    parser.add_argument("--validation", type=int, default=3, help="int8: validation crops")
    parser.add_argument("--max-drop", type=float, default=0.002, help="int8: mask/skeleton IoU the quantisation may lose (negative: plain nncf.quantize, no accuracy control)")
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.part == "hints":
            version = export_demo(folder)
            hints("demo model", version / "model.xml", demo_crop(version), args.crops, args.rounds)
            if not args.skip_default:
                hints("default cfg (random weights)", export_default_ir(folder), triple(args.crop), args.crops, args.rounds)
        else:
            int8(args.repeats, triple(args.demo_shape), args.calibration, args.validation, args.max_drop, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
