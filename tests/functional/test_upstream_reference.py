"""``--reference-borders`` against the seed's protocol run with upstream skoots' own functions.

The seed's loop (DESIGN.md's seeds/000) is replayed step by step with ``skoots.lib`` —
``crops``, ``binary_dilation``, ``binary_dilation_2d``, ``efficient_flood_fill``,
``vector_to_embedding``, ``index_skeleton_by_embed`` — on the same TorchScript network, and the
labels are compared with ours on volumes that fit one reference block (≤ 500x500x50).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from reference_pipeline import same_partition
from skoots_client.run import segment_file

pytest.importorskip("skoots.lib.flood_fill", reason="install skoots==0.0.5, bism==0.0.6 (--no-deps) and tqdm")


def _allow_upstream_import_without_openai_triton() -> None:
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


def seed_protocol(image_zxy: np.ndarray, model: torch.jit.ScriptModule, crop, overlap, scaling, n: int = 2) -> np.ndarray:
    _allow_upstream_import_without_openai_triton()
    from skoots.lib.cropper import crops
    from skoots.lib.flood_fill import efficient_flood_fill
    from skoots.lib.morphology import binary_dilation, binary_dilation_2d
    from skoots.lib.skeleton import index_skeleton_by_embed
    from skoots.lib.vector_to_embedding import vector_to_embedding

    image = torch.from_numpy(image_zxy[..., None].transpose(3, 1, 2, 0).astype(np.int32))  # [C, X, Y, Z]
    scale = 2**16
    c, x, y, z = image.shape
    skeleton = torch.zeros((1, x, y, z), dtype=torch.int16)
    vectors = torch.zeros((3, x, y, z), dtype=torch.half)
    cropsize, overlap = list(crop), list(overlap)
    with torch.inference_mode():
        for piece, (x0, y0, z0) in crops(image, cropsize, overlap):
            # The wire is FP16: the network sees what the client sends.
            vec, skel, _ = model(piece.div(scale).float().half())
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
    block, block_overlap = [500, 500, 50], (50, 50, 5)
    instances = torch.zeros_like(skeleton, dtype=torch.int32)
    skeleton = skeleton.unsqueeze(0).unsqueeze(0)
    for vec, (x0, y0, z0) in crops(vectors, crop_size=block, overlap=block_overlap):
        embed = vector_to_embedding(scale=torch.tensor(scaling), vector=vec, N=n)
        embed += torch.tensor((x0, y0, z0)).view(1, 3, 1, 1, 1)
        labels = index_skeleton_by_embed(skeleton=skeleton, embed=embed).squeeze()
        destination = tuple(slice(p + o, p + b - o) for p, o, b in zip((x0, y0, z0), block_overlap, block))
        source = tuple(slice(o, -o) for o in block_overlap)
        instances[destination] = labels[source]
    return instances.squeeze().numpy()


@pytest.mark.slow
@pytest.mark.parametrize("shape_zxy,seed", [((40, 300, 300), 0), ((23, 157, 203), 1)])
def test_reference_borders_equal_the_seed_protocol(e2e_seed_repository: Path, tmp_path: Path, shape_zxy, seed: int) -> None:
    from test_segment_e2e import blobs_volume

    volume = blobs_volume(shape_zxy, seed=seed)
    tifffile.imwrite(tmp_path / "v.tif", volume)
    segment_file(tmp_path / "v.tif", out=tmp_path / "ours.tif", repository=e2e_seed_repository, device="cpu",
                 reference_borders=True, quiet=True)
    ours = tifffile.imread(tmp_path / "ours.tif").transpose(1, 2, 0)
    model = torch.jit.load(str(e2e_seed_repository / "skoots" / "1" / "model.pt"))
    theirs = seed_protocol(volume, model, (24, 24, 8), (4, 4, 2), (4.0, 4.0, 2.0))
    assert ours.max() > 5
    assert same_partition(ours, theirs)
