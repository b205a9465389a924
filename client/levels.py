"""Resolution levels of an OME-Zarr image: which level a path is, and the path of level N."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = ["multiscales_of", "dataset_paths", "image_of_level", "level_names", "level_path"]


def multiscales_of(attrs: dict[str, Any]) -> Any:
    """The OME-NGFF ``multiscales`` of a group's attributes: top level in 0.4, under ``ome`` in
    0.5; None when there are none. The one place that knows where NGFF keeps them."""
    return attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")


def dataset_paths(multiscales: Any) -> list[str]:
    """The paths of the first multiscale's datasets (its levels, full resolution first).

    Raises
    ------
    KeyError, IndexError, TypeError
        ``multiscales`` is missing or malformed.
    """
    return [str(d["path"]).strip("/") for d in multiscales[0]["datasets"]]


def image_of_level(path: Path) -> tuple[Path, Any, int | None] | None:
    """For ``IMAGE.ome.zarr/LEVEL`` (a level's array, or a path where one is missing): the
    image, its multiscales and the level's index among its datasets (None when no dataset has
    that path). None when no folder above ``path`` is an OME-Zarr image."""
    import zarr

    for image in list(path.parents)[:2]:
        if not (image / ".zattrs").exists() and not (image / "zarr.json").exists():
            continue
        try:
            multiscales = multiscales_of(zarr.open_group(str(image), mode="r").attrs.asdict())
            paths = dataset_paths(multiscales)
        except Exception:  # noqa: BLE001 - not an image: the path is read as it is
            continue
        inside = path.relative_to(image).as_posix()
        return image, multiscales, paths.index(inside) if inside in paths else None
    return None


def level_names(multiscales: Any) -> str:
    """``0 (s0), 1 (s1), 2 (s2)``: a multiscale image's levels and their paths, for errors."""
    return ", ".join(f"{i} ({d['path']})" for i, d in enumerate(multiscales[0]["datasets"]))


def level_path(path: Path, level: int) -> Path:
    """``--level N``: the path of level ``N`` (its ``N``-th dataset) of the OME-Zarr image at ``path``."""
    import zarr

    try:
        multiscales = multiscales_of(zarr.open_group(str(path), mode="r").attrs.asdict())
        datasets = multiscales[0]["datasets"]
    except Exception:  # noqa: BLE001 - whatever it is, it has no levels
        raise InputError(f"--level {level}: {path} is not an OME-Zarr image with resolution levels; drop --level") from None
    if not 0 <= level < len(datasets):
        raise InputError(f"--level {level}: {path} has levels {level_names(multiscales)}; choose one of them")
    return path / str(datasets[level]["path"]).strip("/")
