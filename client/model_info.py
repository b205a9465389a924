"""What a model's Triton config tells the client before it sends anything: the model's
constants and tile limit (`check_config`), and which of several models to use (`choose_model`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from skoots_export.contract.activation import Network, tile_limits_from_config
from skoots_export.contract.wire import ModelParameters, contract_problems, parameters_from_config

from .errors import ModelError
from .variants import KIND_PREFERENCE, model_kind

__all__ = ["ModelInfo", "check_config", "choose_model"]


@dataclass(frozen=True)
class ModelInfo:
    """What the client learns about a model before sending anything."""

    name: str
    parameters: ModelParameters
    max_batch_size: int
    kind: str = "python"  # what runs it: libtorch, openvino or python (model_kind)
    network: Network | None = None  # its cfg's DIMS and KERNEL_SIZE: what its activations cost
    max_tile_voxels: int | None = None  # the largest tile its server takes (set by skoots export)


def check_config(config: Any, where: str) -> ModelInfo:
    """The model's constants from its Triton ``config``, or one line saying how it breaks the contract."""
    problems = contract_problems(config)
    if problems:
        raise ModelError(f"model at {where} does not speak the SKOOTS contract: {'; '.join(problems)} — re-export it with skoots export")
    try:
        return ModelInfo(config.name, parameters_from_config(config), max(1, int(config.max_batch_size)), model_kind(config),
                         *tile_limits_from_config(config))
    except ValueError as e:
        raise ModelError(f"model at {where}: {e} — re-export it with skoots export") from e


def choose_model(configs: Sequence[Any], where: str, preference: Sequence[str] = KIND_PREFERENCE) -> str:
    """The model to use when none was named: among ``configs``, those that speak the contract;
    one, or the variants of one export (equal parameters) by ``preference`` (kinds, best first:
    `KIND_PREFERENCE`, or `CPU_KIND_PREFERENCE` for a server without GPUs).

    Raises
    ------
    ModelError
        None speaks the contract, or several do and they are not one export's variants; the
        message lists the candidates.
    """
    candidates = []
    for config in configs:
        try:
            candidates.append((config.name, model_kind(config), check_config(config, where).parameters))
        except ModelError:
            continue
    if not candidates:
        names = ", ".join(sorted(c.name for c in configs))
        raise ModelError(
            f"no SKOOTS model {where}" + (f" (models there: {names})" if names else "")
            + " — export one with skoots export" + (", or pass --model" if names else "")
        )
    rank = min(preference.index(kind) for _, kind, _ in candidates)
    best = [c for c in candidates if preference.index(c[1]) == rank]
    if len({parameters for _, _, parameters in candidates}) == 1 and len(best) == 1:
        return best[0][0]
    listed = ", ".join(f"{name} ({kind})" for name, kind, _ in sorted(candidates))
    raise ModelError(f"several SKOOTS models {where}: {listed} — choose one with --model")
