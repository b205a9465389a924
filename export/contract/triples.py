"""``X,Y,Z`` options (crop, overlap, voxel sizes, ...), parsed the same by ``skoots`` and
``skoots-client``: positional in the seed's order, or named as Fiji and napari show the axes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from .errors import OptionError

__all__ = ["T", "TRIPLE_HELP", "parse_triple", "option_triple"]

T = TypeVar("T")

# Every option that takes a triple says this in its help (docs/AXES.md tells the whole story).
TRIPLE_HELP = (
    "X,Y,Z in the seed's order: X = image rows (napari y), Y = columns (napari x), Z = slices; "
    "or named as Fiji/napari show the axes, in any order: x=COLUMNS,y=ROWS,z=SLICES."
)


@overload
def parse_triple(text: str) -> tuple[int, int, int]: ...
@overload
def parse_triple(text: str, kind: Callable[[str], T]) -> tuple[T, T, T]: ...
def parse_triple(text: str, kind: Callable[[str], Any] = int) -> tuple[Any, Any, Any]:
    """A triple in the runtime's ``(X, Y, Z)`` order (docs/AXES.md), from either form.

    Positional, in that order: ``"300,300,20"`` → ``(300, 300, 20)``. Named, with the letters
    meaning what Fiji and napari show (``x`` = columns, ``y`` = rows, ``z`` = slices), in any
    order: ``"x=280,y=300,z=20"`` → ``(300, 280, 20)``, since the runtime's X is the rows.
    ``ValueError`` unless exactly three ``kind`` values (named: each of x, y, z once).

    >>> parse_triple("x=280,y=300,z=20")
    (300, 280, 20)
    """
    parts = [part.strip() for part in text.split(",")]
    if not any("=" in part for part in parts):
        values = tuple(kind(v) for v in parts)
        if len(values) != 3:
            raise ValueError(f"{text!r} has {len(values)} values, not 3")
        return values[0], values[1], values[2]
    named: dict[str, Any] = {}
    for part in parts:
        letter, _, value = part.partition("=")
        letter = letter.strip().lower()
        if letter not in ("x", "y", "z") or letter in named:
            raise ValueError(f"{text!r}: name each of x, y, z once")
        named[letter] = kind(value)
    if len(named) != 3:
        raise ValueError(f"{text!r}: name each of x, y, z once")
    return (named["y"], named["x"], named["z"])


@overload
def option_triple(option: str, text: str) -> tuple[int, int, int]: ...
@overload
def option_triple(option: str, text: str, kind: Callable[[str], T]) -> tuple[T, T, T]: ...
@overload
def option_triple(option: str, text: str | None, kind: Callable[[str], T]) -> tuple[T, T, T] | None: ...
@overload
def option_triple(option: str, text: str | None) -> tuple[int, int, int] | None: ...
def option_triple(option: str, text: str | None, kind: Callable[[str], Any] = int) -> tuple[Any, Any, Any] | None:
    """Parse a triple option, positional ``X,Y,Z`` (the seed's order) or named ``x=..,y=..,z=..``
    (napari's letters), to the runtime's ``(X, Y, Z)``; `OptionError` names the option and
    shows both forms."""
    if text is None:
        return None
    try:
        return parse_triple(text, kind)
    except ValueError:
        example = "300,300,20" if kind is int else "60,60,12"
        named = "y=300,x=300,z=20" if kind is int else "y=60,x=60,z=12"
        raise OptionError(
            f"{option} {text!r} needs three {'integers' if kind is int else 'numbers'} X,Y,Z, e.g. {option} {example}, "
            f"or named as napari shows the axes, e.g. {option} {named}"
        ) from None
