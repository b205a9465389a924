"""Our network equals upstream bism 0.0.6 built by upstream skoots from the same cfg."""

from __future__ import annotations

import pytest
import torch
from checkpoints import random_state_dict, skoots_cfg

from skoots_export.architecture import build_network, load_weights

upstream_utils = pytest.importorskip(
    "skoots.lib.utils", reason="install skoots==0.0.5 and bism==0.0.6 with --no-deps"
)

CFGS = {
    "gelu-k3-d4": dict(DIMS=[4, 8, 16, 8, 4], DEPTHS=[1, 1, 1, 1, 1], KERNEL_SIZE=3, ACTIVATION="gelu", OUT_CHANNELS=8),
    "relu-k5-d6-deep": dict(DIMS=[6, 12, 24, 12, 6], DEPTHS=[2, 1, 3, 1, 2], KERNEL_SIZE=5, ACTIVATION="relu", OUT_CHANNELS=6),
    "silu-k7-no-layer-scale": dict(DIMS=[8, 8, 8], DEPTHS=[1, 2, 1], KERNEL_SIZE=7, ACTIVATION="silu", LAYER_SCALE_INIT_VALUE=0.0, OUT_CHANNELS=4),
    "selu-k3-7-levels": dict(DIMS=[4, 6, 8, 10, 8, 6, 4], DEPTHS=[1, 1, 1, 2, 1, 1, 1], KERNEL_SIZE=3, ACTIVATION="selu", OUT_CHANNELS=5),
}


@pytest.mark.parametrize("name", sorted(CFGS))
def test_network_matches_upstream_bism(name: str) -> None:
    cfg = skoots_cfg(**CFGS[name])
    state = random_state_dict(cfg, seed=len(name))
    upstream = upstream_utils.cfg_to_bism_model(cfg)
    upstream.load_state_dict(state, strict=True)
    ours = build_network(cfg.MODEL)
    load_weights(ours, state)
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(ours) == shapes(upstream)
    x = torch.rand((2, 1, 34, 26, 18), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = upstream.eval()(x)
        got = ours.eval()(x)
        scripted = torch.jit.script(ours)(x)
    assert got.shape == expected.shape == (2, 5, 34, 26, 18)
    assert float((got - expected).abs().max()) <= 1e-5
    assert float((scripted - expected).abs().max()) <= 1e-5
