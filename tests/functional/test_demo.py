"""The demo end to end: the committed checkpoint exported, a held-out volume segmented in-process
and scored against its ground truth, and the same through a real tritonserver with ``--url``."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from test_serve import wait_for_line  # tests/functional/test_serve.py: read `skoots serve`'s output

from examples.demo import CHECKPOINT, DEMO_SEED, TARGETS, headline
from examples.train import MODEL_CARD

REPO = Path(__file__).resolve().parents[2]
CLIENT = str(Path(sys.executable).parent / "skoots-client")
SKOOTS = str(Path(sys.executable).parent / "skoots")
HELD_OUT_SEED = 8  # not the demo's own seed, not a training (1000+) or validation (900+) seed
SHAPE = "128,128,32"  # one crop of the demo export: a few seconds


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("demo")
    done = subprocess.run(
        [sys.executable, "-m", "examples.demo", "--out", str(out), "--seed", str(HELD_OUT_SEED), "--shape", SHAPE],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return out, done


def test_the_committed_checkpoint_is_small_and_in_the_upstream_format() -> None:
    assert CHECKPOINT.stat().st_size < 2_000_000
    checkpoint = torch.load(CHECKPOINT, map_location="cpu", weights_only=False)
    assert {"cfg", "model_state_dict", "optimizer_state_dict", "avg_epoch_loss", "avg_val_loss"} <= set(checkpoint)
    assert checkpoint["cfg"].MODEL.ARCHITECTURE == "bism_unext"
    assert tuple(checkpoint["cfg"].SKOOTS.VECTOR_SCALING) == (10.0, 10.0, 4.0)
    assert {k.split(".")[0] for k in checkpoint["model_state_dict"]} == {"backbone", "out_embed", "out_skeleton", "out_prob"}
    assert checkpoint["model_card"] == MODEL_CARD


@pytest.mark.slow  # a second full-size export (~30 s); the demo fixture's export is the quick run's
def test_a_plain_export_of_the_demo_checkpoint_meets_the_targets(tmp_path: Path) -> None:
    """Issue 13's first run: ``skoots export examples/demo_model.trch`` with no options (its model
    card supplies crop, overlap and dilations), then an in-process segment of a held-out volume."""
    import skoots_client
    from examples.synthetic import SyntheticSpec, generate, write_volume
    from skoots_client.evaluate import evaluate_files

    done = subprocess.run([SKOOTS, "export", str(CHECKPOINT)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for line in ("crop = 136,136,48  (checkpoint card)", "dilations_3d = 0  (checkpoint card)",
                 "vector_scaling = 10.0,10.0,4.0  (cfg.SKOOTS)", "embedding_iterations = 2  (seed default)"):
        assert re.search(rf"^param +{re.escape(line)}$", done.stdout, re.MULTILINE), line
    volume = generate(HELD_OUT_SEED, dataclasses.replace(SyntheticSpec(), shape=tuple(map(int, SHAPE.split(",")))))
    _, truth = write_volume(tmp_path / "held_out.tif", volume)
    skoots_client.segment(tmp_path / "held_out.tif", out=tmp_path / "labels.tif", repository=tmp_path / "model_repository", device="cpu", quiet=True)
    scores = evaluate_files(tmp_path / "labels.tif", truth).to_dict()
    figures = headline(scores)
    for name, target in TARGETS.items():
        assert figures[name] >= target, (name, figures[name])


def test_demo_writes_every_file_and_says_where(demo) -> None:
    out, done = demo
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("demo_volume.tif", "demo_volume_labels.tif", "demo_volume_segmented.tif", "demo_preview.png", "scores.json"):
        assert (out / name).is_file(), name
        assert str(out / name) in done.stdout, name
    assert (out / "model_repository" / "skoots" / "1" / "model.pt").is_file()
    assert "$ skoots export" in done.stdout and "$ skoots-client segment" in done.stdout
    assert "targets met" in done.stdout


def test_the_demo_model_meets_the_targets_on_a_held_out_volume(demo) -> None:
    out, _ = demo
    scores = json.loads((out / "scores.json").read_text())
    figures = headline(scores)
    for name, target in TARGETS.items():
        assert figures[name] >= target, (name, figures[name], scores)
    assert abs(scores["pred_instances"] - scores["true_instances"]) <= 0.1 * scores["true_instances"]


def test_skoots_serve_and_url_give_the_labels_of_the_embedded_run(demo, tmp_path: Path) -> None:
    """The issue's last check, as a user runs it: ``skoots serve`` on the demo's repository (the
    wheel's tritonserver loads its Python-backend model), then ``segment --url`` without
    ``--model``: the client picks the one SKOOTS model the server has ready."""
    pytest.importorskip("pytriton", reason="the server extra is not installed")
    out, _ = demo
    server = subprocess.Popen([SKOOTS, "serve", str(out / "model_repository")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = wait_for_line(server, "grpc ").split()[1]
        done = subprocess.run(
            [CLIENT, "segment", str(out / "demo_volume.tif"), "--url", url, "--out", str(tmp_path / "served.tif"), "--quiet"],
            capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"},
        )
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    assert done.returncode == 0, done.stderr
    served = tifffile.imread(tmp_path / "served.tif")
    embedded = tifffile.imread(out / "demo_volume_segmented.tif")
    assert served.dtype == embedded.dtype and np.array_equal(served, embedded)
    assert embedded.max() > 20


def test_the_demo_runs_through_openvino_with_the_labels_of_torchscript(demo, tmp_path: Path) -> None:
    from skoots_client.evaluate import evaluate

    out, done = demo
    assert "inference in-process: OpenVINO FP32 on CPU" in done.stdout
    torchscript = subprocess.run(
        [CLIENT, "segment", str(out / "demo_volume.tif"), "-r", str(out / "model_repository"), "--runtime", "torchscript",
         "--out", str(tmp_path / "torchscript.tif")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"},
    )
    assert torchscript.returncode == 0, torchscript.stderr
    assert "inference in-process: TorchScript FP32 on CPU" in torchscript.stdout
    labels = tifffile.imread(out / "demo_volume_segmented.tif"), tifffile.imread(tmp_path / "torchscript.tif")
    assert evaluate(*labels).adjusted_rand_index >= 0.9999


def test_demo_refuses_a_training_seed() -> None:
    done = subprocess.run([sys.executable, "-m", "examples.demo", "--seed", "1003"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "training and validation data" in done.stderr
    assert DEMO_SEED < 900
