"""The seed's inference protocol (the original SKOOTS inference protocol) replayed with upstream skoots' own
functions — ``crops``, ``binary_dilation``, ``binary_dilation_2d``, ``efficient_flood_fill``,
``vector_to_embedding``, ``index_skeleton_by_embed`` — for parity tests and benchmarks.

Upstream lives in ``.upstream`` (``pip install --no-deps --target .upstream skoots==0.0.5
bism==0.0.6``, plus tqdm); the project itself never imports it. Inference
(:func:`seed_network_outputs`) and post-processing (:func:`seed_postprocess`, steps 5-10) are
separate so a benchmark can time the second alone on the first's outputs.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

BLOCK, BLOCK_OVERLAP = (500, 500, 50), (50, 50, 5)


def allow_upstream_import_without_openai_triton() -> None:
    """skoots.lib.skeleton imports OpenAI's GPU compiler ``triton`` for a kernel the seed
    protocol never calls; give it an inert stand-in so ``index_skeleton_by_embed`` imports."""
    try:
        import triton  # noqa: F401
        return
    except ImportError:
        pass

    def anything(*args, **kwargs):
        return args[0] if len(args) == 1 and callable(args[0]) else anything

    class Inert(types.ModuleType):
        def __getattr__(self, name):
            return anything

    sys.modules["triton"] = Inert("triton")
    sys.modules["triton.language"] = Inert("triton.language")
    sys.modules["triton"].language = sys.modules["triton.language"]


def seed_network_outputs(image_zxy: np.ndarray, model: torch.jit.ScriptModule, crop, overlap) -> list[tuple[tuple[int, int, int], torch.Tensor, torch.Tensor]]:
    """``[(origin, vectors [1,3,X,Y,Z], skeleton [1,1,X,Y,Z]), ...]`` for the crops of upstream's
    cropper, in its order, from the network fed what the client sends (FP16, x / 2**16)."""
    from skoots.lib.cropper import crops

    image = torch.from_numpy(image_zxy[..., None].transpose(3, 1, 2, 0).astype(np.int32))  # [C, X, Y, Z]
    outputs, seen = [], {}
    with torch.inference_mode():
        for piece, origin in crops(image, list(crop), list(overlap)):
            origin = tuple(int(v) for v in origin)
            if origin not in seen:  # the cropper repeats a start where snapping meets the previous one
                vec, skel, _ = model(piece.div(2**16).float().half())
                seen[origin] = (vec, skel)
            outputs.append((origin, *seen[origin]))
    return outputs


def seed_postprocess(
    outputs: Sequence[tuple[tuple[int, int, int], torch.Tensor, torch.Tensor]],
    shape_xyz: Sequence[int],
    crop,
    overlap,
    scaling,
    n: int = 2,
) -> np.ndarray:
    """Steps 5-10 as the seed runs them: per-crop dilations, stitching, flood fill, embedding
    and indexing in 500x500x50 blocks. Returns int32 labels ``[X, Y, Z]``."""
    allow_upstream_import_without_openai_triton()
    from skoots.lib.cropper import crops
    from skoots.lib.flood_fill import efficient_flood_fill
    from skoots.lib.morphology import binary_dilation, binary_dilation_2d
    from skoots.lib.skeleton import index_skeleton_by_embed
    from skoots.lib.vector_to_embedding import vector_to_embedding

    x, y, z = shape_xyz
    skeleton = torch.zeros((1, x, y, z), dtype=torch.int16)
    vectors = torch.zeros((3, x, y, z), dtype=torch.half)
    cropsize, overlap = [min(c, s) for c, s in zip(crop, shape_xyz)], list(overlap)
    with torch.inference_mode():
        for (x0, y0, z0), vec, skel in outputs:
            skeleton_map = skel.float()
            skeleton_map = binary_dilation(skeleton_map)
            for _ in range(3):
                skeleton_map = binary_dilation_2d(skeleton_map)
            destination = (
                ...,
                slice(x0 + overlap[0], x0 + cropsize[0] - overlap[0]),
                slice(y0 + overlap[1], y0 + cropsize[1] - overlap[1]),
                slice(z0 + overlap[2], z0 + cropsize[2] - overlap[2]),
            )
            source = (0, ..., slice(overlap[0], -overlap[0]), slice(overlap[1], -overlap[1]), slice(overlap[2], -overlap[2]))
            skeleton[destination] = skeleton_map[source].gt(0.8)
            vectors[destination] = vec[source].half()
        skeleton = efficient_flood_fill(skeleton)
        instances = torch.zeros_like(skeleton, dtype=torch.int32)
        skeleton = skeleton.unsqueeze(0).unsqueeze(0)
        block = list(BLOCK)  # the cropper shrinks it in place to the volume, as the seed relies on
        for vec, (x0, y0, z0) in crops(vectors, crop_size=block, overlap=BLOCK_OVERLAP):
            embed = vector_to_embedding(scale=torch.tensor(scaling), vector=vec, N=n)
            embed += torch.tensor((x0, y0, z0)).view(1, 3, 1, 1, 1)
            labels = index_skeleton_by_embed(skeleton=skeleton, embed=embed).squeeze()
            destination = tuple(slice(p + o, p + b - o) for p, o, b in zip((x0, y0, z0), BLOCK_OVERLAP, block))
            source = tuple(slice(o, -o) for o in BLOCK_OVERLAP)
            instances[destination] = labels[source]
    return instances.squeeze().numpy()


def seed_protocol(image_zxy: np.ndarray, model: Any, crop, overlap, scaling, n: int = 2) -> np.ndarray:
    """The whole seed protocol: labels ``[X, Y, Z]`` for a ``[Z, X, Y]`` uint16 volume."""
    z, x, y = image_zxy.shape
    return seed_postprocess(seed_network_outputs(image_zxy, model, crop, overlap), (x, y, z), crop, overlap, scaling, n)
