"""Loading checkpoints safely, and building the network their cfg describes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from checkpoints import TINY, random_state_dict, skoots_cfg, write_checkpoint
from skoots_export.architecture import build_network, load_weights
from skoots_export.checkpoint import load_checkpoint
from skoots_export.errors import ArchitectureError, CheckpointError, StateDictMismatchError


class Touch:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_upstream_format_loads_without_trust(tmp_path: Path) -> None:
    loaded = load_checkpoint(write_checkpoint(tmp_path / "c.trch"))
    assert list(loaded.cfg.MODEL.DIMS) == TINY["DIMS"]
    assert tuple(loaded.cfg.SKOOTS.VECTOR_SCALING) == (60, 60, 12)
    assert loaded.dataset_mean is None and loaded.dataset_std is None
    assert all(isinstance(v, torch.Tensor) for v in loaded.state_dict.values())


@pytest.mark.parametrize("mean", [0.5, torch.tensor(0.5), np.float64(0.5), torch.tensor([0.5])])
def test_dataset_statistics_are_read(tmp_path: Path, mean) -> None:
    loaded = load_checkpoint(write_checkpoint(tmp_path / "c.trch", dataset_mean=mean, dataset_std=2))
    assert loaded.dataset_mean == 0.5 and loaded.dataset_std == 2.0


def test_per_channel_statistics_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="dataset_mean .* one finite number"):
        load_checkpoint(write_checkpoint(tmp_path / "c.trch", dataset_mean=torch.tensor([0.1, 0.2]), dataset_std=1.0))


def test_pickled_code_needs_trust(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "c.trch", hook=Touch(tmp_path / "MARKER"))
    with pytest.raises(CheckpointError, match=r"needs .* which can run arbitrary code; pass --trust-checkpoint"):
        load_checkpoint(path)
    assert not (tmp_path / "MARKER").exists()
    load_checkpoint(path, trust=True)
    assert (tmp_path / "MARKER").exists()


@pytest.mark.parametrize(
    "write,match",
    [
        (lambda p: None, "not found"),
        (lambda p: p.write_bytes(b""), "not a readable PyTorch checkpoint"),
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)), "not a readable PyTorch checkpoint"),
        (lambda p: p.write_text("hello"), "not a readable PyTorch checkpoint"),
        (lambda p: torch.save(random_state_dict(skoots_cfg(**TINY)), p), "no 'cfg'"),
        (lambda p: torch.save([1, 2], p), "no 'cfg'"),
        (lambda p: torch.save({"cfg": {"SKOOTS": {}}}, p), "no MODEL section"),
        (lambda p: torch.save({"cfg": skoots_cfg(**TINY)}, p), "no 'model_state_dict'"),
        (lambda p: torch.save({"cfg": skoots_cfg(**TINY), "model_state_dict": {"a": 1}}, p), "no 'model_state_dict' of tensors"),
    ],
)
def test_unusable_files_are_named(tmp_path: Path, write, match: str) -> None:
    path = tmp_path / "c.trch"
    write(path)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_truncated_checkpoint(tmp_path: Path) -> None:
    data = write_checkpoint(tmp_path / "c.trch").read_bytes()
    (tmp_path / "t.trch").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "t.trch")


@pytest.mark.parametrize(
    "change,match",
    [
        ({"ARCHITECTURE": "bism_foo"}, "ARCHITECTURE = 'bism_foo'"),
        ({"ARCHITECTURE": "bism_unet"}, "upstream skoots passes the ConvNeXt"),
        ({"ACTIVATION": "tanh"}, "ACTIVATION = 'tanh'.*gelu, relu, silu, selu"),
        ({"BLOCK": "block2d"}, "BLOCK"),
        ({"CONCAT_BLOCK": "add"}, "CONCAT_BLOCK"),
        ({"UPSAMPLE_BLOCK": "transpose"}, "UPSAMPLE_BLOCK"),
        ({"NORMALIZATION": "batchnorm"}, "NORMALIZATION"),
        ({"DIMS": [4, 8, 16, 8]}, "same odd length"),
        ({"DEPTHS": [1, 1, 1]}, "same odd length"),
        ({"DIMS": [4, 0, 16, 8, 4]}, "positive integers"),
        ({"KERNEL_SIZE": 4}, "odd positive integer"),
        ({"IN_CHANNELS": 3}, "one input channel"),
    ],
)
def test_unbuildable_cfgs_are_named(change: dict, match: str) -> None:
    with pytest.raises(ArchitectureError, match=match):
        build_network(skoots_cfg(**{**TINY, **change}).MODEL)


def test_state_dict_mismatch_names_the_keys() -> None:
    cfg = skoots_cfg(**TINY)
    state = random_state_dict(cfg)
    state.pop("out_prob.bias")
    state["extra.weight"] = torch.zeros(1)
    state["out_embed.weight"] = torch.zeros(3, 4, 3, 3, 3)
    with pytest.raises(StateDictMismatchError) as error:
        load_weights(build_network(cfg.MODEL), state)
    message = str(error.value)
    assert "missing 1: out_prob.bias" in message and "unexpected 1: extra.weight" in message
    assert "out_embed.weight (3, 4, 3, 3, 3) != (3, 8, 3, 3, 3)" in message


def test_state_dict_mismatch_lists_five_and_counts_the_rest() -> None:
    cfg = skoots_cfg(**TINY)
    state = random_state_dict(skoots_cfg(**{**TINY, "DIMS": [6, 8, 16, 8, 6]}))
    with pytest.raises(StateDictMismatchError) as error:
        load_weights(build_network(cfg.MODEL), state)
    mismatched = len(state) - sum(1 for k, v in build_network(cfg.MODEL).state_dict().items() if v.shape == state[k].shape)
    assert f"shape mismatch {mismatched}:" in str(error.value)
    assert str(error.value).count(" != ") == 5 and f"(+{mismatched - 5} more)" in str(error.value)


def test_layer_scale_zero_drops_gamma_except_in_the_stem() -> None:
    keys = build_network(skoots_cfg(**{**TINY, "LAYER_SCALE_INIT_VALUE": 0.0}).MODEL).state_dict()
    gammas = [k for k in keys if k.endswith("gamma")]
    assert gammas == ["backbone.init_stage.1.gamma"]
