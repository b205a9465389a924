"""(c) Bytes on the wire per crop voxel and per output voxel: our contract against a naive one.

    python benchmarks/wire_bytes.py [--crop 300,300,20] [--overlap 10,10,5] [--batch 1 8] [--shape 64,1024,1024]

Ours: FP16 crops in, FP16 masked vectors (3 channels) and a UINT8 skeleton out. Naive: FP32
crops in and the network's five FP32 channels out. Both are sized as the gRPC messages that
travel (protobuf + gRPC's 5-byte prefix; ``skoots_client.bench.message_bytes``, whose request
and reply sizes ``tests/functional/test_bench_cli.py`` checks against tritonclient's request
and a real Triton reply). Per output voxel multiplies by the crops a volume of ``--shape``
needs (overlap makes the network see each voxel more than once).
"""

from __future__ import annotations

import argparse

import common
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crop", default="300,300,20", help="crop X,Y,Z (the seed's)")
    parser.add_argument("--overlap", default="10,10,5", help="overlap X,Y,Z (the seed's)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--shape", default="64,1024,1024", help="volume Z,X,Y for bytes per output voxel")
    args = parser.parse_args()
    crop, overlap = common.triple(args.crop), common.triple(args.overlap)
    z, x, y = common.triple(args.shape)

    from skoots_client.bench import NAIVE_INPUTS, NAIVE_OUTPUTS, message_bytes
    from skoots_client.tiling import crop_grid

    crop_voxels = int(np.prod(crop))
    crops = len(crop_grid((x, y, z), crop, overlap))
    inferred_per_output = crops * crop_voxels / (x * y * z)
    print(f"crop {crop}; volume {(z, x, y)} (Z, X, Y) takes {crops} crops: {inferred_per_output:.2f} crop voxels per output voxel")
    print(f"{'batch':>5} {'contract':>8} {'request B':>12} {'reply B':>12} {'B/crop voxel':>13} {'B/output voxel':>15} {'naive/ours':>11}")
    for batch in args.batch:
        sizes = {
            "ours": message_bytes(batch, crop),
            "naive": message_bytes(batch, crop, NAIVE_INPUTS, NAIVE_OUTPUTS),
        }
        per_voxel = {k: sum(v) / (batch * crop_voxels) for k, v in sizes.items()}
        for name, (request, reply) in sizes.items():
            ratio = per_voxel["naive"] / per_voxel[name]
            print(f"{batch:5d} {name:>8} {request:12d} {reply:12d} {per_voxel[name]:13.4f} {per_voxel[name] * inferred_per_output:15.3f} {ratio:11.3f}")


if __name__ == "__main__":
    main()
