"""The contract both sides share: one length-unit table, one error root, one triple parser."""

from __future__ import annotations

import pytest

from skoots_client.errors import ClientError, InputError
from skoots_client.voxel_size import VoxelSize, voxel_size_option
from skoots_export.contract.errors import OptionError, SkootsError
from skoots_export.contract.triples import option_triple
from skoots_export.contract.units import LENGTH_UNITS, length_unit, unit_name
from skoots_export.contract.wire import ModelParameters
from skoots_export.errors import ExportError, ExportOptionError, ServerError
from skoots_export.model_card import card_values

SPELLINGS = ["um", "UM", "µm", "Micron", "micrometre", "nm", "NM", "mm", "cm", "CM", "m", "angstrom", "Å", "Meter"]


@pytest.mark.parametrize("text", SPELLINGS)
def test_export_and_client_accept_the_same_unit_spellings(text: str) -> None:
    name = length_unit(text, "--voxel-unit")  # skoots export --voxel-unit
    assert name in LENGTH_UNITS
    assert card_values({"training_voxel_size": [1, 1, 3], "voxel_unit": text}, "card")["voxel_unit"] == name
    assert ModelParameters(training_voxel_size=(1.0, 1.0, 3.0), voxel_unit=name).voxel_unit == name
    assert voxel_size_option("1,1,3", text) == VoxelSize((1.0, 1.0, 3.0), name)  # skoots-client --unit


def test_an_unknown_unit_is_refused_alike_on_both_sides() -> None:
    assert unit_name("parsec") is None
    with pytest.raises(OptionError, match=r"^--voxel-unit 'parsec' is not a length unit; use one of um, nm, mm, cm, m, angstrom$"):
        length_unit("parsec", "--voxel-unit")
    with pytest.raises(InputError, match=r"^--unit 'parsec' is not a length unit; use one of um, nm, mm, cm, m, angstrom$"):
        voxel_size_option("1,1,3", "parsec")
    with pytest.raises(ValueError, match=r"voxel_unit 'parsec' is not one of angstrom, centimeter, meter, micrometer"):
        ModelParameters(training_voxel_size=(1.0, 1.0, 3.0), voxel_unit="parsec")


def test_client_export_and_serve_errors_share_one_root() -> None:
    for error in (ClientError, InputError, ExportError, ExportOptionError, ServerError, OptionError):
        assert issubclass(error, SkootsError)
    assert not issubclass(ClientError, ExportError) and not issubclass(ExportError, ClientError)


def test_a_malformed_triple_is_an_option_error_naming_the_option() -> None:
    assert option_triple("--crop", "x=20,y=30,z=4") == (30, 20, 4)
    with pytest.raises(OptionError, match=r"^--crop '1,2' needs three integers X,Y,Z, e\.g\. --crop 300,300,20"):
        option_triple("--crop", "1,2")
