"""What ``--meshes`` costs a blockwise run (issue 30): the same run to ``precomputed://`` without
and with meshes, side by side in one process, and the bytes of mesh per instance.

    python benchmarks/mesh_cost.py [--sizes 600x600x100] [--workers 2]

Both runs are fed the same answers of a perfect network (``common.ideal_outputs``: dense
random tubes on a 300x300x50 pattern, repeated over larger volumes; no inference, so the share
printed is of post-processing and writing alone — against a run that infers, meshing's share
is smaller), with the seed's constants (crop 300x300x20, overlap 10x10x5, S = 60,60,12, N = 2),
the default blocks and a voxel size of 8 x 8 x 40 nm. Printed per size: each run's wall time
and stage seconds; the ``mesh`` and ``manifest`` stages' seconds and their share of the meshed
run's wall time; the wall-time ratio; the bytes under ``mesh/`` per instance, per fragment and
per labelled voxel; and whether the two runs' labels are bitwise equal (meshes change none).
Then, in this process, the first write region of the output meshed as the workers mesh it, with
and without simplification: what simplifying costs, and what it saves in bytes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import common
import numpy as np

PATTERN = (300, 300, 50)
CROP, OVERLAP, SCALING = (300, 300, 20), (10, 10, 5), (60.0, 60.0, 12.0)
TUBES, RADIUS = 900, 9.0  # dense: most of the pattern is object


def dense_answers(folder: Path) -> Path:
    import zarr

    vectors, skeleton = common.ideal_outputs(PATTERN, TUBES, SCALING, radius=RADIUS, seed=0)
    path = folder / "answers.zarr"
    group = zarr.open_group(str(path), mode="w")
    group.create_array("vectors", data=vectors, chunks=(3, 150, 150, 50))
    group.create_array("skeleton", data=skeleton, chunks=(150, 150, 50))
    return path


def run(answers: Path, shape: tuple[int, int, int], folder: Path, workers: int, meshes: bool) -> dict:
    """One blockwise run to ``precomputed://folder/seg``."""
    from skoots_client import postprocess
    from skoots_client.blockwise.blocks import default_per_block
    from skoots_client.blockwise.job import Job, StoredAnswers
    from skoots_client.blockwise.pipeline import segment_job
    from skoots_client.normalize import Normalization
    from skoots_client.progress import Watch
    from skoots_client.specs import OutputSpec
    from skoots_client.stores import parse
    from skoots_client.voxel_size import VoxelSize
    from skoots_export.contract.wire import ModelParameters

    parameters = ModelParameters(crop=CROP, overlap=OVERLAP, vector_scaling=SCALING, embedding_iterations=2)
    lh, vh = postprocess.halo_widths(SCALING, 2)
    job = Job(volume=answers, channel=None, axes=None, normalization=Normalization("dtype"), work=folder / "work", shape=shape,
              per_block=default_per_block(shape, CROP, OVERLAP, lh, vh), reference_borders=False, parameters=parameters,
              source=StoredAnswers(answers), batch_size=1, threads=1, label_halo=lh, vector_halo=vh)
    out = parse(f"precomputed://{folder}/seg")
    job = dataclasses.replace(job, output=OutputSpec(out=out, overwrite=True, meshes=meshes), fingerprint={"bench": str(shape)},
                              workers=workers, voxel_size=VoxelSize((8.0, 8.0, 40.0), "nanometer"))
    started = time.perf_counter()
    result = segment_job(job, Watch(quiet=True))
    return {"wall": time.perf_counter() - started, "instances": result.instances, "labelled": result.labelled,
            "seconds": {k: round(v, 1) for k, v in result.seconds.items()}}


def mesh_bytes(folder: Path) -> tuple[int, int]:
    """Bytes under ``seg/mesh``, and the number of fragments there."""
    total = fragments = 0
    for entry in os.scandir(folder / "seg" / "mesh"):
        total += entry.stat().st_size
        fragments += entry.name.count(":") == 2
    return total, fragments


def one_region(folder: Path) -> str:
    """The first write region meshed simplified and not: seconds, triangles and bytes of each."""
    import tensorstore as ts

    from skoots_client.meshes import REDUCTION, encode_fragment, mesh_box, read_extent
    from skoots_client.stores.meshes import scale_frame
    from skoots_client.stores.writer import write_step

    store = ts.open({"driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": str(folder)}}).result()
    store = store[ts.d[:].translate_to[0]]  # from the first voxel, whatever the voxel_offset
    shape = (store.shape[1], store.shape[0], store.shape[2])  # runtime X (rows), Y (columns), Z
    step = write_step(shape, store.chunk_layout.write_chunk.shape)
    box = [(0, min(s, n)) for s, n in zip(step, shape)]
    (x0, x1), (y0, y1), (z0, z1) = read_extent(box, shape)
    labels = np.asarray(store[y0:y1, x0:x1, z0:z1].read().result())[..., 0].transpose(1, 0, 2)
    info = json.loads((folder / "info").read_text())
    resolution, offset = scale_frame(info)
    parts = []
    for reduction in (REDUCTION, 0):
        started = time.perf_counter()
        meshes = mesh_box(labels, box, shape, resolution, offset, reduction=reduction)
        seconds = time.perf_counter() - started
        size = sum(len(encode_fragment(*m)) for m in meshes.values())
        parts.append(f"reduction {reduction}: {seconds:.1f}s, {sum(len(f) for _, f in meshes.values()) / 1e6:.2f}M triangles, "
                     f"{size / 1e6:.1f} MB")
    voxels = int(np.prod([hi - lo for lo, hi in box]))
    return f"one write region ({voxels / 1e6:.1f} Mvoxels, {len(meshes)} ids) meshed here: " + "; ".join(parts)


def same_labels(a: Path, b: Path) -> bool:
    import tensorstore as ts

    x, y = (ts.open({"driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": str(p)}}).result() for p in (a, b))
    if x.shape != y.shape or x.dtype != y.dtype:
        return False
    n = x.shape[2]
    step = max(1, n // 8)
    return all(np.array_equal(x[:, :, i:min(i + step, n)].read().result(), y[:, :, i:min(i + step, n)].read().result())
               for i in range(0, n, step))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="600x600x100")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(f"dense answers: {TUBES} tubes of radius {RADIUS} on {PATTERN}; S = {SCALING}, N = 2, crop {CROP}, default blocks, "
          f"{args.workers} workers, 8x8x40 nm; {common.machine()}")
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as tmp:
        folder = Path(tmp)
        answers = dense_answers(folder)
        for text in args.sizes.split(","):
            shape = tuple(int(v) for v in text.lower().split("x"))
            voxels = int(np.prod(shape))
            results = {}
            for side in ("labels", "meshes"):
                (folder / side).mkdir()
                r = results[side] = run(answers, shape, folder / side, args.workers, side == "meshes")  # type: ignore[arg-type]
                print(f"{text:>14} {voxels / 1e6:>6.0f}M {side:>6}: wall {r['wall']:7.1f}s  {r['instances']} instances  "
                      f"stages s {json.dumps(r['seconds'])}", flush=True)
            a, b = results["labels"], results["meshes"]
            meshing = b["seconds"].get("mesh", 0.0) + b["seconds"].get("manifest", 0.0)
            size, fragments = mesh_bytes(folder / "meshes")
            equal = same_labels(folder / "labels" / "seg", folder / "meshes" / "seg")
            print(f"{'':>14} mesh+manifest {meshing:.1f}s = {meshing / b['wall']:.0%} of the meshed run; wall {b['wall'] / a['wall']:.2f}x "
                  f"of labels only; mesh/ {size / 1e6:.1f} MB = {size / max(b['instances'], 1) / 1e3:.1f} kB per instance, "
                  f"{fragments / max(b['instances'], 1):.1f} fragments per instance, {size / max(b['labelled'], 1):.3f} B per labelled "
                  f"voxel; labels bitwise equal: {equal}", flush=True)
            if not equal:
                raise SystemExit("labels differ")
            print(f"{'':>14} {one_region(folder / 'meshes' / 'seg')}", flush=True)
            for side in ("labels", "meshes"):
                shutil.rmtree(folder / side, ignore_errors=True)


if __name__ == "__main__":
    main()
