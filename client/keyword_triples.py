"""The API's triple keywords (``crop``, ``overlap``, ``block``, ``voxel_size``): ``(z, y, x)``
tuples in the arrays' order or named text (``"z=20,y=300,x=280"``), as napari names the axes.
The command line's positional text (its seed order) is refused here with the forms that say the
same; the command line converts it before it calls the API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import InputError

__all__ = ["Triple", "triple", "tile_value", "refuse_positional", "voxel_size_value"]

Triple = str | Sequence[float] | None


def triple(option: str, value: Triple) -> tuple | None:
    """A triple keyword in the runtime's ``(X, Y, Z)``, from a ``(z, y, x)`` sequence (the arrays'
    order) or named text (``"z=20,y=300,x=280"``); positional text is the command line's (the
    seed's order), refused here with the forms that say the same.

    >>> triple("--crop", (20, 300, 280)), triple("--crop", "z=20,y=300,x=280")
    ((300, 280, 20), (300, 280, 20))
    """
    from skoots_export.contract.triples import parse_triple

    name = option.lstrip("-").replace("-", "_")
    if value is None:
        return None
    if isinstance(value, str):
        refuse_positional(name, value)
        try:
            return parse_triple(value, float if name == "voxel_size" else int)
        except ValueError:
            raise InputError(f"{name}={value!r}: name each of z, y, x once with a number, e.g. {name}={_NAMED[name]!r}, "
                             f"or give a tuple (z, y, x), e.g. {name}={_TUPLE[name]}") from None
    values = tuple(value)
    if len(values) != 3:
        raise InputError(f"{name}={values!r} needs three values (z, y, x)")
    z, y, x = values
    return (y, x, z)


def tile_value(value: Any) -> tuple | str:
    """``tile=``: ``"auto"``, ``"crop"``, or a size as `triple` reads it (runtime ``X, Y, Z``).

    >>> tile_value("auto"), tile_value((40, 320, 320))
    ('auto', (320, 320, 40))
    """
    from .options import TILE_WORDS

    if isinstance(value, str) and value.strip().lower() in TILE_WORDS:
        return value.strip().lower()
    if value is None:
        raise InputError("tile=None: give 'crop', 'auto', a tuple (z, y, x), e.g. tile=(40, 320, 320), or named text")
    return triple("--tile", value)  # type: ignore[return-value]


_TUPLE = {"crop": (20, 300, 300), "tile": (40, 320, 320), "overlap": (4, 30, 30), "block": (40, 512, 512), "voxel_size": (2.0, 0.5, 0.5)}
_NAMED = {"crop": "z=20,y=300,x=300", "tile": "z=40,y=320,x=320", "overlap": "z=4,y=30,x=30", "block": "z=40,y=512,x=512", "voxel_size": "z=2,y=0.5,x=0.5um"}


def refuse_positional(name: str, text: str) -> None:
    """Refuse a triple keyword's positional text (``crop="300,280,20"``, the command line's seed
    order): one line showing the tuple and the named text that mean what the command line reads.

    >>> try:
    ...     refuse_positional("crop", "300,280,20")
    ... except InputError as e:
    ...     print(e)
    crop='300,280,20' is positional text, the command line's X,Y,Z (seed order: rows, columns, slices); give (z, y, x), e.g. crop=(20, 300, 280), or named text, e.g. crop='z=20,y=300,x=280'
    """
    if "=" in text:
        return
    numbers, unit = _unit_suffix(text)
    parts = [part.strip() for part in numbers.split(",")]
    if len(parts) == 3:
        rows, columns, slices = parts
        as_tuple = "(" + ", ".join((slices, rows, columns)) + ")"
        named = f"z={slices},y={rows},x={columns}{unit}"
    else:
        as_tuple, named = str(_TUPLE[name]), _NAMED[name]
    raise InputError(f"{name}={text!r} is positional text, the command line's X,Y,Z (seed order: rows, columns, slices); "
                     f"give (z, y, x), e.g. {name}={as_tuple}, or named text, e.g. {name}={named!r}")


def _unit_suffix(text: str) -> tuple[str, str]:
    """``"0.5,0.5,2um"`` → ``("0.5,0.5,2", "um")``."""
    numbers = text.rstrip()
    unit = ""
    while numbers and (numbers[-1].isalpha() or numbers[-1] in "µμå"):
        unit, numbers = numbers[-1] + unit, numbers[:-1]
    return numbers, unit


def voxel_size_value(value: Any, unit: str | None) -> Any:
    """``voxel_size=`` and ``unit=``: a ``(z, y, x)`` tuple, named text (``"z=2,y=0.5,x=0.5um"``)
    or a `VoxelSize` as given."""
    from .voxel_size import VoxelSize, voxel_size_option

    if value is None:
        return voxel_size_option(None, unit)
    if isinstance(value, VoxelSize):
        return value
    if isinstance(value, str):
        refuse_positional("voxel_size", value)
        try:
            named = triple("--voxel-size", _unit_suffix(value)[0])
        except InputError:
            raise InputError(f"voxel_size={value!r}: name each of z, y, x once with a number, e.g. "
                             f"voxel_size={_NAMED['voxel_size']!r}, or give a tuple (z, y, x), e.g. voxel_size={_TUPLE['voxel_size']}") from None
        if not all(v > 0 and np.isfinite(v) for v in named or ()):
            raise InputError(f"voxel_size={value!r}: sizes must be positive, e.g. voxel_size={_NAMED['voxel_size']!r}")
        return voxel_size_option(value, unit)
    try:
        sizes = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"voxel_size={value!r}: give three numbers (z, y, x), e.g. voxel_size=(2.0, 0.5, 0.5)") from None
    if len(sizes) != 3:
        raise InputError(f"voxel_size={sizes!r} needs three values (z, y, x)")
    if not all(v > 0 and np.isfinite(v) for v in sizes):
        raise InputError(f"voxel_size={sizes!r} (z, y, x): sizes must be positive, e.g. voxel_size=(2.0, 0.5, 0.5)")
    z, y, x = sizes
    return voxel_size_option(f"z={z!r},y={y!r},x={x!r}", unit)
