"""The activation estimate (export/contract/activation.py) against the real peak of one
in-process inference, per network and tile.

    python benchmarks/tile_memory.py [--runtime torchscript openvino] [--default-tile 64,64,16]

For each network (the tests' tiny cfg 4-8-16-8-4 kernel 3, the benchmarks' MID 8-16-32-16-8
kernel 3, and the default cfg 32-64-128-64-32 kernel 7 on one small tile) and tile, a child
process imports the runtime, notes its resident set, loads the exported model, answers one
crop of that tile, and reports its peak resident set (``ru_maxrss``); the growth over the
resident set before loading is what a run adds for inference, and is set beside
`inference_bytes`' estimate.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import common

CHILD = r"""
import json, sys
import numpy as np
from skoots_client.model_source import EmbeddedModel
import torch
try:
    import openvino  # noqa: F401
except ImportError:
    pass
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
repository, runtime, tile = sys.argv[1], sys.argv[2], [int(v) for v in sys.argv[3].split(",")]
before = rss()
model = EmbeddedModel(repository, runtime=runtime, threads=2)
model.infer(np.zeros((1, 1, 16, 16, 16), np.float16))  # loaded and warm: the fixed part
loaded = rss()
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) starts again from here
batch = np.random.default_rng(0).random((1, 1, *tile), dtype=np.float32).astype(np.float16)
model.infer(batch)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) * 1024
print(json.dumps({"before": before, "loaded": loaded, "peak": hwm}))
"""

NETWORKS = {
    "tiny 4-8-16-8-4 k3": ({"DIMS": [4, 8, 16, 8, 4], "DEPTHS": [1, 1, 1, 1, 1], "KERNEL_SIZE": 3, "OUT_CHANNELS": 8},
                           ["64,64,16", "128,128,32", "256,256,32", "320,320,40"]),
    "mid 8-16-32-16-8 k3": (common.MID, ["64,64,16", "128,128,32", "192,192,48"]),
    "default 32-64-128-64-32 k7": ({}, ["64,64,16"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", nargs="+", default=["torchscript"])
    parser.add_argument("--default-tile", nargs="+", default=None, help="tiles for the default cfg (X,Y,Z)")
    args = parser.parse_args()
    from checkpoints import skoots_cfg

    from skoots_export.contract.activation import inference_bytes, network_from_cfg

    print(common.machine())
    print(f"{'network':28} {'runtime':12} {'tile X,Y,Z':12} {'load MiB':>9} {'estimate MiB':>12} {'measured MiB':>12} {'error':>7}")
    with tempfile.TemporaryDirectory() as scratch:
        for name, (model, tiles) in NETWORKS.items():
            if model == {} and args.default_tile:
                tiles = args.default_tile
            repository = common.export_lively(Path(scratch) / name.split()[0], model or skoots_cfg().MODEL, crop=(32, 32, 16),
                                              overlap=(4, 4, 2))
            network = network_from_cfg(skoots_cfg(**model) if model else skoots_cfg())
            assert network is not None
            for runtime in args.runtime:
                for tile in tiles:
                    done = subprocess.run([sys.executable, "-c", CHILD, str(repository), runtime, tile], capture_output=True,
                                          text=True, check=True)
                    measured = json.loads(done.stdout.strip().splitlines()[-1])
                    grown = measured["peak"] - measured["before"]
                    estimate = inference_bytes(network, [int(v) for v in tile.split(",")])
                    print(f"{name:28} {runtime:12} {tile:12} {(measured['loaded'] - measured['before']) / 2**20:9.0f} {estimate / 2**20:12.0f} {grown / 2**20:12.0f} "
                          f"{(estimate - grown) / grown:+7.0%}", flush=True)


if __name__ == "__main__":
    main()
