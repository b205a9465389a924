"""Build SKOOTS checkpoints in the upstream format, for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from yacs.config import CfgNode

from skoots_export.architecture import build_network

TINY = {"DIMS": [4, 8, 16, 8, 4], "DEPTHS": [1, 1, 1, 1, 1], "KERNEL_SIZE": 3, "OUT_CHANNELS": 8}


def skoots_cfg(**model: Any) -> CfgNode:
    """A cfg shaped like upstream skoots' defaults (skoots/config.py), with MODEL overrides."""
    cfg = CfgNode()
    cfg.SYSTEM = CfgNode({"NUM_GPUS": 1, "NUM_CPUS": 1})
    cfg.MODEL = CfgNode(
        {
            "ARCHITECTURE": "bism_unext",
            "IN_CHANNELS": 1,
            "OUT_CHANNELS": 32,
            "DIMS": [32, 64, 128, 64, 32],
            "DEPTHS": [2, 2, 2, 2, 2],
            "KERNEL_SIZE": 7,
            "DROP_PATH_RATE": 0.0,
            "LAYER_SCALE_INIT_VALUE": 1.0,
            "ACTIVATION": "gelu",
            "BLOCK": "block3d",
            "CONCAT_BLOCK": "concatconv3d",
            "UPSAMPLE_BLOCK": "upsamplelayer3d",
            "NORMALIZATION": "layernorm",
        }
    )
    cfg.MODEL.update(model)
    cfg.TRAIN = CfgNode({"LEARNING_RATE": 5e-4, "SIGMA_DECAY": [[0.66, 200]], "MIXED_PRECISION": True})
    cfg.AUGMENTATION = CfgNode({"CROP_WIDTH": 300, "SMOOTH_SKELETON_KERNEL_SIZE": (3, 3, 1)})
    cfg.SKOOTS = CfgNode({"VECTOR_SCALING": (60, 60, 60 // 5), "ANISOTROPY": (1.0, 1.0, 3.0), "NOTES": ""})
    return cfg


def random_state_dict(cfg: CfgNode, seed: int = 0) -> dict[str, torch.Tensor]:
    """Weights of the cfg's network, randomised (layer norms and gammas included)."""
    generator = torch.Generator().manual_seed(seed)
    network = build_network(cfg.MODEL)
    return {
        k: (torch.rand(v.shape, generator=generator) - 0.5) * (0.6 if v.ndim > 1 else 1.0) + (1.0 if k.endswith(("norm.weight", "gamma")) else 0.0)
        for k, v in network.state_dict().items()
    }


def lively(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scale the heads of random weights so a crop has ~60% object, ~8% skeleton and
    vectors of all sizes: segmentations with many instances, for end-to-end tests."""
    state = dict(state)
    state["out_prob.bias"] = state["out_prob.bias"] + 1.0
    state["out_skeleton.weight"] = state["out_skeleton.weight"] * 8
    state["out_skeleton.bias"] = torch.tensor([-5.0])
    state["out_embed.weight"] = state["out_embed.weight"] * 4
    return state


def write_checkpoint(
    path: Path, cfg: CfgNode | None = None, seed: int = 0, *, make_lively: bool = False, **extra: Any
) -> Path:
    """``torch.save`` a dict like upstream training's, with optimizer state and loss lists."""
    cfg = cfg or skoots_cfg(**TINY)
    state = random_state_dict(cfg, seed)
    if make_lively:
        state = lively(state)
    params = [torch.nn.Parameter(v.clone()) for v in state.values()]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    sum(p.sum() for p in params).backward()
    optimizer.step()
    data = {
        "cfg": cfg,
        "model_state_dict": state,
        "optimizer_state_dict": optimizer.state_dict(),
        "avg_epoch_loss": [9999999999.9999999999, 0.5],
        "avg_val_loss": [9999999999.9999999999, 0.6],
    }
    data.update(extra)
    torch.save(data, path)
    return path
