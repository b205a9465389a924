"""Build the SKOOTS network that a checkpoint's ``cfg.MODEL`` describes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from .errors import ArchitectureError, StateDictMismatchError
from .network import (
    ACTIVATIONS,
    ARCHITECTURES,
    BLOCKS,
    CONCAT_BLOCKS,
    NORMALIZATIONS,
    UPSAMPLE_BLOCKS,
    SpatialEmbedding,
    UNeXT3D,
)

__all__ = ["build_network", "load_weights"]

_UNET_WHY = (
    "bism_unet cannot be built from a SKOOTS cfg (upstream skoots passes the ConvNeXt "
    "block3d to bism's UNet, which fails), so no SKOOTS checkpoint can hold one"
)


def _choice(model: Mapping[str, Any], key: str, allowed: tuple[str, ...] | list[str]) -> str:
    value = model.get(key)
    if not isinstance(value, str) or value.lower() not in allowed:
        raise ArchitectureError(
            f"cfg.MODEL.{key} = {value!r} is not supported; expected one of: {', '.join(allowed)}"
        )
    return value.lower()


def _positive_ints(model: Mapping[str, Any], key: str) -> list[int]:
    value = model.get(key)
    try:
        ints = [int(v) for v in value] if value is not None else []
    except (TypeError, ValueError):
        ints = []
    if not ints or any(v <= 0 for v in ints):
        raise ArchitectureError(f"cfg.MODEL.{key} = {value!r} must be a list of positive integers")
    return ints


def build_network(model: Mapping[str, Any]) -> SpatialEmbedding:
    """Return the untrained network for ``cfg.MODEL``, validating every field it uses.

    Raises
    ------
    ArchitectureError
        A field is missing or names something upstream cannot build either.
    """
    architecture = model.get("ARCHITECTURE")
    if isinstance(architecture, str) and architecture.lower() == "bism_unet":
        raise ArchitectureError(f"cfg.MODEL.ARCHITECTURE = 'bism_unet' is not supported: {_UNET_WHY}")
    _choice(model, "ARCHITECTURE", ARCHITECTURES)
    activation = _choice(model, "ACTIVATION", list(ACTIVATIONS))
    _choice(model, "BLOCK", BLOCKS)
    _choice(model, "CONCAT_BLOCK", CONCAT_BLOCKS)
    _choice(model, "UPSAMPLE_BLOCK", UPSAMPLE_BLOCKS)
    _choice(model, "NORMALIZATION", NORMALIZATIONS)
    dims = _positive_ints(model, "DIMS")
    depths = _positive_ints(model, "DEPTHS")
    if len(dims) != len(depths) or len(dims) % 2 == 0:
        raise ArchitectureError(
            f"cfg.MODEL.DIMS {dims} and DEPTHS {depths} must have the same odd length"
        )
    kernel = model.get("KERNEL_SIZE")
    if not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
        raise ArchitectureError(f"cfg.MODEL.KERNEL_SIZE = {kernel!r} must be an odd positive integer")
    in_channels, out_channels = (model.get(k) for k in ("IN_CHANNELS", "OUT_CHANNELS"))
    if in_channels != 1 or not isinstance(out_channels, int) or out_channels < 1:
        raise ArchitectureError(
            f"cfg.MODEL.IN_CHANNELS = {in_channels!r} / OUT_CHANNELS = {out_channels!r}: "
            "SKOOTS takes one input channel and a positive number of backbone channels"
        )
    scale = model.get("LAYER_SCALE_INIT_VALUE", 1.0)
    if not isinstance(scale, (int, float)):
        raise ArchitectureError(f"cfg.MODEL.LAYER_SCALE_INIT_VALUE = {scale!r} must be a number")
    backbone = UNeXT3D(
        in_channels=1,
        out_channels=out_channels,
        dims=dims,
        depths=depths,
        kernel_size=kernel,
        activation=activation,
        layer_scale=scale > 0,
    )
    return SpatialEmbedding(backbone)


def load_weights(network: nn.Module, state_dict: Mapping[str, Any], limit: int = 5) -> None:
    """Load ``state_dict`` strictly, naming up to ``limit`` missing, unexpected and mis-shaped keys."""
    expected = network.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(getattr(state_dict[k], "shape", ())) != tuple(v.shape)
    ]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
        if keys:
            more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
            problems.append(f"{label} {len(keys)}: {', '.join(keys[:limit])}{more}")
    if problems:
        raise StateDictMismatchError(
            "model_state_dict does not match cfg.MODEL: " + "; ".join(problems)
            + " — export the checkpoint with the cfg it was trained with"
        )
    network.load_state_dict(dict(state_dict), strict=True)
