"""What a neighbour's halo read costs from the blockwise work store: a block's sparse vectors
and labels scattered into a halo of a few X planes, from memory-mapped ``.npy`` files (the
reader before the work store moved behind the object API), through ``BlockStore`` on a folder,
and through ``BlockStore`` on S3 (moto's server on 127.0.0.1) — interleaved, in one run.

    python benchmarks/work_store_reads.py [--block 256,256,64] [--halo 8] [--fraction 0.3] [--rounds 20]

Prints milliseconds per halo read (vectors + labels) and the bytes fetched, and the ratios
folder / memory map and S3 / memory map. moto is an in-process Python server: its latency is
not a cloud store's, but the bytes fetched are what any store would send.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from skoots_client.blockwise import sparse
from skoots_client.blockwise.objects import Folder, KvObjects
from skoots_client.blockwise.store import BlockStore
from skoots_client.stores import parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block", default="256,256,64", help="block X,Y,Z")
    parser.add_argument("--halo", type=int, default=8, help="X planes the halo covers")
    parser.add_argument("--fraction", type=float, default=0.3, help="share of foreground voxels")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    extent = tuple(int(n) for n in args.block.split(","))
    rng = np.random.default_rng(0)
    mask = rng.random(extent) < args.fraction
    labels = np.where(mask, rng.integers(1, 5000, extent), 0).astype(np.uint32)
    vectors = (rng.random((3, *extent)).astype(np.float16) * 2 - 1) * mask
    at, values = sparse.to_sparse(labels)
    vector_at, vector_values = sparse.to_sparse(vectors)
    whole = at.nbytes + values.nbytes + vector_at.nbytes + vector_values.nbytes
    region = tuple((0, n) for n in extent)
    window = ((extent[0] - args.halo, extent[0] + args.halo), (0, extent[1]), (0, extent[2]))  # the next block's halo

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from stores.stores_support import S3_ENV, make_bucket, moto_server

    os.environ.update(S3_ENV)
    with tempfile.TemporaryDirectory() as folder, moto_server() as endpoint:
        make_bucket(endpoint, "bench")
        plain = Path(folder) / "mmap"
        plain.mkdir()
        for name, array in (("labels.at", at), ("labels.values", values), ("vectors.at", vector_at), ("vectors.values", vector_values)):
            np.save(plain / f"{name}.npy", array)
        stores = {"folder": BlockStore(Path(folder) / "store"), "s3": BlockStore(parse("s3://bench/w", s3_endpoint=endpoint))}
        for store in stores.values():
            store.save_sparse("labels", "b", at, values)
            store.save_sparse("vectors", "b", vector_at, vector_values)
        fetched = {"s3": 0}
        get_range, get = KvObjects.get_range, KvObjects.get

        def counted_range(self, key, start, stop):
            fetched["s3"] += max(stop - start, 0)
            return get_range(self, key, start, stop)

        def counted_get(self, key):
            data = get(self, key)
            fetched["s3"] += len(data)
            return data

        KvObjects.get_range, KvObjects.get = counted_range, counted_get  # type: ignore[method-assign]

        def halo(load) -> np.ndarray:
            out_vectors = np.zeros((3, 2 * args.halo, extent[1], extent[2]), np.float16)
            out_labels = np.zeros((1, 2 * args.halo, extent[1], extent[2]), np.uint32)
            sparse.scatter(out_vectors, window, region, *load("vectors"))
            sparse.scatter(out_labels, window, region, *load("labels"))
            return out_vectors, out_labels

        readers = {
            "memory map": lambda kind: tuple(np.load(plain / f"{kind}.{p}.npy", mmap_mode="r") for p in ("at", "values")),
            "folder": lambda kind: stores["folder"].load_sparse(kind, "b"),
            "s3": lambda kind: stores["s3"].load_sparse(kind, "b"),
        }
        reference = halo(readers["memory map"])
        seconds = {name: [] for name in readers}
        for _ in range(args.rounds):
            for name, load in readers.items():
                started = time.perf_counter()
                got = halo(load)
                seconds[name].append(time.perf_counter() - started)
                assert all(np.array_equal(a, b) for a, b in zip(got, reference)), name
        assert isinstance(stores["folder"].objects, Folder)
        per = {name: float(np.median(s)) for name, s in seconds.items()}
        print(f"block {extent}, {args.fraction:.0%} foreground, halo of {2 * args.halo} X planes, {args.rounds} rounds interleaved (median)")
        print(f"the block's sparse vectors + labels: {whole / 2**20:.1f} MiB; S3 fetched {fetched['s3'] / args.rounds / 2**20:.2f} MiB per halo read")
        for name, value in per.items():
            print(f"  {name:10s} {value * 1e3:8.2f} ms per halo read ({value / per['memory map']:.2f} x memory map)")
        for store in stores.values():
            store.remove()


if __name__ == "__main__":
    main()
