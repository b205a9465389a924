"""A voxel size and its unit: what the options say, what an OME-Zarr image states.

The types the readers, the writers and the stores share (voxel_size_read reads TIFF metadata into them;
client/stores reads N5 and precomputed metadata into them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from skoots_export.contract.errors import OptionError
from skoots_export.contract.triples import option_triple
from skoots_export.contract.units import LENGTH_UNITS, length_unit

from .errors import InputError

__all__ = ["VoxelSize", "UnitOption", "UNKNOWN_VOXEL_SIZE", "voxel_size_option", "ome_zarr_voxel_size"]


@dataclass(frozen=True)
class VoxelSize:
    """The physical size of a voxel along the runtime's X, Y, Z (the file's rows, columns and
    slices) and its unit, an OME-NGFF unit name. ``unit`` None with sizes 1 means unknown
    (sizes in voxels, ``px``); ``unit`` None with other sizes is a scale without a unit (an
    OME-Zarr whose axes have a scale but no ``unit``): scaled values, in no named unit."""

    xyz: tuple[float, float, float]
    unit: str | None = "micrometer"

    def __repr__(self) -> str:
        """In the users' axis order, z, y, x (``xyz`` is the runtime's: rows, columns, slices)."""
        z, y, x = self.zyx
        return f"VoxelSize(z={z!r}, y={y!r}, x={x!r}, unit={self.unit!r})"

    @property
    def zyx(self) -> tuple[float, float, float]:
        """Sizes in the file's axis order: slices, rows, columns (NGFF's z, y, x)."""
        x, y, z = self.xyz
        return (z, x, y)

    @property
    def unitless_scale(self) -> bool:
        return self.unit is None and tuple(self.xyz) != (1.0, 1.0, 1.0)

    @property
    def symbol(self) -> str:
        """Short unit for column names and ImageJ: ``um``; ``px`` when unknown; ``units`` for a
        scale without a unit (its values are scaled, not voxels)."""
        return LENGTH_UNITS[self.unit][0] if self.unit else "units" if self.unitless_scale else "px"

    def in_metres(self) -> tuple[float, ...]:
        return tuple(v * LENGTH_UNITS[self.unit][1] for v in self.xyz) if self.unit else self.xyz

    def describe(self) -> str:
        """As Fiji and napari name the axes: ``z 2, y 0.5, x 0.5 µm``; ``z 0.05, y 0.012,
        x 0.012 (a scale without a unit; name it with --unit)``."""
        x, y, z = self.xyz
        if self.unitless_scale:
            return f"z {z:g}, y {x:g}, x {y:g} (a scale without a unit; name it with --unit)"
        return f"z {z:g}, y {x:g}, x {y:g} {self.symbol}"


@dataclass(frozen=True)
class UnitOption:
    """``--unit`` without ``--voxel-size``: names the unit of the scale the file states."""

    unit: str


UNKNOWN_VOXEL_SIZE = VoxelSize((1.0, 1.0, 1.0), None)


def voxel_size_option(text: str | None, unit: str | None) -> VoxelSize | UnitOption | None:
    """``--voxel-size X,Y,Z`` (the same axis order as ``--crop``) with ``--unit`` or a unit
    suffix (``0.5,0.5,2um``); micrometres when neither says. ``--unit`` alone names the unit of
    the scale the file states (`UnitOption`, resolved by `resolve_voxel_size`)."""
    try:
        if text is None:
            return None if unit is None else UnitOption(length_unit(unit))
        numbers = text.rstrip()
        suffix = ""
        while numbers and (numbers[-1].isalpha() or numbers[-1] in "µμå"):
            suffix, numbers = numbers[-1] + suffix, numbers[:-1]
        named = length_unit(suffix, "--voxel-size") if suffix else None
        if named and unit is not None and length_unit(unit) != named:
            raise InputError(f"--voxel-size {text!r} says {suffix} and --unit says {unit}; give the unit once")
        sizes = option_triple("--voxel-size", numbers, float)
        default_unit = length_unit(unit) if unit else "micrometer"
    except OptionError as e:
        raise InputError(str(e)) from None
    if not all(v > 0 and np.isfinite(v) for v in sizes):
        raise InputError(f"--voxel-size {text!r}: sizes must be positive, e.g. --voxel-size 0.5,0.5,2um")
    return VoxelSize(sizes, named or default_unit)


def ome_zarr_voxel_size(multiscales: Any, level: int = 0) -> VoxelSize | None:
    """Scale of dataset ``level`` (times any multiscales-wide scale) on the z, y, x axes."""
    try:
        first = multiscales[0]
        axes = [a if isinstance(a, dict) else {"name": a} for a in first["axes"]]
        scale = np.ones(len(axes))
        for transforms in (first["datasets"][level].get("coordinateTransformations", []), first.get("coordinateTransformations", [])):
            for t in transforms:
                if t.get("type") == "scale":
                    scale = scale * np.asarray(t["scale"], dtype=float)
        names = [str(a["name"]).lower() for a in axes]
        at = {n: names.index(n) for n in "zyx"}
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    units = {axes[i].get("unit") for i in at.values()}
    unit = units.pop() if len(units) == 1 else None
    sizes = [float(scale[at[n]]) for n in "yxz"]  # runtime X = rows (y), Y = columns (x), Z
    if unit is None and len(units) > 0:  # axes in different units: convert to micrometres
        try:
            sizes = [s * LENGTH_UNITS[length_unit(str(axes[at[n]].get("unit")))][1] / 1e-6 for s, n in zip(sizes, "yxz")]
            unit = "micrometer"
        except OptionError:
            return None
    elif unit is not None:
        try:
            unit = length_unit(str(unit))
        except OptionError:
            unit = None
    if unit is None and sizes == [1.0, 1.0, 1.0]:
        return None
    return VoxelSize((sizes[0], sizes[1], sizes[2]), unit)
