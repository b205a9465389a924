"""--tile: the whole-step tiles `choose_tile` picks among, what a tile costs, the refusals, the
activation estimate export writes, and grids of tiles larger than the volume."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skoots_client.errors import InputError
from skoots_client.model_source import embedded_model
from skoots_client.tile_choice import TileCap, choose_tile, input_per_output, resolve_tile, tile_candidates
from skoots_client.tiling import crop_grid
from skoots_export.contract.activation import (
    DEVICE_MEMORY,
    FIXED_BYTES,
    MAX_TILE_VOXELS,
    Network,
    bytes_per_voxel,
    inference_bytes,
    max_tile_voxels,
    network_from_cfg,
    tile_limits_from_config,
)
from skoots_export.contract.wire import config_from_text

SEED = dict(crop=(300, 300, 20), overlap=(10, 10, 5))


def test_candidates_are_whole_steps_up_to_the_axis() -> None:
    assert tile_candidates(1000, 300, 10) == [300, 580, 860, 1000]
    assert tile_candidates(40, 20, 5) == [20, 30, 40]
    assert tile_candidates(20, 20, 5) == [20]
    assert tile_candidates(7, 20, 5) == [20]  # an axis shorter than the crop: the crop (the grid clips it)


def test_the_seed_crop_costs_what_the_issue_measured() -> None:
    assert input_per_output((600, 600, 40), SEED["crop"], SEED["overlap"]) == pytest.approx(3.375)
    assert 2.2 < input_per_output((4000, 4000, 400), SEED["crop"], SEED["overlap"]) < 2.5  # a long volume: ~2.3


def test_auto_covers_z_first_and_respects_the_cap() -> None:
    shape = (600, 600, 40)
    cap = 320 * 320 * 40
    tile = choose_tile(shape, SEED["crop"], SEED["overlap"], cap)
    assert tile[2] == 40 and math.prod(tile) <= cap  # the whole z axis: most of the seed's waste is z
    assert input_per_output(shape, tile, SEED["overlap"]) < input_per_output(shape, SEED["crop"], SEED["overlap"])
    # of every whole-step tile under the cap, none is cheaper by more than the 1 % the choice allows
    best = min(input_per_output(shape, (x, y, z), SEED["overlap"])
               for x in tile_candidates(600, 300, 10) for y in tile_candidates(600, 300, 10) for z in tile_candidates(40, 20, 5)
               if x * y * z <= cap)
    assert input_per_output(shape, tile, SEED["overlap"]) <= best * 1.01


def test_auto_is_the_crop_when_nothing_larger_fits_and_the_volume_when_it_fits() -> None:
    assert choose_tile((600, 600, 40), SEED["crop"], SEED["overlap"], 1000) == (300, 300, 20)
    # on axes shorter than the crop the crop's size (the grid clips it), never a tile smaller than the crop
    assert choose_tile((50, 60, 7), SEED["crop"], SEED["overlap"], 10**9) == (300, 300, 20)
    assert choose_tile((500, 60, 40), SEED["crop"], SEED["overlap"], 10**9) == (500, 300, 40)
    assert choose_tile((50, 60, 7), SEED["crop"], SEED["overlap"], 1) == (300, 300, 20)


def test_auto_is_deterministic() -> None:
    picks = {choose_tile((1000, 700, 90), SEED["crop"], SEED["overlap"], 4_000_000, 8) for _ in range(3)}
    assert len(picks) == 1


def test_resolve_tile() -> None:
    crop, overlap = SEED["crop"], SEED["overlap"]
    cap = TileCap(320 * 320 * 40, "half of the memory available", bytes_per_voxel=1000.0, fixed=FIXED_BYTES, budget=2 << 30)
    assert resolve_tile("crop", (600, 600, 40), crop, overlap, 8, cap) == crop
    assert resolve_tile("auto", (600, 600, 40), crop, overlap, 8, None) == crop  # nothing says what fits: the crop
    assert resolve_tile("auto", (600, 600, 40), crop, overlap, 8, cap, reference_borders=True) == crop
    assert resolve_tile((5000, 5000, 40), (300, 280, 40), crop, overlap, 8, cap) == (5000, 5000, 40)  # clipped: it fits
    assert resolve_tile((300, 300, 20), (9000, 9000, 40), crop, overlap, 8, TileCap(1, "x")) == crop  # the crop always runs


def test_a_tile_over_the_budget_is_one_line_naming_estimate_budget_and_fix() -> None:
    cap = TileCap(1_000_000, "half of the memory available, less what post-processing the volume needs",
                  bytes_per_voxel=1000.0, fixed=FIXED_BYTES, budget=1 << 30)
    with pytest.raises(InputError) as raised:
        resolve_tile((600, 600, 40), (600, 600, 40), SEED["crop"], SEED["overlap"], 8, cap)
    message = str(raised.value)
    assert "\n" not in message
    assert "tile z 40, y 600, x 600 needs ~13.5 GiB" in message and "1.0 GiB budget" in message
    assert "pass a smaller --tile" in message
    served = TileCap(1_000_000, "that model skoots allows (max_tile_voxels in its config, set by skoots export --max-tile-voxels)")
    with pytest.raises(InputError, match=r"is 14,400,000 voxels per crop, over the 1,000,000 that model skoots allows"):
        resolve_tile((600, 600, 40), (600, 600, 40), SEED["crop"], SEED["overlap"], 8, served)


@pytest.mark.parametrize("reference_borders", [False, True])
@pytest.mark.parametrize("tile", [(70, 90, 30), (70, 500, 9), (1000, 1000, 1000)])
def test_a_tile_larger_than_the_volume_on_any_axis_covers_it_once(tile, reference_borders) -> None:
    shape, overlap = (70, 90, 30), (4, 4, 2)
    grid = crop_grid(shape, tile, overlap, reference_borders)
    owned = np.zeros(shape, np.int32)
    for crop in grid:
        assert all(s + c <= n for s, c, n in zip(crop.start, crop.size, shape))
        owned[crop.source] += 1
    if reference_borders:
        assert owned.max() == 1
    else:
        assert (owned == 1).all()  # every voxel written by exactly one crop
    clipped = [a for a in range(3) if tile[a] >= shape[a]]
    assert all(crop.size[a] == shape[a] and crop.start[a] == 0 for crop in grid for a in clipped)


def test_the_activation_estimate_grows_with_the_tile_and_the_width() -> None:
    default, tiny = Network((32, 64, 128, 64, 32), 7), Network((4, 8, 16, 8, 4), 3)
    assert bytes_per_voxel(default) > 4 * bytes_per_voxel(tiny)
    assert inference_bytes(default, (64, 64, 16)) < inference_bytes(default, (128, 128, 32))
    voxels = max_tile_voxels(default, 4 << 30)
    assert inference_bytes(default, (voxels, 1, 1)) <= 4 << 30 < inference_bytes(default, (voxels + 1000, 1, 1))
    assert max_tile_voxels(default, 4 << 30, batch=4) == pytest.approx(voxels / 4, rel=0.01)
    assert network_from_cfg({"MODEL": {"DIMS": [4, 8, 16, 8, 4], "KERNEL_SIZE": 3}}) == tiny
    assert network_from_cfg({"MODEL": {}}) is None and network_from_cfg(None) is None


def test_export_writes_the_limit_and_the_client_reads_it(exported_repository) -> None:
    info, _ = embedded_model(exported_repository)
    assert info.network == Network((4, 8, 16, 8, 4), 3)
    assert info.max_tile_voxels == max_tile_voxels(info.network, DEVICE_MEMORY, batch=4)  # the tests' export: max_batch 4
    config = config_from_text((exported_repository / "skoots" / "config.pbtxt").read_text())
    config.parameters[MAX_TILE_VOXELS].string_value = "lots"
    with pytest.raises(ValueError, match="max_tile_voxels = 'lots' is not a positive voxel count"):
        tile_limits_from_config(config)
