"""``--skeletons`` (issue 30): what it costs and what it writes — one run of each side.

    python benchmarks/skeleton_cost.py VOLUME -r MODEL_REPOSITORY [--blockwise] [--workers 2] [--block X,Y,Z]

Segments VOLUME twice with the same options, without and with ``--skeletons``, into
``precomputed://`` outputs in a temporary folder (alternating order is not needed: the second
run reuses nothing), and prints side by side: the wall time of each run, the skeleton stages'
seconds (in memory: ``skeletons``; blockwise: ``skeleton`` + ``skeleton-merge``) and their share
of the run with them, the bytes of ``skeletons/`` per instance, how many instances got a graph,
and how the instance table's thinning-based ``skeleton_length_<u>`` compares with the written
graph's ``skeleton_graph_length_<u>`` (|graph - thinning| / graph: median and 90th percentile,
over the instances with a graph; and over those where thinning is not 0).
"""

from __future__ import annotations

import argparse
import csv
import re
import tempfile
import time
from pathlib import Path

import numpy as np

import skoots_client


def _stage_seconds(summary: str) -> dict[str, float]:
    """Stage → seconds: the summary's ``time …s (stage 1.2s, …)`` line in memory, its
    ``blockwise: …; stage 1.2s (… Mvoxels/s), …`` line blockwise."""
    lines = summary.splitlines()
    line = next((ln.split(";", 1)[-1] for ln in lines if ln.startswith("blockwise:")), None)
    if line is None:
        line = next((ln for ln in lines if ln.startswith("time ")), "").split("(", 1)[-1]
    return {name: float(value) for name, value in re.findall(r"([a-z][a-z+-]*) ([0-9.]+)s\b", line)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("volume", type=Path)
    parser.add_argument("-r", "--repository", type=Path, required=True)
    parser.add_argument("--blockwise", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--block", default=None, help="z,y,x")
    args = parser.parse_args()
    options = {"repository": args.repository, "device": "cpu", "quiet": True}
    if args.blockwise:
        options.update(blockwise=True, workers=args.workers)
        if args.block:
            options["block"] = tuple(int(v) for v in args.block.split(","))
    folder = Path(tempfile.mkdtemp(prefix="skeleton-cost-"))
    runs = {}
    for skeletons in (False, True):
        out = folder / f"seg-{int(skeletons)}"
        started = time.perf_counter()
        result = skoots_client.segment(args.volume, out=f"precomputed://{out}", table=folder / f"t{int(skeletons)}.csv",
                                       skeletons=skeletons, **options)
        runs[skeletons] = (time.perf_counter() - started, result, out)
        shown = [ln for ln in result.summary.splitlines() if ln.startswith(("time ", "blockwise:"))]
        print(f"--skeletons {'on ' if skeletons else 'off'}: {runs[skeletons][0]:.1f} s wall, {result.instances} instances;", *shown, sep="\n  ")
    wall_off, _, _ = runs[False]
    wall_on, result, out = runs[True]
    stages = _stage_seconds(result.summary)
    own = sum(v for k, v in stages.items() if k.startswith("skeleton"))
    print(f"skeleton stages {own:.1f} s = {100 * own / wall_on:.1f} % of the run with them; "
          f"wall {wall_on:.1f} s against {wall_off:.1f} s without (+{100 * (wall_on / wall_off - 1):.1f} %)")
    sizes = [p.stat().st_size for p in (out / "skeletons").iterdir() if p.name != "info"]
    print(f"skeletons/: {sum(sizes)} bytes, {np.mean(sizes):.0f} bytes per instance (median {np.median(sizes):.0f}); "
          f"labels: {sum(p.stat().st_size for p in out.rglob('*') if p.is_file()) - sum(sizes)} bytes")
    rows = list(csv.DictReader(open(folder / "t1.csv", newline="")))
    thin_name = next(k for k in rows[0] if k.startswith("skeleton_length_"))
    graph_name = next(k for k in rows[0] if k.startswith("skeleton_graph_length_"))
    thin = np.array([float(r[thin_name]) for r in rows])
    graph = np.array([float(r[graph_name]) for r in rows])
    has = graph > 0
    rel = np.abs(graph[has] - thin[has]) / graph[has]
    both = has & (thin > 0)
    rel_both = np.abs(graph[both] - thin[both]) / graph[both]
    print(f"instances with a graph: {has.sum()} of {len(rows)}; thinning 0 for {(thin[has] == 0).sum()} of them; "
          f"graph >= thinning for {100 * np.mean(graph[has] >= thin[has]):.1f} %")
    print(f"|{graph_name} - {thin_name}| / graph: median {np.median(rel):.3f}, 90th percentile {np.quantile(rel, 0.9):.3f}; "
          f"where thinning > 0: median {np.median(rel_both):.3f}, 90th percentile {np.quantile(rel_both, 0.9):.3f}")
    print(f"(outputs in {folder})")


if __name__ == "__main__":
    main()
