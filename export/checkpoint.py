"""Read a SKOOTS training checkpoint without running code from it.

A checkpoint is a ``torch.save``d dict: ``cfg`` (a yacs ``CfgNode``), ``model_state_dict`` and,
from upstream training, ``optimizer_state_dict`` and lists of epoch losses; optionally
``dataset_mean`` / ``dataset_std`` and a ``model_card`` (see model_card.py). torch's own
``weights_only`` loader cannot rebuild a ``CfgNode`` (it refuses SETITEMS on dict
subclasses), so we unpickle with an allow-list of globals: data containers and tensor
rebuilders only, nothing that can call arbitrary code.
"""

from __future__ import annotations

import pickle
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError

__all__ = ["UnsafeGlobalError", "restricted_pickle", "Checkpoint", "strip_wrapper_prefixes", "load_checkpoint"]

_ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("yacs.config", "CfgNode"),
        ("collections", "OrderedDict"),
        ("collections", "defaultdict"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "slice"),
        ("builtins", "complex"),
        ("__builtin__", "set"),
        ("__builtin__", "frozenset"),
        ("torch", "Size"),
        ("torch", "device"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch._utils", "_rebuild_parameter_with_state"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles carry bytes (numpy scalars)
    }
)


class UnsafeGlobalError(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualified_name = f"{module}.{name}"


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        allowed = (module, name) in _ALLOWED_GLOBALS or (
            module == "torch" and name.endswith("Storage")
        )
        if not allowed:
            raise UnsafeGlobalError(module, name)
        if module == "__builtin__":
            module = "builtins"
        return super().find_class(module, name)


def _restricted_load(file: Any, **kwargs: Any) -> Any:
    return _RestrictedUnpickler(file, **kwargs).load()


# torch.load takes a pickle *module*; this one only knows the allow-listed globals.
restricted_pickle = types.SimpleNamespace(
    Unpickler=_RestrictedUnpickler, load=_restricted_load, __name__="skoots_restricted_pickle"
)


@dataclass(frozen=True)
class Checkpoint:
    """What export needs from a SKOOTS checkpoint."""

    path: Path
    cfg: Any
    state_dict: Mapping[str, torch.Tensor]
    dataset_mean: float | None = None
    dataset_std: float | None = None
    card: Any = None  # the raw ``model_card`` entry; model_card.card_values checks it


def _brief(value: Any) -> str:
    """A one-line description of ``value`` for an error message (a tensor's repr spans lines)."""
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {list(value.shape)}" if value.numel() != 1 else repr(value.item())
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def _scalar(value: Any, key: str) -> float | None:
    if value is None:
        return None
    try:
        tensor = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {key} = {_brief(value)} is not a number") from e
    if tensor.numel() != 1 or not torch.isfinite(tensor).all():
        raise CheckpointError(f"checkpoint {key} = {_brief(value)} must be one finite number")
    return float(tensor.reshape(()))


# What DistributedDataParallel (``module.``) and torch.compile (``_orig_mod.``) put in front of
# every key when a training script saves the wrapper's state dict instead of the model's.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def strip_wrapper_prefixes(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The state dict with wrapper prefixes shared by *every* key removed, outermost first."""
    state = dict(state_dict)
    stripped = True
    while state and stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                stripped = True
    return state


def load_checkpoint(path: str | Path, *, trust: bool = False) -> Checkpoint:
    """Load ``path``; with ``trust`` the full pickle machinery is used (it can run code).

    Raises
    ------
    CheckpointError
        Missing or unreadable file, not a torch checkpoint, a global outside the allow-list
        (unless ``trust``), or no ``cfg`` / ``model_state_dict``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} — give the path of a .trch file or a SKOOTS zoo package (.zip)")
    try:
        if trust:
            data = torch.load(path, map_location="cpu", weights_only=False)
        else:
            data = torch.load(path, map_location="cpu", weights_only=False, pickle_module=restricted_pickle)
    except UnsafeGlobalError as e:
        raise CheckpointError(
            f"{path} needs {e.qualified_name} to load, which can run arbitrary code; "
            "pass --trust-checkpoint only if you trust where the file came from"
        ) from e
    except PermissionError as e:
        raise CheckpointError(f"cannot read {path}: permission denied") from e
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, OSError, ImportError, AttributeError) as e:
        # TypeError: an allow-listed global (torch.Size, OrderedDict, ...) called with malformed arguments
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({detail})") from e
    if not isinstance(data, Mapping) or "cfg" not in data:
        raise CheckpointError(
            f"{path} has no 'cfg': a legacy or non-SKOOTS file; export needs a checkpoint saved "
            "by SKOOTS training (a dict with 'cfg' and 'model_state_dict')"
        )
    cfg = data["cfg"]
    if not isinstance(cfg, Mapping) or not isinstance(cfg.get("MODEL"), Mapping):
        raise CheckpointError(f"{path}: 'cfg' has no MODEL section; it is not a SKOOTS config")
    state_dict = data.get("model_state_dict")
    if not isinstance(state_dict, Mapping) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f"{path} has no 'model_state_dict' of tensors")
    return Checkpoint(
        path=path,
        cfg=cfg,
        state_dict=strip_wrapper_prefixes(state_dict),
        dataset_mean=_scalar(data.get("dataset_mean"), "dataset_mean"),
        dataset_std=_scalar(data.get("dataset_std"), "dataset_std"),
        card=data.get("model_card"),
    )
