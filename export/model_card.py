"""Model cards: the inference constants a checkpoint says it should run with.

A card is a plain mapping (only ``str``, numbers and lists, so the checkpoint's allow-listed
unpickler and ``weights_only`` loading read it) with any of `CARD_KEYS`. It lives in the
checkpoint dict under ``model_card`` and/or in a YAML sidecar beside the checkpoint:
``<checkpoint name without .trch>.yaml`` (for one checkpoint), else ``MODEL.yaml`` in its
folder (for every checkpoint there). Export resolves each constant from layers, highest first:

    export option > sidecar > checkpoint card > checkpoint's dataset_mean/std > cfg.SKOOTS > seed default

so a card made at training time is the model's default, a sidecar corrects a card without
rewriting the checkpoint, and an option overrides both for one export.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .contract.units import LENGTH_UNITS, unit_name
from .contract.wire import ModelParameters
from .errors import ExportOptionError, ModelCardError

__all__ = [
    "CARD_KEY", "FOLDER_SIDECAR", "SEED", "NORMALIZATIONS", "CARD_KEYS", "Layer", "card_values", "with_unit", "find_sidecar",
    "read_sidecar", "resolve",
]

CARD_KEY = "model_card"
FOLDER_SIDECAR = "MODEL.yaml"
SEED = "seed default"
NORMALIZATIONS = ("dtype_range", "mean_std")

_TRIPLES: dict[str, type] = {
    "crop": int, "overlap": int, "vector_scaling": float, "anisotropy": float, "training_voxel_size": float,
}
_SCALARS: dict[str, type] = {
    "prob_threshold": float, "skeleton_threshold": float, "dilations_3d": int, "dilations_2d": int,
    "embedding_iterations": int, "dataset_mean": float, "dataset_std": float,
}
CARD_KEYS: tuple[str, ...] = (*_TRIPLES, *_SCALARS, "voxel_unit", "normalization")

Layer = tuple[str, Mapping[str, Any]]  # (where the values come from, field -> value)


def _brief(value: Any) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: Any, kind: type) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        return False
    return math.isfinite(value)


def _value(key: str, value: Any, where: str) -> Any:
    """``value`` checked and converted for ``key``; `ModelCardError` naming both."""
    if key in _TRIPLES:
        kind = _TRIPLES[key]
        if isinstance(value, (list, tuple)) and len(value) == 3 and all(_number(v, kind) for v in value):
            return tuple(kind(v) for v in value)
        raise ModelCardError(f"{where}: {key} = {_brief(value)} must be three {'integers' if kind is int else 'numbers'} [X, Y, Z]")
    if key in _SCALARS:
        kind = _SCALARS[key]
        if _number(value, kind):
            return kind(value)
        raise ModelCardError(f"{where}: {key} = {_brief(value)} must be {'an integer' if kind is int else 'a number'}")
    if key == "voxel_unit":
        allowed, named = tuple(sorted(LENGTH_UNITS)), unit_name(value) if isinstance(value, str) else None
    else:
        allowed, named = NORMALIZATIONS, value
    if named in allowed:
        return named
    raise ModelCardError(f"{where}: {key} = {_brief(value)} must be one of {', '.join(allowed)}")


def card_values(card: Any, where: str) -> dict[str, Any]:
    """The fields of `ModelParameters` that ``card`` sets, checked.

    ``normalization: dtype_range`` clears a dataset mean/std set by a lower layer;
    ``dataset_mean`` and ``dataset_std`` come together, and a ``training_voxel_size`` without
    ``voxel_unit`` is in micrometres.

    Raises
    ------
    ModelCardError
        ``card`` is not a mapping, has a key outside `CARD_KEYS` or a value of the wrong
        type; the message names the key and what is allowed.
    """
    if not isinstance(card, Mapping):
        raise ModelCardError(f"{where} must be a mapping of key: value, not {type(card).__name__}; allowed keys: {', '.join(CARD_KEYS)}")
    values: dict[str, Any] = {}
    for key, value in card.items():
        if key not in CARD_KEYS:
            raise ModelCardError(f"{where}: unknown key {_brief(key)}; allowed keys: {', '.join(CARD_KEYS)}")
        values[key] = _value(key, value, where)
    statistics = {"dataset_mean", "dataset_std"} & set(values)
    if values.pop("normalization", None) == "dtype_range":
        if statistics:
            raise ModelCardError(f"{where}: normalization dtype_range takes no dataset_mean / dataset_std; drop them or say mean_std")
        values.update(dataset_mean=None, dataset_std=None)
    elif statistics != {"dataset_mean", "dataset_std"} and (statistics or card.get("normalization") == "mean_std"):
        raise ModelCardError(f"{where}: dataset_mean and dataset_std come together (normalisation (x - mean) / std)")
    return with_unit(values, where)


def with_unit(values: dict[str, Any], where: str) -> dict[str, Any]:
    """``values`` with a voxel size's unit (micrometre unless given); a unit alone is refused."""
    if "voxel_unit" in values and values.get("training_voxel_size") is None:
        raise ModelCardError(f"{where}: voxel_unit needs training_voxel_size (the voxel size the model was trained at)")
    if values.get("training_voxel_size") is not None:
        values.setdefault("voxel_unit", "micrometer")
    return values


def find_sidecar(checkpoint: Path) -> Path | None:
    """``<checkpoint without suffix>.yaml`` beside it, else ``MODEL.yaml`` in its folder."""
    for candidate in (checkpoint.with_suffix(".yaml"), checkpoint.with_name(FOLDER_SIDECAR)):
        if candidate.is_file():
            return candidate
    return None


def read_sidecar(path: Path) -> dict[str, Any]:
    """The checked values of the YAML card at ``path`` (an empty file sets nothing)."""
    try:
        card = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ModelCardError(f"cannot read model card {path}: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise ModelCardError(f"model card {path} is not valid YAML ({' '.join(str(e).split())})") from e
    return card_values({} if card is None else card, f"model card {path}")


def resolve(layers: Sequence[Layer]) -> tuple[ModelParameters, dict[str, str]]:
    """Merge ``layers`` (lowest first) over the seed defaults; also say where each field came from.

    The sources map has every field of `ModelParameters` and ``normalization`` (from
    whichever layer set the dataset mean/std, or cleared them).
    """
    seed = ModelParameters()
    values = {f.name: getattr(seed, f.name) for f in dataclasses.fields(ModelParameters)}
    sources = dict.fromkeys(values, SEED)
    for name, layer in layers:
        for key, value in layer.items():
            values[key] = value
            sources[key] = name
    try:
        parameters = ModelParameters(**values)
    except ValueError as e:
        raise ExportOptionError(str(e)) from e
    sources["normalization"] = sources["dataset_mean"]
    return parameters, sources
