"""One measured segmentation for client_efficiency.py's CPU rows: run in a process of its own
(with the interpreter of the checkout being measured), print one JSON line.

    python client_cpu_child.py VOLUME URL [--shared-memory system]

Runs ``skoots_client.segment(VOLUME, url=URL)`` (what ``skoots-client segment --url`` runs) and
reports the process's CPU seconds (all threads: ``time.process_time``) over the infer stage —
from its first progress call (0 crops done) to its last (all done): normalising, sending,
decoding, dilating and stitching; over its steady part, from the first answered batch on
(so without one-time costs such as loading the numba kernels, which a long run spreads
over thousands of crops) — and over the whole run from the interpreter's start
(imports, reading, post-processing included), with the crops inferred. Only the public API is
used, so an older checkout runs it too.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    volume, url, *rest = sys.argv[1:]
    keywords = {"shared_memory": rest[1]} if rest[:1] == ["--shared-memory"] else {}
    import skoots_client

    marks: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage != "infer":
            return
        now = time.process_time()
        marks.setdefault("start", now)
        marks.setdefault("start_wall", time.perf_counter())
        if done and "steady" not in marks:  # the first answered batch: one-time costs (numba kernels loading) are behind
            marks["steady"], marks["steady_from"] = now, done
        if done == total:
            marks["end"], marks["end_wall"] = now, time.perf_counter()
            marks["crops"] = total

    result = skoots_client.segment(volume, url=url, device="cpu", quiet=True, progress=progress, **keywords)
    print(json.dumps({
        "infer_cpu": marks["end"] - marks["start"], "infer_wall": marks["end_wall"] - marks["start_wall"],
        "steady_cpu": marks["end"] - marks["steady"], "steady_crops": marks["crops"] - marks["steady_from"],
        "run_cpu": time.process_time(), "crops": marks["crops"], "instances": int(result.instances),
        "labels_sum": int(result.labels.astype("uint64").sum()),
    }))


if __name__ == "__main__":
    main()
