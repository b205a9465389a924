"""The inference head: the network plus step 4 of the reference semantics (thresholding).

It returns only what the client's post-processing needs, in the wire contract's types, so
each crop voxel costs 2 B in (FP16) and 7 B out (FP16 vectors, UINT8 skeleton).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["InferenceHead", "GraphHead"]


class InferenceHead(nn.Module):
    """``crops [B, 1, X, Y, Z] FP16`` → ``(vectors FP16 [B, 3, ...], skeleton UINT8 [B, 1, ...],
    probability FP16 [B, 1, ...])``.

    ``vectors = v * (prob > prob_threshold)`` and
    ``skeleton = (skel * (prob > prob_threshold)) > skeleton_threshold``, as the seed computes
    them. On CUDA the network runs under float16 autocast (as the seed does); on the CPU it
    computes in float32. Each crop's answer is independent of the batch it arrives in.
    """

    def __init__(self, network: nn.Module, prob_threshold: float = 0.5, skeleton_threshold: float = 0.8) -> None:
        super().__init__()
        self.network = network
        self.prob_threshold = float(prob_threshold)
        self.skeleton_threshold = float(skeleton_threshold)

    def forward(self, input__0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # One crop at a time: convolution kernels pick other blockings for other batch sizes,
        # which moves outputs by an ulp, so a crop's answer would depend on which requests the
        # dynamic batcher merged it with. Alone, it is the same in every batch, on every retry.
        raw: list[Tensor] = []
        for crop in input__0.split(1):
            x = crop.float()
            if x.is_cuda:
                with torch.autocast(device_type="cuda", dtype=torch.float16):
                    raw.append(self.network(x).float())
            else:
                raw.append(self.network(x))
        out = torch.cat(raw)
        prob = out[:, 4:5]
        mask = prob > self.prob_threshold
        vectors = (out[:, 0:3] * mask).half()
        skeleton = ((out[:, 3:4] > self.skeleton_threshold) & mask).to(torch.uint8)
        return vectors, skeleton, prob.half()


class GraphHead(nn.Module):
    """`InferenceHead`'s CPU path without the per-crop loop, for graph exporters (``torch.export``,
    the ONNX exporter): a loop over a symbolic batch cannot be captured, and CUDA autocast is a
    runtime's choice, not part of a graph. Same inputs, outputs and thresholds; the runtimes that
    run the graph send it one crop per call (batch independence, docs/SEMANTICS.md)."""

    def __init__(self, head: InferenceHead) -> None:
        super().__init__()
        self.network = head.network
        self.prob_threshold = head.prob_threshold
        self.skeleton_threshold = head.skeleton_threshold

    def forward(self, input__0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.network(input__0.float())
        prob = out[:, 4:5]
        mask = prob > self.prob_threshold
        vectors = (out[:, 0:3] * mask).half()
        skeleton = ((out[:, 3:4] > self.skeleton_threshold) & mask).to(torch.uint8)
        return vectors, skeleton, prob.half()
