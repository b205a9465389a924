"""Read throughput of one volume stored as Zarr, N5 and Neuroglancer precomputed, in
``segment``'s access pattern: every crop window of the seed's grid (300x300x20, overlap
10x10x5), read in the grid's order through the client's own reader (``read_volume`` and the
view the engines slice), as the in-memory mode and each blockwise worker read them.

    python benchmarks/store_read.py [--shape 600,600,80] [--chunks 128,128,16] [--repeats 3] [--dir /fast/disk]

Rows: the same Zarr v2 store read by zarr-python alone, by TensorStore (``zarr://``), and as a
plain path (the client's default: zarr-python finds the array, TensorStore reads it); a sharded Zarr v3 array, an N5 dataset (gzip) and a
precomputed image (raw chunks), each by TensorStore. Every store has the same chunk shape; the
Zarr v2 store uses zarr-python's default compressor, the v3 one zstd. Reads come from the page
cache (the files were just written): this measures decoding and the reader's overhead, not the
disk. Also prints the share of reading in the infer stage per crop, against the per-crop
inference times this file names (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from common import blobs

from skoots_client.stores import parse
from skoots_client.tiling import crop_grid
from skoots_client.volume_read import read_volume

CROP, OVERLAP = (300, 300, 20), (10, 10, 5)
# Inference per 300x300x20 crop, to put reading in proportion: the CPU figure is OpenVINO FP32 on
# the default cfg (RESULTS.md, issue 12); the GPU one an assumed 50 ms (a GPU server's tens of ms).
INFER_SECONDS = {"CPU": 3.87, "GPU": 0.05}


def write_stores(folder: Path, zyx: np.ndarray, chunks_xyz: tuple[int, int, int]) -> dict[str, Callable[[], Any]]:
    """The volume in every format, and how the client opens each (a callable: opening is timed with reading)."""
    import tensorstore as ts
    import zarr

    cx, cy, cz = chunks_xyz  # runtime X = rows (file y), Y = columns (file x), Z
    chunks_zyx = (cz, cx, cy)
    zarr.create_array(str(folder / "v2.zarr"), data=zyx, chunks=chunks_zyx, zarr_format=2)
    sharded = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(folder / "v3.zarr")}, "create": True,
                       "metadata": {"shape": list(zyx.shape), "data_type": "uint16", "dimension_names": ["z", "y", "x"],
                                    "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [cz * 2, cx * 4, cy * 4]}},
                                    "codecs": [{"name": "sharding_indexed", "configuration": {
                                        "chunk_shape": list(chunks_zyx), "codecs": [{"name": "bytes"}, {"name": "zstd"}]}}]}}).result()
    sharded.write(zyx).result()
    n5 = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": str(folder / "v.n5")}, "create": True,
                  "metadata": {"dimensions": list(zyx.shape[::-1]), "blockSize": [cy, cx, cz], "dataType": "uint16",
                               "compression": {"type": "gzip"}}}).result()
    n5.write(zyx.T).result()
    pre = ts.open({"driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": str(folder / "pre")}, "create": True,
                   "multiscale_metadata": {"type": "image", "data_type": "uint16", "num_channels": 1},
                   "scale_metadata": {"size": list(zyx.shape[::-1]), "resolution": [1, 1, 1], "encoding": "raw",
                                      "chunk_size": [cy, cx, cz]}}).result()
    pre.write(zyx.T[..., None]).result()
    return {
        "Zarr v2, zarr-python": lambda: _zarr_python(folder / "v2.zarr"),
        "Zarr v2 path (the default reader)": lambda: read_volume(folder / "v2.zarr"),
        "Zarr v2, TensorStore": lambda: read_volume(parse(f"zarr://{folder}/v2.zarr")),
        "Zarr v3 sharded, TensorStore": lambda: read_volume(parse(f"zarr3://{folder}/v3.zarr")),
        "N5 gzip, TensorStore": lambda: read_volume(folder / "v.n5"),
        "precomputed raw, TensorStore": lambda: read_volume(folder / "pre"),
    }


def _zarr_python(path: Path) -> Any:
    """The volume at ``path`` read by zarr-python alone (the client's reader before TensorStore)."""
    import zarr

    from skoots_client.volume import Volume, XYZView

    return Volume(XYZView(zarr.open_array(str(path), mode="r"), (0, 1, 2), {}), path)


def read_crops(open_volume: Callable[[], Any], windows: list[Any], reference: np.ndarray | None) -> tuple[float, int]:
    """Seconds to open the volume and read every window; the bytes read. Checks the data."""
    start = time.perf_counter()
    volume = open_volume()
    read = 0
    for window in windows:
        data = np.asarray(volume.data[window])
        read += data.nbytes
    seconds = time.perf_counter() - start
    if reference is not None:
        assert np.array_equal(np.asarray(volume.data[windows[-1]]), reference[windows[-1]])
    return seconds, read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="600,600,80", help="volume X,Y,Z (runtime order: rows, columns, slices)")
    parser.add_argument("--chunks", default="128,128,16", help="chunk X,Y,Z of every store")
    parser.add_argument("--repeats", type=int, default=3, help="passes per store, interleaved; the median is reported")
    parser.add_argument("--dir", default=None, help="folder for the stores (default: a temporary one)")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    chunks = tuple(int(v) for v in args.chunks.split(","))
    folder = Path(tempfile.mkdtemp(prefix="store_read-", dir=args.dir))
    try:
        x, y, z = shape
        zyx = blobs((z, x, y), seed=1)
        stores = write_stores(folder, zyx, chunks)  # type: ignore[arg-type]
        reference = zyx.transpose(1, 2, 0)
        windows = [c.window for c in crop_grid(shape, CROP, OVERLAP)]
        times: dict[str, list[float]] = {name: [] for name in stores}
        nbytes = 0
        for _ in range(args.repeats):
            for name, opener in stores.items():
                seconds, nbytes = read_crops(opener, windows, reference)
                times[name].append(seconds)
        print(f"volume {x}x{y}x{z} uint16 ({zyx.nbytes / 1e6:.0f} MB), chunks {args.chunks}, {len(windows)} crops of "
              f"{'x'.join(map(str, CROP))} ({nbytes / 1e6:.0f} MB read per pass), median of {args.repeats}:")
        print(f"{'reader':34s} {'s/pass':>7s} {'MB/s':>7s} {'ms/crop':>8s}  " + "  ".join(f"I/O share {k}" for k in INFER_SECONDS))
        for name, values in times.items():
            seconds = statistics.median(values)
            per_crop = seconds / len(windows)
            shares = "  ".join(f"{100 * per_crop / (per_crop + infer):>{len(k) + 10}.1f}%" for k, infer in INFER_SECONDS.items())
            print(f"{name:34s} {seconds:7.2f} {nbytes / seconds / 1e6:7.0f} {1000 * per_crop:8.1f}  {shares}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
