"""Model cards: checked values, the order of precedence, and the round trip into config.pbtxt."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from checkpoints import TINY, skoots_cfg, write_checkpoint

from skoots_export.checkpoint import load_checkpoint
from skoots_export.contract.choices import Device
from skoots_export.contract.wire import ModelParameters, config_from_text, parameters_from_config
from skoots_export.errors import ExportOptionError, ModelCardError
from skoots_export.exporter import export_checkpoint, parameters_for
from skoots_export.model_card import CARD_KEYS, card_values, find_sidecar

CARD = {
    "crop": [32, 32, 16], "overlap": [4, 4, 2], "dilations_3d": 0, "dilations_2d": 0, "skeleton_threshold": 0.6,
    "dataset_mean": 100, "dataset_std": 20.5, "training_voxel_size": [0.01, 0.01, 0.03], "voxel_unit": "um",
}


def test_card_values_are_converted_to_the_parameters_types() -> None:
    values = card_values(CARD, "card")
    assert values["crop"] == (32, 32, 16) and values["dataset_mean"] == 100.0 and isinstance(values["dataset_mean"], float)
    assert values["training_voxel_size"] == (0.01, 0.01, 0.03) and values["voxel_unit"] == "micrometer"
    assert ModelParameters().replace(**values).dilations_3d == 0


def test_a_voxel_size_without_unit_is_in_micrometres_and_dtype_range_clears_statistics() -> None:
    assert card_values({"training_voxel_size": [4, 4, 40]}, "card")["voxel_unit"] == "micrometer"
    assert card_values({"normalization": "dtype_range"}, "card") == {"dataset_mean": None, "dataset_std": None}
    assert card_values({}, "card") == {}


@pytest.mark.parametrize(
    "card,pattern",
    [
        ({"crop": [1, 2, 3], "n": 2}, r"^card: unknown key 'n'; allowed keys: " + ", ".join(CARD_KEYS) + "$"),
        ({"crop": [24, 24]}, r"crop = \[24, 24\] must be three integers \[X, Y, Z\]"),
        ({"crop": [24.0, 24, 8]}, r"crop = \[24\.0, 24, 8\] must be three integers"),
        ({"vector_scaling": [1, "a", 2]}, r"vector_scaling = \[1, 'a', 2\] must be three numbers"),
        ({"dilations_3d": True}, r"dilations_3d = True must be an integer"),
        ({"prob_threshold": "0.5"}, r"prob_threshold = '0\.5' must be a number"),
        ({"dataset_mean": float("nan"), "dataset_std": 1.0}, r"dataset_mean = nan must be a number"),
        ({"voxel_unit": "parsec", "training_voxel_size": [1, 1, 1]}, r"voxel_unit = 'parsec' must be one of angstrom, centimeter, meter, micrometer"),
        ({"voxel_unit": "nm"}, r"voxel_unit needs training_voxel_size"),
        ({"normalization": "zscore"}, r"normalization = 'zscore' must be one of dtype_range, mean_std"),
        ({"normalization": "mean_std"}, r"dataset_mean and dataset_std come together"),
        ({"dataset_std": 2.0}, r"dataset_mean and dataset_std come together"),
        ({"normalization": "dtype_range", "dataset_mean": 1.0, "dataset_std": 2.0}, r"dtype_range takes no dataset_mean"),
        ("crop: 1", r"^card must be a mapping of key: value, not str; allowed keys: crop"),
    ],
)
def test_bad_cards_name_the_key_and_what_is_allowed(card, pattern: str) -> None:
    with pytest.raises(ModelCardError, match=pattern):
        card_values(card, "card")


@pytest.fixture()
def carded(tmp_path: Path) -> Path:
    """A checkpoint with dataset statistics, a card and cfg.SKOOTS.VECTOR_SCALING (30, 30, 6)."""
    cfg = skoots_cfg(**TINY)
    cfg.SKOOTS.VECTOR_SCALING = (30, 30, 6)
    return write_checkpoint(tmp_path / "model.trch", cfg, dataset_mean=7.0, dataset_std=3.0, model_card=dict(CARD))


def test_precedence_option_sidecar_card_checkpoint_cfg_seed(carded: Path) -> None:
    carded.with_suffix(".yaml").write_text("crop: [40, 40, 16]\nprob_threshold: 0.3\n")
    parameters, sources = parameters_for(load_checkpoint(carded), minimum_size=8, crop=(48, 48, 16), embedding_iterations=None)
    assert parameters.crop == (48, 48, 16) and sources["crop"] == "option"
    assert parameters.prob_threshold == 0.3 and sources["prob_threshold"] == "sidecar model.yaml"
    assert parameters.dilations_3d == 0 and sources["dilations_3d"] == "checkpoint card"
    assert (parameters.dataset_mean, parameters.dataset_std) == (100.0, 20.5)  # the card's, over the checkpoint's own
    assert sources["dataset_mean"] == sources["normalization"] == "checkpoint card"
    assert parameters.vector_scaling == (30.0, 30.0, 6.0) and sources["vector_scaling"] == "cfg.SKOOTS"
    assert parameters.embedding_iterations == 2 and sources["embedding_iterations"] == "seed default"
    assert sources["minimum_size"] == "network"


def test_without_a_card_the_checkpoints_statistics_and_cfg_apply(tmp_path: Path) -> None:
    checkpoint = write_checkpoint(tmp_path / "plain.trch", dataset_mean=7.0, dataset_std=3.0)
    parameters, sources = parameters_for(load_checkpoint(checkpoint))
    assert parameters.dataset_mean == 7.0 and sources["normalization"] == "checkpoint"
    assert parameters.crop == ModelParameters().crop and sources["crop"] == "seed default"
    assert parameters.training_voxel_size is None and parameters.voxel_unit is None


def test_a_sidecar_can_switch_a_cards_statistics_off(carded: Path) -> None:
    (carded.parent / "MODEL.yaml").write_text("normalization: dtype_range\n")
    parameters, sources = parameters_for(load_checkpoint(carded))
    assert parameters.normalization == "dtype_range" and sources["normalization"] == "sidecar MODEL.yaml"


def test_the_checkpoints_own_sidecar_wins_over_the_folders(tmp_path: Path) -> None:
    checkpoint = tmp_path / "epoch9.trch"
    assert find_sidecar(checkpoint) is None
    (tmp_path / "MODEL.yaml").write_text("{}\n")
    assert find_sidecar(checkpoint) == tmp_path / "MODEL.yaml"
    (tmp_path / "epoch9.yaml").write_text("{}\n")
    assert find_sidecar(checkpoint) == tmp_path / "epoch9.yaml"


def test_values_the_card_makes_invalid_are_refused(tmp_path: Path) -> None:
    checkpoint = write_checkpoint(tmp_path / "m.trch", model_card={"crop": [8, 8, 8], "overlap": [4, 4, 4]})
    with pytest.raises(ExportOptionError, match=r"crop \(8, 8, 8\) with overlap \(4, 4, 4\) keeps nothing"):
        parameters_for(load_checkpoint(checkpoint))


def test_the_card_rides_in_a_checkpoint_that_weights_only_loading_reads(carded: Path) -> None:
    """The card is plain data: torch's weights_only loader takes it (cfg aside, which it cannot)."""
    data = torch.load(carded, weights_only=False)
    torch.save({"model_card": data["model_card"], "model_state_dict": data["model_state_dict"]}, carded.with_name("w.pt"))
    assert torch.load(carded.with_name("w.pt"), weights_only=True)["model_card"] == CARD


def test_export_round_trip_through_config_pbtxt(carded: Path, tmp_path: Path) -> None:
    result = export_checkpoint(carded, repository=tmp_path / "repo", device=Device.CPU, dilations_2d=1)
    config = config_from_text((tmp_path / "repo" / "skoots" / "config.pbtxt").read_text())
    read_back = parameters_from_config(config)
    assert read_back == result.parameters
    assert read_back.crop == (32, 32, 16) and read_back.dilations_2d == 1 and read_back.skeleton_threshold == 0.6
    assert read_back.training_voxel_size == (0.01, 0.01, 0.03) and read_back.voxel_unit == "micrometer"
    assert config.parameters["torch_version"].string_value == str(torch.__version__) == result.torch_version
    assert result.sources["dilations_2d"] == "option" and result.sources["crop"] == "checkpoint card"


def test_configs_written_before_cards_still_load() -> None:
    old = {k: v for k, v in ModelParameters().to_strings().items() if k not in ("training_voxel_size", "voxel_unit")}
    assert ModelParameters.from_strings(old) == ModelParameters()
    with pytest.raises(ValueError, match="training_voxel_size and voxel_unit come together"):
        ModelParameters(training_voxel_size=(1.0, 1.0, 1.0))
