"""How much memory the network needs to answer one tile: the activation estimate that export
writes into a model's config (``max_tile_voxels``) and the in-process client checks against the
memory it has.

The network (export/network.py) is a U of ConvNeXt stages; its peak lies at full resolution,
where a ConvNeXt block holds its input, its depthwise output and two inverted-bottleneck
tensors of four times the width, while the first stage's output waits as a skip connection;
or in the last up-step, where the upsampled features, their float32 layer norm, the skip and
their concatenation meet. Lower levels hold 1/8 of the voxels per level and add little.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_TILE_VOXELS", "DEVICE_MEMORY", "FIXED_BYTES", "Network", "network_from_cfg", "bytes_per_voxel", "inference_bytes",
           "max_tile_voxels", "tile_limits_from_config"]

MAX_TILE_VOXELS = "max_tile_voxels"  # config parameter: the most network input voxels of one crop, at max_batch_size
DEVICE_MEMORY = 16 << 30  # what export assumes a serving device has for activations (a 16 GiB GPU), unless told
FIXED_BYTES = 128 << 20  # loading the model, its weights and the request's buffers: measured 40-90 MiB in-process, +~60 at a first large tile


@dataclass(frozen=True)
class Network:
    """What decides the network's activation memory: ``cfg.MODEL``'s DIMS and KERNEL_SIZE."""

    dims: tuple[int, ...]
    kernel: int = 7


def network_from_cfg(cfg: Mapping[str, Any] | None) -> Network | None:
    """The `Network` of a checkpoint's cfg (the mapping that holds ``MODEL``), or None when the
    cfg does not say (then no estimate is made)."""
    model = (cfg or {}).get("MODEL") if isinstance(cfg, Mapping) else None
    if not isinstance(model, Mapping):
        return None
    try:
        dims = tuple(int(d) for d in model["DIMS"])
        kernel = int(model.get("KERNEL_SIZE", 7))
    except (KeyError, TypeError, ValueError):
        return None
    return Network(dims, kernel) if dims and all(d > 0 for d in dims) else None


def bytes_per_voxel(network: Network) -> float:
    """Peak activation bytes per input voxel (float32): eight widths of the wider full-resolution
    stage (``dims[0]`` or ``dims[-1]``: a ConvNeXt block's input and its inverted bottleneck, or
    the last up-step's upsampled features, norm and skip), four widths of each level below at
    1/8 of the voxels per level, and the input and five output channels.

    Fitted to the measured growth per voxel (benchmarks/tile_memory.py, 2 CPU cores): 142 B
    (tiny 4-8-16-8-4 k3), 240 B (8-16-32-16-8 k3), 960 B TorchScript / 805 B OpenVINO (the
    default 32-64-128-64-32 k7); this gives 172, 324 and 1208 B: 20-50 % above, never below."""
    first, last = network.dims[0], network.dims[-1]
    below = sum(4 * d / 8 ** (1 + i) for i, d in enumerate(network.dims[1:len(network.dims) // 2 + 1]))
    return 4.0 * (8 * max(first, last) + below + 6)


def inference_bytes(network: Network, tile: Sequence[int], batch: int = 1) -> int:
    """Estimated peak memory of one request of ``batch`` tiles of ``tile`` voxels (in-process):
    the activations plus a fixed part (loading the model, weights, buffers).

    Against the measured growth of the resident set for one in-process inference
    (benchmarks/tile_memory.py: load + one crop, TorchScript and OpenVINO on 2 CPU cores), it is
    23-46 % high on tiles of 2-4 Mvoxels (tiny and 8-16-32 cfgs), 55-95 % high on tiles under
    0.5 Mvoxels (where the fixed part dominates), and 24-31 % high for the default cfg
    32-64-128-64-32 k7 on a 64x64x16 tile: never low, so a tile it admits fits."""
    return int(FIXED_BYTES + batch * math.prod(tile) * bytes_per_voxel(network))


def max_tile_voxels(network: Network, memory: int, batch: int = 1) -> int:
    """The most voxels of one tile whose request of ``batch`` tiles fits ``memory`` bytes."""
    return max(0, int((memory - FIXED_BYTES) / (batch * bytes_per_voxel(network))))


def tile_limits_from_config(config: Any) -> tuple[Network | None, int | None]:
    """What a model's Triton config says of its tiles: the `Network` of the cfg export keeps
    in it (``skoots_cfg``) and its ``max_tile_voxels``, each None when it has none; raises
    ``ValueError`` for a ``max_tile_voxels`` that is not a positive count."""
    import yaml

    parameters = config.parameters
    network = None
    if "skoots_cfg" in parameters:
        try:
            network = network_from_cfg(yaml.safe_load(parameters["skoots_cfg"].string_value))
        except yaml.YAMLError:
            network = None
    if MAX_TILE_VOXELS not in parameters:
        return network, None
    text = parameters[MAX_TILE_VOXELS].string_value
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"parameter {MAX_TILE_VOXELS} = {text!r} is not a positive voxel count")
    return network, int(text)
