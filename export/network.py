"""The SKOOTS network: bism's 3-D UNeXT backbone inside the spatial-embedding heads.

Module and parameter names mirror bism 0.0.6 (``bism.backends.unext.UNeXT_3D`` wrapped in
``bism.models.spatial_embedding.SpatialEmbedding``) so that an upstream ``model_state_dict``
loads with ``strict=True``. Everything here is TorchScript-compatible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ACTIVATIONS", "BLOCKS", "CONCAT_BLOCKS", "UPSAMPLE_BLOCKS", "NORMALIZATIONS", "ARCHITECTURES", "ChannelsFirstLayerNorm",
    "ConvNeXtBlock", "ConcatConv", "UpSample", "UNeXT3D", "SpatialEmbedding",
]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "selu": nn.SELU,
}
# The only block, concat, upsample and normalisation names upstream can build.
BLOCKS = ("block3d",)
CONCAT_BLOCKS = ("concatconv3d",)
UPSAMPLE_BLOCKS = ("upsamplelayer3d",)
NORMALIZATIONS = ("layernorm",)
ARCHITECTURES = ("bism_unext",)


class ChannelsFirstLayerNorm(nn.Module):
    """Layer norm over the channel axis of ``[B, C, X, Y, Z]``.

    Statistics are taken in float32 even for half-precision input, so the network stays
    accurate under CUDA autocast.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        centred = xf - xf.mean(1, keepdim=True)
        variance = centred.pow(2).mean(1, keepdim=True)
        out = self.weight.view(1, -1, 1, 1, 1) * (centred / torch.sqrt(variance + self.eps))
        return (out + self.bias.view(1, -1, 1, 1, 1)).to(x.dtype)


class ConvNeXtBlock(nn.Module):
    """Depthwise conv, channels-last layer norm, inverted bottleneck MLP, layer scale, residual.

    ``gamma`` exists only when ``layer_scale`` is true (upstream: init value > 0). Drop path is
    the identity at inference and has no parameters, so it is left out.
    """

    def __init__(self, dim: int, kernel_size: int, activation: str, layer_scale: bool) -> None:
        super().__init__()
        self.dwconv = nn.Conv3d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = ACTIVATIONS[activation]()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.ones(dim)) if layer_scale else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 4, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        gamma = self.gamma
        if gamma is not None:
            y = gamma * y
        return x + y.permute(0, 4, 1, 2, 3)


class ConcatConv(nn.Module):
    """Concatenate two feature maps on the channel axis and mix them with a 1x1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.conv(torch.cat((x, y), dim=1))


class UpSample(nn.Module):
    """Nearest-neighbour resize to a skip connection's shape, layer norm, 3x3x3 conv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm = ChannelsFirstLayerNorm(in_channels)
        self.compress = nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1)

    def forward(self, x: Tensor, shape: list[int]) -> Tensor:
        x = F.interpolate(x, size=shape[2:], mode="nearest")
        return self.compress(self.norm(x))


def _stage(dim: int, depth: int, kernel_size: int, activation: str, layer_scale: bool) -> nn.Sequential:
    return nn.Sequential(
        *[ConvNeXtBlock(dim, kernel_size, activation, layer_scale) for _ in range(depth)]
    )


class UNeXT3D(nn.Module):
    """bism's 3-D UNeXT: a U of ConvNeXt stages with ``len(dims) // 2`` levels below the stem.

    ``dims`` and ``depths`` have the same odd length; the first half goes down, the middle
    entry is the bottom, the second half comes up. The input stem is a fixed 7x7x7 conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dims: Sequence[int],
        depths: Sequence[int],
        kernel_size: int,
        activation: str,
        layer_scale: bool,
    ) -> None:
        super().__init__()
        half = len(dims) // 2
        self.out_channels = out_channels
        self.init_stage = nn.Sequential(
            nn.Conv3d(in_channels, dims[0], kernel_size=7, padding=3),
            # Upstream builds this block with its own default layer scale (1e-2), so it
            # always has gamma.
            ConvNeXtBlock(dims[0], kernel_size, activation, layer_scale=True),
        )
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv3d(dims[0], dims[0], 2, stride=2), ChannelsFirstLayerNorm(dims[0]))]
            + [
                nn.Sequential(ChannelsFirstLayerNorm(dims[i]), nn.Conv3d(dims[i], dims[i + 1], 2, stride=2))
                for i in range(half)
            ]
        )
        self.down_stages = nn.ModuleList(
            [_stage(dims[i], depths[i], kernel_size, activation, layer_scale) for i in range(half + 1)]
        )
        self.down_norms = nn.ModuleList([ChannelsFirstLayerNorm(dims[i]) for i in range(half + 1)])
        self.up_norms = nn.ModuleList([ChannelsFirstLayerNorm(dims[half + 1 + i]) for i in range(half)])
        self.upsample_layers = nn.ModuleList(
            [UpSample(dims[half + i], dims[half + 1 + i]) for i in range(half)]
        )
        self.up_stages = nn.ModuleList(
            [
                _stage(dims[half + 1 + i], depths[half + 1 + i], kernel_size, activation, layer_scale)
                for i in range(half)
            ]
        )
        self.concat = nn.ModuleList(
            [ConcatConv(dims[half + 1 + i] + dims[half - 1 - i], dims[half + 1 + i]) for i in range(half)]
        )
        self.final_concat = ConcatConv(dims[0] + dims[-1], dims[-1])
        self.upscale_out = UpSample(dims[-1], dims[-1])
        self.out_conv = nn.Conv3d(dims[-1], out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.init_stage(x)
        shapes: list[list[int]] = [x.shape]
        skips: list[Tensor] = [x]
        first = True
        for down, stage, norm in zip(self.downsample_layers, self.down_stages, self.down_norms):
            if not first:
                skips.append(x)
            first = False
            x = stage(norm(down(x)))
            shapes.append(x.shape)
        shapes.reverse()
        level = 1
        for up, cat, stage, norm in zip(self.upsample_layers, self.concat, self.up_stages, self.up_norms):
            x = norm(stage(cat(up(x, shapes[level]), skips.pop())))
            level += 1
        x = self.final_concat(self.upscale_out(x, shapes[-1]), skips.pop())
        return self.out_conv(x)


class SpatialEmbedding(nn.Module):
    """Three 3x3x3 heads on the backbone: ``[tanh(vector) x3, sigmoid(skeleton), sigmoid(prob)]``."""

    def __init__(self, backbone: UNeXT3D) -> None:
        super().__init__()
        self.backbone = backbone
        channels = backbone.out_channels
        self.out_embed = nn.Conv3d(channels, 3, kernel_size=3, padding=1)
        self.out_prob = nn.Conv3d(channels, 1, kernel_size=3, padding=1)
        self.out_skeleton = nn.Conv3d(channels, 1, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.backbone(x)
        return torch.cat(
            (
                torch.tanh(self.out_embed(x)),
                torch.sigmoid(self.out_skeleton(x)),
                torch.sigmoid(self.out_prob(x)),
            ),
            dim=1,
        )
