"""Read a BioImage Model Zoo package that ``skoots export --bioimageio`` wrote back as a checkpoint.

The package carries everything export needs: the network's cfg and the SKOOTS constants in
``config.skoots``, and the weights in its TorchScript file (the ``network.`` module of the
packaged `ZooNetwork`; only its state dict is read, no code is run). A zoo package of any other
model is refused in one line that says what it is and what it lacks.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from .checkpoint import Checkpoint, load_checkpoint
from .errors import CheckpointError
from .model_card import CARD_KEYS

__all__ = ["DESCRIPTION_FILES", "is_zoo_package", "load_zoo_package", "load_source"]

DESCRIPTION_FILES = ("rdf.yaml", "bioimageio.yaml")
_PREFIX = "network."  # the packaged module's attribute holding the SKOOTS network


def _description_name(names: list[str]) -> str | None:
    return next((n for n in DESCRIPTION_FILES if n in names), None)


def is_zoo_package(path: str | Path) -> bool:
    """Whether ``path`` is a zip with a zoo description at its root (a torch checkpoint is a zip too)."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return _description_name(archive.namelist()) is not None


def _card(skoots: Mapping[str, Any]) -> dict[str, Any]:
    """The model card the package's constants amount to (model_card.card_values checks it)."""
    card = {k: v for k, v in skoots.items() if k in CARD_KEYS and v is not None and k != "normalization"}
    card["normalization"] = "mean_std" if skoots.get("dataset_mean") is not None else "dtype_range"
    return card


def load_zoo_package(path: str | Path) -> Checkpoint:
    """The `Checkpoint` a SKOOTS zoo package holds.

    Raises
    ------
    CheckpointError
        Not a readable zoo package, a package of another kind or of a model that is not SKOOTS
        (no ``config.skoots``), or no TorchScript weights to read the state dict from.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            description_file = _description_name(names)
            if description_file is None:
                raise CheckpointError(f"{path} is a zip without rdf.yaml: not a BioImage Model Zoo package")
            description = yaml.safe_load(archive.read(description_file))
            if not isinstance(description, Mapping):
                raise CheckpointError(f"{path}: {description_file} is not a zoo description")
            kind, name = description.get("type", "?"), description.get("name", "?")
            what = f"{path} is a BioImage Model Zoo {kind} ({name!r}, format {description.get('format_version', '?')})"
            if kind != "model":
                raise CheckpointError(f"{what}, not a model: skoots export takes a SKOOTS model package")
            config = description.get("config") or {}
            skoots = config.get("skoots") if isinstance(config, Mapping) else None
            if not isinstance(skoots, Mapping) or not isinstance(skoots.get("cfg"), str):
                raise CheckpointError(f"{what} but not a SKOOTS model: it lacks config.skoots (the network's cfg and the SKOOTS "
                                      "constants that skoots export --bioimageio writes)")
            weights = (description.get("weights") or {}).get("torchscript") or {}
            source = weights.get("source") if isinstance(weights, Mapping) else None
            if not isinstance(source, str) or source not in names:
                raise CheckpointError(f"{what}: a SKOOTS model without TorchScript weights in the package, which skoots export reads the weights from")
            with tempfile.TemporaryDirectory() as folder:
                archive.extract(source, folder)
                module = torch.jit.load(str(Path(folder) / source), map_location="cpu")
                state = {k[len(_PREFIX):]: v.detach().clone() for k, v in module.state_dict().items() if k.startswith(_PREFIX)}
    except (zipfile.BadZipFile, OSError, yaml.YAMLError, RuntimeError) as e:
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path} is not a readable zoo package ({detail})") from e
    cfg = yaml.safe_load(skoots["cfg"])
    if not isinstance(cfg, Mapping) or not isinstance(cfg.get("MODEL"), Mapping):
        raise CheckpointError(f"{path}: config.skoots.cfg has no MODEL section; it is not a SKOOTS config")
    return Checkpoint(path=path, cfg=cfg, state_dict=state, card=_card(skoots))


def load_source(path: str | Path, *, trust: bool = False) -> Checkpoint:
    """What export starts from: a SKOOTS zoo package (`load_zoo_package`) or a training
    checkpoint (`load_checkpoint`, ``trust`` as there)."""
    return load_zoo_package(path) if is_zoo_package(path) else load_checkpoint(path, trust=trust)
