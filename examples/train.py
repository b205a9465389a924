"""Train the demo's small SKOOTS model on synthetic volumes, on a CPU, in well under half an hour.

The network is the project's own rebuild of upstream bism's UNeXT
(``skoots_export.architecture.build_network``), whose parameter names equal upstream's, and
the checkpoint is written as upstream SKOOTS training writes it: ``cfg`` (a yacs ``CfgNode``),
``model_state_dict``, ``optimizer_state_dict``, ``avg_epoch_loss`` and ``avg_val_loss``. So
``skoots export`` reads it like any SKOOTS checkpoint. It also carries its ``model_card``
(:data:`MODEL_CARD`): the inference constants it needs, so a plain ``skoots export`` of it
reproduces the demo's scores.

Targets are what SKOOTS learns (see :mod:`examples.synthetic`): object probability, the
skeleton (each object's centreline, thickened), and vectors from each object voxel to its
centreline divided by ``VECTOR_SCALING`` and clipped to [-1, 1]. Upstream trains the vectors
through an embedding-to-probability loss with a decaying sigma; with exact synthetic targets
a direct regression of the vectors on object voxels is simpler, and it was enough here.
Losses: binary cross-entropy plus soft Dice for probability and skeleton, L1 for the vectors.

``python -m examples.train --out examples/demo_model.trch`` re-makes the committed checkpoint
(README: "The demo model").

The same network can be trained and carded in another tiling regime: ``--crop`` sets the
training crop, ``--card-crop`` and ``--card-overlap`` the model card's crop and overlap (all
``X,Y,Z``). The seed's z regime (crop z 20, overlap z 5; ``benchmarks/tile_fidelity.py`` judges
inference tiles on it) is re-made by::

    python -m examples.train --out examples/seed_regime_model.trch --crop 64,64,20 \
        --card-crop 136,136,20 --card-overlap 8,8,5 --steps 400 --volumes 8 --threads 1

(400 steps, not the demo's 1200: it trained in 360 CPU-seconds while four other sessions
loaded the two cores. Validation loss 1.08 (the demo's 0.85); F1@0.5 0.89, ARI 0.90 on
held-out 384x384x48 volumes, seeds 7 and 8, where the demo model scores 0.97 and 0.94.)
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make ``examples`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.synthetic import SyntheticSpec, SyntheticVolume, generate

# The demo model: small enough to train in minutes on two cores and to segment the demo volume
# in seconds; vectors reach 10 voxels in x/y and 4 slices in z, past the largest object radius.
MODEL = {
    "DIMS": [12, 24, 48, 24, 12],
    "DEPTHS": [1, 1, 1, 1, 1],
    "KERNEL_SIZE": 3,
    "OUT_CHANNELS": 12,
}
VECTOR_SCALING = (10.0, 10.0, 4.0)
# How the demo model runs (its model card; export takes these as defaults). Crops of 136x136x48
# (the network saw 64x64x16 in training; it is fully convolutional) tile the 256x256x48 demo
# volume with 4 crops where 128x128x32 would need 18; overlaps sized for small objects; no
# skeleton dilation — the seed's 9x9x3 box is sized for 300x300x20 crops of large mitochondria
# and merges these small, packed objects.
MODEL_CARD = {"crop": [136, 136, 48], "overlap": [8, 8, 4], "dilations_3d": 0, "dilations_2d": 0}
TRAIN_SEED = 1000  # training volumes are seeds 1000, 1001, ...; validation 900, 901, ...
VALIDATION_SEED = 900


def skoots_cfg(crop: tuple[int, int, int], learning_rate: float, steps: int, notes: str):
    """A cfg shaped like upstream skoots' defaults (``skoots/config.py``) for the demo model."""
    from yacs.config import CfgNode

    cfg = CfgNode()
    cfg.SYSTEM = CfgNode({"NUM_GPUS": 0, "NUM_CPUS": 2})
    cfg.MODEL = CfgNode(
        {
            "ARCHITECTURE": "bism_unext",
            "IN_CHANNELS": 1,
            "OUT_CHANNELS": MODEL["OUT_CHANNELS"],
            "DIMS": list(MODEL["DIMS"]),
            "DEPTHS": list(MODEL["DEPTHS"]),
            "KERNEL_SIZE": MODEL["KERNEL_SIZE"],
            "DROP_PATH_RATE": 0.0,
            "LAYER_SCALE_INIT_VALUE": 1.0,
            "ACTIVATION": "gelu",
            "BLOCK": "block3d",
            "CONCAT_BLOCK": "concatconv3d",
            "UPSAMPLE_BLOCK": "upsamplelayer3d",
            "NORMALIZATION": "layernorm",
        }
    )
    cfg.TRAIN = CfgNode(
        {
            "LEARNING_RATE": learning_rate,
            "OPTIMIZER": "adamw",
            "NUM_EPOCHS": steps,
            "MIXED_PRECISION": False,
            "TRAIN_DATA_DIR": [],
            "VALIDATION_DATA_DIR": [],
        }
    )
    cfg.AUGMENTATION = CfgNode(
        {
            "CROP_WIDTH": crop[0],
            "CROP_HEIGHT": crop[1],
            "CROP_DEPTH": crop[2],
            "SMOOTH_SKELETON_KERNEL_SIZE": (3, 3, 1),
            "BAKE_SKELETON_ANISOTROPY": (1.0, 1.0, 3.0),
        }
    )
    cfg.SKOOTS = CfgNode({"VECTOR_SCALING": VECTOR_SCALING, "ANISOTROPY": (1.0, 1.0, 3.0), "NOTES": notes})
    return cfg


@dataclasses.dataclass(frozen=True)
class Batch:
    """Network input ``[B, 1, X, Y, Z]`` and targets: probability, skeleton ``[B, 1, ...]``, vectors ``[B, 3, ...]``."""

    image: np.ndarray
    probability: np.ndarray
    skeleton: np.ndarray
    vectors: np.ndarray


def vector_targets(vectors: np.ndarray, scaling: Sequence[float]) -> np.ndarray:
    """Voxel offsets ``[3, ...]`` as the network's tanh channels learn them: divided by
    ``VECTOR_SCALING`` per axis and clipped to [-1, 1]."""
    scale = np.asarray(scaling, np.float32).reshape(3, *([1] * (vectors.ndim - 1)))
    return np.clip(vectors / scale, -1.0, 1.0).astype(np.float32)


def normalised(raw: np.ndarray) -> np.ndarray:
    """Input as the runtime normalises it (docs/SEMANTICS.md step 1, through FP16), in float32."""
    from skoots_client.normalize import normalize_crop

    return normalize_crop(raw).astype(np.float32)


def sample_batch(rng: np.random.Generator, volumes: Sequence[SyntheticVolume], crop: tuple[int, int, int], size: int) -> Batch:
    """Random crops with random flips and x/y transposes (vectors flipped and swapped to match)."""
    parts: list[tuple[np.ndarray, ...]] = []
    for _ in range(size):
        volume = volumes[rng.integers(len(volumes))]
        start = [rng.integers(0, n - c + 1) for n, c in zip(volume.raw.shape, crop)]
        window = tuple(slice(s, s + c) for s, c in zip(start, crop))
        image = normalised(volume.raw[window])
        probability = (volume.labels[window] > 0).astype(np.float32)
        skeleton = volume.skeleton[window].astype(np.float32)
        vectors = vector_targets(volume.vectors[(slice(None), *window)], VECTOR_SCALING)
        for axis in range(3):
            if rng.random() < 0.5:
                image, probability, skeleton = (np.flip(a, axis) for a in (image, probability, skeleton))
                vectors = np.flip(vectors, axis + 1).copy()
                vectors[axis] *= -1
        if crop[0] == crop[1] and rng.random() < 0.5:
            image, probability, skeleton = (a.transpose(1, 0, 2) for a in (image, probability, skeleton))
            vectors = vectors.transpose(0, 2, 1, 3)[[1, 0, 2]]
        parts.append((image, probability, skeleton, vectors))
    image, probability, skeleton, vectors = (np.stack([np.ascontiguousarray(p[i]) for p in parts]) for i in range(4))
    return Batch(image[:, None], probability[:, None], skeleton[:, None], vectors)


def _soft_dice(probability, target, eps: float = 1.0):
    intersection = (probability * target).sum()
    return 1 - (2 * intersection + eps) / (probability.sum() + target.sum() + eps)


def losses(network, batch: Batch, skeleton_weight: float, vector_weight: float):
    """``(total, probability, skeleton, vectors)`` losses of one batch, from the heads' logits."""
    import torch
    import torch.nn.functional as F

    image, probability, skeleton, vectors = (
        torch.from_numpy(a).contiguous(memory_format=torch.channels_last_3d) for a in dataclasses.astuple(batch)
    )
    features = network.backbone(image)
    prob_logits = network.out_prob(features)
    skeleton_logits = network.out_skeleton(features)
    predicted_vectors = torch.tanh(network.out_embed(features))
    prob_loss = F.binary_cross_entropy_with_logits(prob_logits, probability) + _soft_dice(torch.sigmoid(prob_logits), probability)
    positive = torch.tensor(4.0)  # skeleton voxels are ~2% of a crop: weigh them up
    skeleton_loss = F.binary_cross_entropy_with_logits(skeleton_logits, skeleton, pos_weight=positive) + _soft_dice(
        torch.sigmoid(skeleton_logits), skeleton
    )
    inside = probability.expand_as(predicted_vectors)
    vector_loss = ((predicted_vectors - vectors).abs() * inside).sum() / inside.sum().clamp(min=1.0)
    total = prob_loss + skeleton_weight * skeleton_loss + vector_weight * vector_loss
    return total, prob_loss, skeleton_loss, vector_loss


def train(
    out: Path,
    *,
    steps: int = 1200,
    batch_size: int = 2,
    crop: tuple[int, int, int] = (64, 64, 16),
    learning_rate: float = 2e-3,
    volumes: int = 16,
    seed: int = 0,
    skeleton_weight: float = 1.0,
    vector_weight: float = 10.0,
    log_every: int = 100,
    spec: SyntheticSpec = SyntheticSpec(),
    card: dict | None = None,
    notes: str | None = None,
) -> dict:
    """Train from scratch and write the checkpoint to ``out``; returns the checkpoint dict.

    ``card`` is the model card written with it (default :data:`MODEL_CARD`); ``notes`` the
    command that made it, kept in the cfg (default: the demo model's command)."""
    import torch

    from skoots_export.architecture import build_network

    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_set = [generate(TRAIN_SEED + i, spec) for i in range(volumes)]
    validation_set = [generate(VALIDATION_SEED + i, spec) for i in range(2)]
    validation_batches = [sample_batch(np.random.default_rng(VALIDATION_SEED + i), validation_set, crop, batch_size) for i in range(4)]
    print(f"generated {volumes} training and 2 validation volumes of {spec.shape} in {time.perf_counter() - started:.0f}s", flush=True)

    card = dict(MODEL_CARD if card is None else card)
    if notes is None:
        notes = f"demo model: python -m examples.train --steps {steps} --seed {seed} (skoots-triton examples/train.py)"
    cfg = skoots_cfg(crop, learning_rate, steps, notes)
    # Channels-last: CPU convolution backward passes with few channels (the heads) run 3-10x faster.
    network = build_network(cfg.MODEL).to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.AdamW(network.parameters(), lr=learning_rate, weight_decay=1e-6)
    warmup = min(100, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup)))
    )
    avg_epoch_loss, avg_val_loss = [9999999999.9999999999], [9999999999.9999999999]  # as upstream starts them
    running: list[float] = []
    network.train()
    for step in range(1, steps + 1):
        total, *_ = losses(network, sample_batch(rng, train_set, crop, batch_size), skeleton_weight, vector_weight)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        schedule.step()
        running.append(total.item())
        if step % log_every == 0 or step == steps:
            with torch.no_grad():
                parts = np.array([[float(x) for x in losses(network, b, skeleton_weight, vector_weight)] for b in validation_batches]).mean(0)
            avg_epoch_loss.append(float(np.mean(running)))
            avg_val_loss.append(float(parts[0]))
            running = []
            _save(out, cfg, network, optimizer, avg_epoch_loss, avg_val_loss, card)  # as upstream's SAVE_INTERVAL
            print(
                f"step {step}/{steps}  train {avg_epoch_loss[-1]:.4f}  validation {parts[0]:.4f} "
                f"(prob {parts[1]:.3f}, skeleton {parts[2]:.3f}, vectors {parts[3]:.4f})  "
                f"{time.perf_counter() - started:.0f}s",
                flush=True,
            )
    checkpoint = _save(out, cfg, network, optimizer, avg_epoch_loss, avg_val_loss, card)
    print(
        f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) after {time.perf_counter() - started:.0f}s "
        f"({time.process_time():.0f} CPU-seconds)",
        flush=True,
    )
    return checkpoint


def _save(out: Path, cfg, network, optimizer, avg_epoch_loss: list, avg_val_loss: list, card: dict) -> dict:
    """Write the checkpoint as upstream training does (``torch.save`` of a dict), atomically."""
    import torch

    checkpoint = {
        "cfg": cfg,
        "model_state_dict": {k: v.contiguous() for k, v in network.state_dict().items()},
        "optimizer_state_dict": optimizer.state_dict(),
        "avg_epoch_loss": list(avg_epoch_loss),
        "avg_val_loss": list(avg_val_loss),
        "model_card": dict(card),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    torch.save(checkpoint, partial)
    partial.replace(out)
    return checkpoint


def _triple(text: str) -> tuple[int, int, int]:
    """``"X,Y,Z"`` → three positive ints (argparse type: a bad value is a one-line usage error)."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not three positive integers X,Y,Z")
    return values  # type: ignore[return-value]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("examples/demo_model.trch"), help="checkpoint to write")
    parser.add_argument("--steps", type=int, default=1200, help="optimiser steps")
    parser.add_argument("--batch", type=int, default=2, help="crops per step")
    parser.add_argument("--volumes", type=int, default=16, help="training volumes (seeds 1000, 1001, ...)")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (cosine decay after 100 warm-up steps)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights, crops and augmentation")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--crop", type=_triple, default=(64, 64, 16), help="training crop X,Y,Z (default 64,64,16)")
    demo_crop, demo_overlap = (",".join(map(str, MODEL_CARD[k])) for k in ("crop", "overlap"))
    parser.add_argument("--card-crop", type=_triple, help=f"model card crop X,Y,Z (default the demo's {demo_crop})")
    parser.add_argument("--card-overlap", type=_triple, help=f"model card overlap X,Y,Z (default the demo's {demo_overlap})")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch < 1 or args.volumes < 1:
        parser.error("--steps, --batch and --volumes must be at least 1")
    card = dict(MODEL_CARD)
    if args.card_crop:
        card["crop"] = list(args.card_crop)
    if args.card_overlap:
        card["overlap"] = list(args.card_overlap)
    if any(2 * o >= c for o, c in zip(card["overlap"], card["crop"])):
        parser.error(f"--card-overlap {card['overlap']} must be less than half of --card-crop {card['crop']}")
    if any(t > n for t, n in zip(args.crop, SyntheticSpec().shape)):
        parser.error(f"--crop {args.crop} must fit the training volumes {SyntheticSpec().shape}")
    notes = None  # the demo model's own note, unless another regime was asked for
    if card != MODEL_CARD or args.crop != (64, 64, 16):
        notes = "python -m examples.train " + " ".join(sys.argv[1:] if argv is None else argv) + " (skoots-triton examples/train.py)"
    import torch

    torch.set_num_threads(args.threads)
    train(
        args.out,
        steps=args.steps,
        batch_size=args.batch,
        crop=args.crop,
        learning_rate=args.lr,
        volumes=args.volumes,
        seed=args.seed,
        card=card,
        notes=notes,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
