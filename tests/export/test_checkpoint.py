"""Loading checkpoints without running code from them, and building the network their cfg describes."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from checkpoints import TINY, random_state_dict, skoots_cfg, write_checkpoint
from yacs.config import CfgNode

from skoots_export.architecture import build_network, load_weights
from skoots_export.checkpoint import load_checkpoint
from skoots_export.errors import ArchitectureError, CheckpointError, StateDictMismatchError


class Touch:
    """Unpickling this creates ``marker``: code run by the pickle, confined to a test folder."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


class Reduce:
    """Pickles as ``func(*args)``: an allow-listed global called with arguments it rejects."""

    def __init__(self, func: Callable, args: tuple) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("checkpoint") / "tiny.trch")


# --- the upstream format ---------------------------------------------------------------------


def test_upstream_format_loads_without_trust(checkpoint: Path) -> None:
    loaded = load_checkpoint(checkpoint)
    assert loaded.path == checkpoint
    assert isinstance(loaded.cfg, CfgNode)
    assert list(loaded.cfg.MODEL.DIMS) == TINY["DIMS"] and list(loaded.cfg.MODEL.DEPTHS) == TINY["DEPTHS"]
    assert loaded.cfg.MODEL.ARCHITECTURE == "bism_unext" and loaded.cfg.MODEL.KERNEL_SIZE == 3
    vector_scaling = loaded.cfg.SKOOTS.VECTOR_SCALING
    assert isinstance(vector_scaling, tuple) and vector_scaling == (60, 60, 12)
    assert loaded.cfg.TRAIN.SIGMA_DECAY == [[0.66, 200]]
    assert loaded.dataset_mean is None and loaded.dataset_std is None
    assert all(isinstance(v, torch.Tensor) for v in loaded.state_dict.values())


def test_loaded_weights_fill_the_network_exactly(checkpoint: Path) -> None:
    loaded = load_checkpoint(checkpoint)
    network = build_network(loaded.cfg.MODEL)
    assert set(network.state_dict()) == set(loaded.state_dict)
    load_weights(network, loaded.state_dict)
    for key, value in network.state_dict().items():
        assert torch.equal(value, loaded.state_dict[key]), key


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "_orig_mod.module."])
def test_wrapper_prefixes_of_ddp_and_compile_are_stripped(tmp_path: Path, prefix: str) -> None:
    cfg = skoots_cfg(**TINY)
    state = random_state_dict(cfg)
    path = tmp_path / "wrapped.trch"
    torch.save({"cfg": cfg, "model_state_dict": {prefix + k: v for k, v in state.items()}}, path)
    loaded = load_checkpoint(path)
    assert loaded.state_dict.keys() == state.keys()
    load_weights(build_network(cfg.MODEL), loaded.state_dict)


def test_a_prefix_on_only_some_keys_is_kept_and_named(tmp_path: Path) -> None:
    cfg = skoots_cfg(**TINY)
    state = random_state_dict(cfg)
    first = next(iter(state))
    state["module." + first] = state.pop(first)
    path = tmp_path / "half.trch"
    torch.save({"cfg": cfg, "model_state_dict": state}, path)
    with pytest.raises(StateDictMismatchError, match=rf"missing 1: {re.escape(first)}; unexpected 1: module\.{re.escape(first)}"):
        load_weights(build_network(cfg.MODEL), load_checkpoint(path).state_dict)


def test_checkpoint_of_upstream_cfg_and_model_exports(tmp_path: Path) -> None:
    """What upstream training writes: its own default cfg, its own bism model, every loss list."""
    config = pytest.importorskip("skoots.config", reason="install skoots==0.0.5 and bism==0.0.6 with --no-deps")
    utils = pytest.importorskip("skoots.lib.utils")
    from skoots_export.contract.choices import Device
    from skoots_export.exporter import export_checkpoint

    cfg = config.get_cfg_defaults()
    cfg.MODEL.DIMS, cfg.MODEL.DEPTHS, cfg.MODEL.KERNEL_SIZE, cfg.MODEL.OUT_CHANNELS = [4, 8, 16, 8, 4], [1, 1, 1, 1, 1], 3, 8
    model = utils.cfg_to_bism_model(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.TRAIN.LEARNING_RATE)
    model(torch.rand(1, 1, 16, 16, 8)).sum().backward()
    optimizer.step()
    losses = {f"avg_{split}_{kind}loss": [9999999999.9999999999, 0.25]
              for split in ("epoch", "val") for kind in ("", "embed_", "prob_", "skele_")}
    path = tmp_path / "upstream.trch"
    torch.save({"cfg": cfg, "model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict(), **losses}, path)

    result = export_checkpoint(path, repository=tmp_path / "repo", device=Device.CPU, crop=(32, 32, 16), overlap=(4, 4, 2))
    assert result.parameters.vector_scaling == tuple(float(v) for v in cfg.SKOOTS.VECTOR_SCALING)
    scripted = torch.jit.load(str(tmp_path / "repo" / "skoots" / "1" / "model.pt"))
    x = torch.rand(1, 1, 32, 32, 16).half()
    with torch.inference_mode():
        expected = model.eval()(x.float())
        vectors, _, prob = scripted(x)
    assert float((prob.float() - expected[:, 4:5]).abs().max()) <= 1e-3
    assert float((vectors.float() - expected[:, 0:3] * (expected[:, 4:5] > 0.5)).abs().max()) <= 1e-3


def test_trusted_load_of_a_clean_checkpoint_reads_the_same(checkpoint: Path) -> None:
    safe, trusted = load_checkpoint(checkpoint), load_checkpoint(checkpoint, trust=True)
    assert trusted.cfg == safe.cfg
    assert safe.state_dict.keys() == trusted.state_dict.keys()
    assert all(torch.equal(safe.state_dict[k], trusted.state_dict[k]) for k in safe.state_dict)


@pytest.mark.parametrize(
    "mean,std",
    [
        (0.5, 2.0),
        (0.5, 2),
        (torch.tensor(0.5), torch.tensor(2.0)),
        (torch.tensor(0.5, dtype=torch.float16), torch.tensor(2, dtype=torch.int64)),
        (np.float64(0.5), np.float64(2.0)),
        (np.float32(0.5), np.float32(2.0)),
        (torch.tensor([0.5]), torch.tensor([[2.0]])),  # one element, any shape
    ],
    ids=["float", "int-std", "0d-tensor", "half-and-long-tensor", "numpy-float64", "numpy-float32", "one-element"],
)
def test_dataset_statistics_are_read(tmp_path: Path, mean: Any, std: Any) -> None:
    loaded = load_checkpoint(write_checkpoint(tmp_path / "c.trch", dataset_mean=mean, dataset_std=std))
    assert loaded.dataset_mean == 0.5 and loaded.dataset_std == 2.0
    assert type(loaded.dataset_mean) is float and type(loaded.dataset_std) is float


def test_dataset_statistics_stored_as_none_read_as_absent(tmp_path: Path) -> None:
    loaded = load_checkpoint(write_checkpoint(tmp_path / "c.trch", dataset_mean=None, dataset_std=None))
    assert loaded.dataset_mean is None and loaded.dataset_std is None


@pytest.mark.parametrize(
    "mean,match",
    [
        (torch.tensor([0.1, 0.2]), r"dataset_mean = .* must be one finite number"),
        (torch.zeros(2, 2), r"(?s)dataset_mean = .* must be one finite number"),
        (torch.tensor([]), r"dataset_mean = .* must be one finite number"),
        (float("nan"), r"dataset_mean = nan must be one finite number"),
        (float("inf"), r"dataset_mean = inf must be one finite number"),
        ("0.5", r"dataset_mean = '0.5' is not a number"),
        ([0.1, 0.2], r"dataset_mean = \[0.1, 0.2\] must be one finite number"),
    ],
    ids=["per-channel", "matrix", "empty", "nan", "inf", "string", "list"],
)
def test_unusable_dataset_statistics_are_refused(tmp_path: Path, mean: Any, match: str) -> None:
    path = write_checkpoint(tmp_path / "c.trch", dataset_mean=mean, dataset_std=1.0)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_unusable_dataset_statistics_message_is_one_line(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "c.trch", dataset_mean=torch.zeros(2, 2), dataset_std=1.0)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert "\n" not in str(error.value)


def test_unusable_dataset_std_is_named(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "c.trch", dataset_mean=0.0, dataset_std=torch.ones(3))
    with pytest.raises(CheckpointError, match=r"dataset_std = .* must be one finite number"):
        load_checkpoint(path)


# --- code in the pickle ----------------------------------------------------------------------


def _hide_in(location: str, data: dict, hook: Touch) -> None:
    if location == "top":
        data["hook"] = hook
    elif location == "optimizer":
        data["optimizer_state_dict"]["state"][0]["hook"] = hook
    elif location == "loss-list":
        data["avg_epoch_loss"].append(hook)
    else:  # before the cfg, so it would run before anything is checked
        rest = dict(data)
        data.clear()
        data.update({"hook": hook, **rest})
        assert next(iter(data)) == "hook"


@pytest.mark.parametrize("location", ["top", "optimizer", "loss-list", "first"])
def test_pickled_code_needs_trust(tmp_path: Path, checkpoint: Path, location: str) -> None:
    marker = tmp_path / "MARKER"
    data = torch.load(checkpoint, weights_only=False)
    _hide_in(location, data, Touch(marker))
    path = tmp_path / "unsafe.trch"
    torch.save(data, path)

    with pytest.raises(CheckpointError, match=r"unsafe\.trch needs \S+ to load, which can run arbitrary code; pass --trust-checkpoint") as error:
        load_checkpoint(path)
    assert "--trust-checkpoint" in str(error.value) and str(path) in str(error.value)
    assert not marker.exists(), "the untrusted load ran code from the pickle"

    # The flag is the one way to run it: the same file then loads and the code runs.
    assert load_checkpoint(path, trust=True).cfg.MODEL.DIMS == TINY["DIMS"]
    assert marker.exists()


def test_pickled_code_refusal_works_for_the_legacy_torch_format(tmp_path: Path) -> None:
    marker, path = tmp_path / "MARKER", tmp_path / "legacy-format.trch"
    torch.save({"cfg": skoots_cfg(**TINY), "hook": Touch(marker)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_legacy_torch_format_checkpoint_loads(tmp_path: Path, checkpoint: Path) -> None:
    path = tmp_path / "legacy-format.trch"
    torch.save(torch.load(checkpoint, weights_only=False), path, _use_new_zipfile_serialization=False)
    loaded = load_checkpoint(path)
    assert tuple(loaded.cfg.SKOOTS.VECTOR_SCALING) == (60, 60, 12) and loaded.state_dict


# --- files that are not SKOOTS checkpoints ---------------------------------------------------


def _cfg_without_model() -> CfgNode:
    cfg = skoots_cfg(**TINY)
    del cfg["MODEL"]
    return cfg


@pytest.mark.parametrize(
    "write,match",
    [
        (lambda p: None, r"checkpoint not found: .*c\.trch"),
        (lambda p: p.mkdir(), r"checkpoint not found"),
        (lambda p: p.write_bytes(b""), r"c\.trch is not a readable PyTorch checkpoint"),
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)), r"is not a readable PyTorch checkpoint"),
        (lambda p: p.write_text("model: skoots\nDIMS: [4, 8]\n"), r"is not a readable PyTorch checkpoint"),
        (lambda p: torch.save(random_state_dict(skoots_cfg(**TINY)), p), r"has no 'cfg': a legacy or non-SKOOTS file"),
        (lambda p: torch.save([1, 2], p), r"has no 'cfg'"),
        (lambda p: torch.save(torch.zeros(3), p), r"has no 'cfg'"),
        (lambda p: torch.save({"cfg": {"SKOOTS": {}}, "model_state_dict": {}}, p), r"'cfg' has no MODEL section"),
        (lambda p: torch.save({"cfg": _cfg_without_model(), "model_state_dict": {}}, p), r"'cfg' has no MODEL section"),
        (lambda p: torch.save({"cfg": "MODEL: x"}, p), r"'cfg' has no MODEL section"),
        (lambda p: torch.save({"cfg": {"MODEL": [1]}}, p), r"'cfg' has no MODEL section"),
        (lambda p: torch.save({"cfg": skoots_cfg(**TINY)}, p), r"has no 'model_state_dict' of tensors"),
        (lambda p: torch.save({"cfg": skoots_cfg(**TINY), "model_state_dict": [torch.zeros(1)]}, p), r"no 'model_state_dict' of tensors"),
        (lambda p: torch.save({"cfg": skoots_cfg(**TINY), "model_state_dict": {"a": torch.zeros(1), "b": 1}}, p), r"no 'model_state_dict' of tensors"),
        (lambda p: torch.save({"cfg": skoots_cfg(**TINY), "model_state_dict": {"a": [1.0]}}, p), r"no 'model_state_dict' of tensors"),
    ],
    ids=["missing", "directory", "empty", "random-bytes", "text", "bare-state-dict", "list", "tensor",
         "dict-cfg-without-model", "cfgnode-without-model", "cfg-string", "model-not-mapping",
         "no-state-dict", "state-dict-list", "state-dict-int", "state-dict-list-value"],
)
def test_unusable_files_are_named(tmp_path: Path, write: Callable[[Path], Any], match: str) -> None:
    path = tmp_path / "c.trch"
    write(path)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


@pytest.mark.parametrize("fraction", [0.5, 0.1, 0.95])
def test_truncated_checkpoint(tmp_path: Path, checkpoint: Path, fraction: float) -> None:
    data = checkpoint.read_bytes()
    (tmp_path / "t.trch").write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match=r"t\.trch is not a readable PyTorch checkpoint \(.+\)"):
        load_checkpoint(tmp_path / "t.trch")


def test_error_message_is_one_line(tmp_path: Path, checkpoint: Path) -> None:
    data = checkpoint.read_bytes()
    (tmp_path / "t.trch").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(tmp_path / "t.trch")
    assert "\n" not in str(error.value)


def test_malformed_allowed_global_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "c.trch"
    torch.save({"cfg": skoots_cfg(**TINY), "bad": Reduce(torch.Size, (1, 2))}, path)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(path)


# --- cfg.MODEL the runtime cannot build ------------------------------------------------------


def _without(key: str) -> CfgNode:
    cfg = skoots_cfg(**TINY)
    del cfg.MODEL[key]
    return cfg


@pytest.mark.parametrize(
    "change,match",
    [
        ({"ARCHITECTURE": "bism_foo"}, r"cfg\.MODEL\.ARCHITECTURE = 'bism_foo' is not supported; expected one of: bism_unext"),
        ({"ARCHITECTURE": "bism_unet"}, r"'bism_unet' is not supported: .*upstream skoots passes the ConvNeXt block3d to bism's UNet, which fails"),
        ({"ARCHITECTURE": "BISM_UNET"}, r"'bism_unet' is not supported"),
        ({"ARCHITECTURE": None}, r"ARCHITECTURE = None is not supported"),
        ({"ACTIVATION": "tanh"}, r"cfg\.MODEL\.ACTIVATION = 'tanh' is not supported; expected one of: gelu, relu, silu, selu"),
        ({"BLOCK": "block2d"}, r"cfg\.MODEL\.BLOCK = 'block2d' is not supported; expected one of: block3d"),
        ({"CONCAT_BLOCK": "add"}, r"cfg\.MODEL\.CONCAT_BLOCK = 'add' is not supported; expected one of: concatconv3d"),
        ({"UPSAMPLE_BLOCK": "transpose"}, r"cfg\.MODEL\.UPSAMPLE_BLOCK = 'transpose' is not supported; expected one of: upsamplelayer3d"),
        ({"NORMALIZATION": "batchnorm"}, r"cfg\.MODEL\.NORMALIZATION = 'batchnorm' is not supported; expected one of: layernorm"),
        ({"DIMS": [4, 8, 16, 8]}, r"DIMS \[4, 8, 16, 8\] and DEPTHS \[1, 1, 1, 1, 1\] must have the same odd length"),
        ({"DEPTHS": [1, 1, 1]}, r"DIMS \[4, 8, 16, 8, 4\] and DEPTHS \[1, 1, 1\] must have the same odd length"),
        ({"DIMS": [4, 8, 8, 4], "DEPTHS": [1, 1, 1, 1]}, r"must have the same odd length"),
        ({"DIMS": [4, 0, 16, 8, 4]}, r"cfg\.MODEL\.DIMS = .* must be a list of positive integers"),
        ({"DIMS": []}, r"cfg\.MODEL\.DIMS = \[\] must be a list of positive integers"),
        ({"DEPTHS": "abc"}, r"cfg\.MODEL\.DEPTHS = 'abc' must be a list of positive integers"),
        ({"KERNEL_SIZE": 4}, r"cfg\.MODEL\.KERNEL_SIZE = 4 must be an odd positive integer"),
        ({"KERNEL_SIZE": 0}, r"KERNEL_SIZE = 0 must be an odd positive integer"),
        ({"KERNEL_SIZE": 3.0}, r"KERNEL_SIZE = 3.0 must be an odd positive integer"),
        ({"IN_CHANNELS": 3}, r"IN_CHANNELS = 3 .* SKOOTS takes one input channel"),
        ({"OUT_CHANNELS": 0}, r"OUT_CHANNELS = 0: SKOOTS takes one input channel and a positive number"),
        ({"LAYER_SCALE_INIT_VALUE": "1e-6"}, r"LAYER_SCALE_INIT_VALUE = '1e-6' must be a number"),
    ],
    ids=lambda v: "-".join(f"{k}={v[k]}" for k in v) if isinstance(v, dict) else None,
)
def test_unbuildable_cfgs_are_named(change: dict, match: str) -> None:
    with pytest.raises(ArchitectureError, match=match):
        build_network(skoots_cfg(**{**TINY, **change}).MODEL)


@pytest.mark.parametrize("key", ["ARCHITECTURE", "ACTIVATION", "BLOCK", "DIMS", "KERNEL_SIZE", "OUT_CHANNELS"])
def test_missing_model_fields_are_named(key: str) -> None:
    with pytest.raises(ArchitectureError, match=rf"{key} = None"):
        build_network(_without(key).MODEL)


def test_names_are_case_insensitive_like_upstream() -> None:
    model = skoots_cfg(**{**TINY, "ARCHITECTURE": "BISM_UNEXT", "ACTIVATION": "GELU", "BLOCK": "Block3d"}).MODEL
    assert set(build_network(model).state_dict()) == set(build_network(skoots_cfg(**TINY).MODEL).state_dict())


# --- weights that do not fit -----------------------------------------------------------------


def test_state_dict_mismatch_names_the_keys() -> None:
    cfg = skoots_cfg(**TINY)
    state = random_state_dict(cfg)
    state.pop("out_prob.bias")
    state["extra.weight"] = torch.zeros(1)
    state["out_embed.weight"] = torch.zeros(3, 4, 3, 3, 3)
    with pytest.raises(StateDictMismatchError, match="model_state_dict does not match cfg.MODEL") as error:
        load_weights(build_network(cfg.MODEL), state)
    message = str(error.value)
    assert "missing 1: out_prob.bias;" in message
    assert "unexpected 1: extra.weight;" in message
    assert "shape mismatch 1: out_embed.weight (3, 4, 3, 3, 3) != (3, 8, 3, 3, 3)" in message
    assert message.endswith("export the checkpoint with the cfg it was trained with")
    assert "more)" not in message


@pytest.mark.parametrize("kind", ["missing", "unexpected"])
@pytest.mark.parametrize("count", [5, 6, 9])
def test_more_than_five_problems_are_counted_not_listed(kind: str, count: int) -> None:
    cfg = skoots_cfg(**TINY)
    state = random_state_dict(cfg)
    if kind == "missing":
        keys = list(state)[:count]
        for key in keys:
            del state[key]
    else:
        keys = [f"extra{i}.weight" for i in range(count)]
        state.update({k: torch.zeros(1) for k in keys})
    with pytest.raises(StateDictMismatchError, match=rf"{kind} {count}: ") as error:
        load_weights(build_network(cfg.MODEL), state)
    message = str(error.value)
    named = [k for k in keys if re.search(rf"\b{re.escape(k)}\b", message)]
    assert named == keys[:5]
    if count > 5:
        assert f"{', '.join(keys[:5])} (+{count - 5} more)" in message
    else:
        assert "more)" not in message


def test_shape_mismatches_are_counted_not_listed() -> None:
    cfg = skoots_cfg(**TINY)
    expected = build_network(cfg.MODEL).state_dict()
    state = random_state_dict(skoots_cfg(**{**TINY, "DIMS": [6, 8, 16, 8, 6]}))
    assert state.keys() == expected.keys()
    mismatched = sum(1 for k, v in expected.items() if v.shape != state[k].shape)
    assert mismatched > 5
    with pytest.raises(StateDictMismatchError, match=rf"shape mismatch {mismatched}: ") as error:
        load_weights(build_network(cfg.MODEL), state)
    message = str(error.value)
    assert message.count(" != ") == 5 and f"(+{mismatched - 5} more)" in message
    assert "missing" not in message and "unexpected" not in message


def test_a_rejected_state_dict_leaves_the_network_untouched() -> None:
    cfg = skoots_cfg(**TINY)
    network = build_network(cfg.MODEL)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    state = random_state_dict(cfg, seed=1)
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(StateDictMismatchError):
        load_weights(network, state)
    assert all(torch.equal(v, before[k]) for k, v in network.state_dict().items())


# --- layer scale -----------------------------------------------------------------------------


def test_layer_scale_zero_drops_gamma_except_in_the_stem() -> None:
    keys = build_network(skoots_cfg(**{**TINY, "LAYER_SCALE_INIT_VALUE": 0.0}).MODEL).state_dict()
    gammas = [k for k in keys if k.endswith("gamma")]
    assert gammas == ["backbone.init_stage.1.gamma"]


def test_layer_scale_puts_gamma_in_every_block() -> None:
    keys = build_network(skoots_cfg(**TINY).MODEL).state_dict()
    gammas = [k for k in keys if k.endswith("gamma")]
    assert "backbone.init_stage.1.gamma" in gammas
    assert len(gammas) == 1 + sum(TINY["DEPTHS"])


def test_layer_scale_zero_checkpoint_round_trips(tmp_path: Path) -> None:
    cfg = skoots_cfg(**{**TINY, "LAYER_SCALE_INIT_VALUE": 0})
    loaded = load_checkpoint(write_checkpoint(tmp_path / "c.trch", cfg))
    network = build_network(loaded.cfg.MODEL)
    load_weights(network, loaded.state_dict)
    with_gamma = dict(random_state_dict(skoots_cfg(**TINY)))
    with pytest.raises(StateDictMismatchError, match=r"unexpected \d+: .*gamma"):
        load_weights(network, with_gamma)
