"""The demo's training script: targets, augmentation, and a checkpoint that export reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from examples.synthetic import SyntheticSpec, generate
from examples.train import MODEL_CARD, VECTOR_SCALING, sample_batch, train, vector_targets
from skoots_export.checkpoint import load_checkpoint
from skoots_export.contract.choices import Device
from skoots_export.exporter import export_checkpoint

REPO = Path(__file__).resolve().parents[2]
SMALL = SyntheticSpec(shape=(48, 48, 16))


def test_vector_targets_are_scaled_per_axis_and_clipped() -> None:
    vectors = np.array([20.0, -5.0, 2.0], np.float32).reshape(3, 1)
    assert vector_targets(vectors, (10, 10, 4)).ravel().tolist() == [1.0, -0.5, 0.5]


def test_augmented_crops_keep_vectors_pointing_at_their_skeleton() -> None:
    """Flips and transposes move the image and turn the vectors with it: in every crop each
    object voxel's vector still lands on a skeleton voxel."""
    volume = generate(11, SMALL)
    batch = sample_batch(np.random.default_rng(0), [volume], (32, 32, 16), 8)
    scale = np.asarray(VECTOR_SCALING, np.float32).reshape(3, 1, 1, 1)
    for i in range(8):
        vectors = batch.vectors[i] * scale
        inside = np.argwhere(batch.probability[i, 0] > 0)
        landing = np.rint(inside + vectors[(slice(None), *inside.T)].T).astype(int)
        kept = ((landing >= 0) & (landing < (32, 32, 16))).all(1)  # the skeleton may lie outside the crop
        assert kept.mean() > 0.5
        assert batch.skeleton[i, 0][tuple(landing[kept].T)].all()
    assert batch.image.shape == (8, 1, 32, 32, 16) and batch.image.dtype == np.float32
    assert 0.0 <= batch.image.min() and batch.image.max() < 1.0


def test_a_short_training_writes_an_upstream_checkpoint_that_exports(tmp_path: Path) -> None:
    out = tmp_path / "m.trch"
    train(out, steps=3, batch_size=1, crop=(32, 32, 16), volumes=1, log_every=2, spec=SMALL)
    raw = torch.load(out, map_location="cpu", weights_only=False)
    assert set(raw) == {"cfg", "model_state_dict", "optimizer_state_dict", "avg_epoch_loss", "avg_val_loss", "model_card"}
    assert len(raw["avg_epoch_loss"]) == len(raw["avg_val_loss"]) == 3  # upstream's sentinel, steps 2 and 3
    checkpoint = load_checkpoint(out)  # the allow-listed loader: nothing but tensors and a CfgNode inside
    assert checkpoint.cfg.MODEL.ARCHITECTURE == "bism_unext" and checkpoint.card == MODEL_CARD
    result = export_checkpoint(out, repository=tmp_path / "repo", backend="python", device=Device.CPU, crop=(32, 32, 16))
    assert result.parameters.vector_scaling == VECTOR_SCALING
    assert result.parameters.overlap == tuple(MODEL_CARD["overlap"]) and result.sources["overlap"] == "checkpoint card"


def test_bad_options_are_refused() -> None:
    done = subprocess.run([sys.executable, "-m", "examples.train", "--steps", "0"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "must be at least 1" in done.stderr


def test_the_seed_regime_is_trained_and_carded_from_flags(tmp_path: Path) -> None:
    """--crop sets the training crop, --card-crop/--card-overlap the card; the cfg keeps the command."""
    from examples.train import main

    out = tmp_path / "seed.trch"
    flags = ["--out", str(out), "--steps", "1", "--volumes", "1", "--threads", "1", "--crop", "32,32,20", "--card-crop", "136,136,20", "--card-overlap", "8,8,5"]
    assert main(flags) == 0
    checkpoint = load_checkpoint(out)
    assert checkpoint.card == {**MODEL_CARD, "crop": [136, 136, 20], "overlap": [8, 8, 5]}
    assert checkpoint.cfg.AUGMENTATION.CROP_DEPTH == 20 and "--card-overlap 8,8,5" in checkpoint.cfg.SKOOTS.NOTES


def test_bad_regime_flags_are_refused() -> None:
    for flags, message in [
        (["--crop", "64,64"], "not three positive integers"),
        (["--crop", "64,64,40"], "must fit the training volumes"),
        (["--card-crop", "136,136,20", "--card-overlap", "8,8,10"], "less than half"),
    ]:
        done = subprocess.run([sys.executable, "-m", "examples.train", *flags], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and message in done.stderr, done.stderr
