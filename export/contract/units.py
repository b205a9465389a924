"""The one table of length units, for voxel sizes on every side (``skoots export --voxel-unit``,
``skoots-client --unit``, a model card's ``voxel_unit``, the units files state).

Names are OME-NGFF's (UDUNITS-2). A unit may be given by name, symbol or a common spelling,
in any case: ``um``, ``UM``, ``µm``, ``micron``, ``micrometre`` all mean ``micrometer``.
"""

from __future__ import annotations

from .errors import OptionError

__all__ = ["LENGTH_UNITS", "UNIT_CHOICES", "unit_name", "length_unit"]

# OME-NGFF name → short symbol (table headers, ImageJ metadata) and size in metres (to compare
# sizes given in different units).
LENGTH_UNITS: dict[str, tuple[str, float]] = {
    "angstrom": ("A", 1e-10),
    "nanometer": ("nm", 1e-9),
    "micrometer": ("um", 1e-6),
    "millimeter": ("mm", 1e-3),
    "centimeter": ("cm", 1e-2),
    "meter": ("m", 1.0),
}
_ALIASES = {
    **{name: name for name in LENGTH_UNITS},
    **{symbol.lower(): name for name, (symbol, _) in LENGTH_UNITS.items()},
    "µm": "micrometer", "μm": "micrometer", "\\u00b5m": "micrometer", "micron": "micrometer", "microns": "micrometer",
    "micrometre": "micrometer", "nanometre": "nanometer", "millimetre": "millimeter", "centimetre": "centimeter",
    "metre": "meter", "å": "angstrom",
}
UNIT_CHOICES = "um, nm, mm, cm, m, angstrom"


def unit_name(text: str) -> str | None:
    """The OME-NGFF name of a length unit given as a name, symbol or spelling, in any case; None
    when ``text`` is not a length unit.

    >>> unit_name("UM"), unit_name("µm"), unit_name("parsec")
    ('micrometer', 'micrometer', None)
    """
    return _ALIASES.get(text.strip().lower())


def length_unit(text: str, option: str = "--unit") -> str:
    """`unit_name`, or `OptionError` naming ``option`` and the units allowed."""
    name = unit_name(text)
    if name is None:
        raise OptionError(f"{option} {text!r} is not a length unit; use one of {UNIT_CHOICES}")
    return name
